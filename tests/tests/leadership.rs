//! Moving the leadership on purpose: `etcdctl move-leader` as against etcd 3.4, MoveLeader's
//! refusals in etcd's words, and a rolling restart (SIGTERM, restart, each member in turn, the
//! leader included) under load: a stopping leader hands over first, and a stopping member
//! finishes the requests it has before it closes; nothing acknowledged is lost.

use std::time::{Duration, Instant};

use keel_tests::acked::assert_all_present;
use keel_tests::load::Load;
use keel_tests::transcript::normalise;
use keel_tests::{etcdctl, Server, TestCluster};

/// The leader's and a follower's member ids, as member 0 reports them.
async fn leader_and_follower(cluster: &TestCluster) -> (u64, u64) {
    let mut client = cluster.member_client(0).await;
    let leader = client.status().await.expect("status").leader();
    let members = client.member_list().await.expect("member list");
    let follower = members.members().iter().map(|m| m.id()).find(|id| *id != leader).expect("a follower");
    (leader, follower)
}

#[tokio::test(flavor = "multi_thread")]
async fn move_leader_moves_it_and_refuses_as_etcd_does() {
    let (keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    let mut outputs = Vec::new();
    for cluster in [&keel, &etcd] {
        let (_, follower) = leader_and_follower(cluster).await;
        let endpoints = cluster.endpoints_csv();
        let moved = tokio::task::block_in_place(|| etcdctl(&endpoints, &["move-leader", &format!("{follower:x}")]));
        let unknown = tokio::task::block_in_place(|| etcdctl(&endpoints, &["move-leader", "1234abcd"]));
        let mut client = cluster.member_client(0).await;
        let now_leads = client.status().await.expect("status").leader();
        assert_eq!(now_leads, follower, "the target leads now\n{}", cluster.all_logs());
        // MoveLeader sent to a member that does not lead.
        let (leader, follower) = leader_and_follower(cluster).await;
        let index = |id: u64| async move {
            for i in 0..3 {
                let mut client = cluster.member_client(i).await;
                if client.status().await.expect("status").header().expect("header").member_id() == id {
                    return i;
                }
            }
            panic!("no member {id:x}");
        };
        let mut on_follower = cluster.member_client(index(follower).await).await;
        let not_leader = on_follower.move_leader(leader).await.expect_err("not the leader").to_string();
        outputs.push((normalise(cluster, &moved), normalise(cluster, &unknown), not_leader));
    }
    assert_eq!(outputs[0], outputs[1], "keel (left) and etcd (right) differ");
    let (moved, unknown, not_leader) = &outputs[0];
    assert!(moved.success && moved.stdout.starts_with("Leadership transferred from"), "{moved:?}");
    assert!(unknown.stderr.contains("etcdserver: bad leader transferee"), "{unknown:?}");
    assert!(not_leader.contains("etcdserver: not leader"), "{not_leader}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_nothing_and_fails_no_request() {
    let mut keel = TestCluster::start(Server::Keel, 3).await;
    let load = Load::start(&keel, 8).await;
    load.wait_for_more_acks(100, &keel).await;
    let mut stops = Vec::new();
    for i in 0..3 {
        let leader = keel.leader().await;
        load.avoid(i);
        let started = Instant::now();
        let exit = keel.terminate_within(i, Duration::from_secs(15)).await.expect("a clean stop");
        assert!(exit.success(), "member {i} exited with {exit}");
        stops.push((i, i == leader, started.elapsed()));
        keel.start_member(i);
        keel.wait_ready().await;
        load.include(i, keel.member_client(i).await);
        load.wait_for_more_acks(50, &keel).await;
    }
    let (acked, failures) = load.stop().await;
    eprintln!("stops (member, was leader, took): {stops:?}");
    assert!(stops.iter().any(|(_, was_leader, _)| *was_leader), "the leader was restarted too: {stops:?}");
    eprintln!("{} writes acknowledged, {} failed", acked.len(), failures.len());
    // None: a stopping leader hands over before it stops taking writes, and a stopping member
    // answers what it accepted (its own clients' and the writes followers forwarded to it).
    assert!(
        failures.is_empty(),
        "{} requests failed during the roll: {failures:?}\n{}",
        failures.len(),
        keel.all_logs()
    );
    assert!(keel.all_logs().contains("handed the leadership over"), "the leader handed over\n{}", keel.all_logs());
    for i in 0..3 {
        assert_all_present(&keel, i, &acked).await;
    }
}
