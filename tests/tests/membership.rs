//! Membership changes as etcd's operators make them: etcdctl `member add/list/promote/update/
//! remove` answer as against etcd 3.4 (refusals included); a dead member replaced under load
//! (remove it, add a new one, start that on an empty data dir) loses no acknowledged write; a
//! removed leader steps down and exits; a change while a member is cut off is refused as etcd
//! refuses it; five members work.

use std::time::Duration;

use etcd_client::{Client, MemberAddOptions};
use keel_tests::acked::assert_all_present;
use keel_tests::load::Load;
use keel_tests::ports::ReservedPort;
use keel_tests::transcript::normalise;
use keel_tests::{etcdctl, metric, wait_for, wait_for_some, EtcdctlOutput, Server, TestCluster};

/// Member ids by name (`m0`, …), as a running member lists them once every member has
/// published its name.
async fn ids(cluster: &TestCluster) -> Vec<(String, u64)> {
    let running = (0..cluster.members.len()).find(|i| cluster.members[*i].is_running()).expect("a running member");
    let client = cluster.member_client(running).await;
    let listed = wait_for_some(Duration::from_secs(20), "every member's name", || {
        let mut client = client.clone();
        async move {
            let members = client.member_list().await.ok()?;
            let ids: Vec<(String, u64)> = members.members().iter().map(|m| (m.name().to_string(), m.id())).collect();
            ids.iter().all(|(name, _)| !name.is_empty()).then_some(ids)
        }
    })
    .await;
    listed.unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()))
}

fn id_of(ids: &[(String, u64)], name: &str) -> String {
    let id = ids.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no member {name} in {ids:?}")).1;
    format!("{id:x}")
}

/// etcdctl's output with what differs between two correct clusters replaced: URLs, IDs, and
/// the order of members (etcd sorts them by ID, which differ).
fn scrub(cluster: &TestCluster, new_urls: &[(&str, &str)], output: &EtcdctlOutput) -> EtcdctlOutput {
    let mut output = normalise(cluster, output);
    for (url, name) in new_urls {
        output.stdout = output.stdout.replace(url, name);
        output.stderr = output.stderr.replace(url, name);
    }
    let mut lines: Vec<String> = output
        .stdout
        .lines()
        .map(|line| match line.strip_prefix("ETCD_INITIAL_CLUSTER=") {
            Some(list) => {
                let mut members: Vec<&str> = list.trim_matches('"').split(',').collect();
                members.sort_unstable();
                format!("ETCD_INITIAL_CLUSTER=\"{}\"", members.join(","))
            }
            // etcdctl prints IDs with `%16x`: an ID with a leading zero digit is padded with a
            // space, which the ID's normalisation leaves behind.
            None if line.starts_with("Member ") => line.split_whitespace().collect::<Vec<_>>().join(" "),
            None => line.to_string(),
        })
        .collect();
    if lines.iter().all(|line| line.matches(", ").count() >= 4) {
        lines.sort();
    }
    output.stdout = lines.join("\n");
    output
}

#[tokio::test(flavor = "multi_thread")]
async fn member_commands_answer_as_etcd_does() {
    let (keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    let mut transcripts = Vec::new();
    for cluster in [&keel, &etcd] {
        // Nobody listens on these: members that were added and never started.
        let (first, second) = (ReservedPort::new(), ReservedPort::new());
        let new_url = format!("http://127.0.0.1:{}", first.port());
        let other_url = format!("http://127.0.0.1:{}", second.port());
        let endpoints = cluster.endpoints_csv();
        let run = |args: &[&str]| {
            let output = tokio::task::block_in_place(|| etcdctl(&endpoints, args));
            scrub(cluster, &[(new_url.as_str(), "NEW"), (other_url.as_str(), "OTHER")], &output)
        };
        let before = ids(cluster).await;
        let m1 = id_of(&before, "m1");
        let m0_url = cluster.members[0].peer_url.clone();
        let m1_url = cluster.members[1].peer_url.clone();
        // etcd refuses changes until its peers have been connected for its health interval
        // (5 s); Keel asks only that the leader heard from them within it. Both, then, alike.
        let add_learner = ["member", "add", "m3", &format!("--peer-urls={new_url}"), "--learner"];
        let first = wait_for_some(Duration::from_secs(20), "the first member add", || {
            let first = run(&add_learner);
            async move { first.success.then_some(first) }
        })
        .await;
        let mut outputs = vec![first.unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()))];
        let learner = {
            let mut client = cluster.member_client(0).await;
            let members = client.member_list().await.expect("list");
            let learner = members.members().iter().find(|m| m.is_learner());
            let learner =
                learner.unwrap_or_else(|| panic!("no learner after {:?}\n{}", outputs[0], cluster.all_logs())).id();
            format!("{learner:x}")
        };
        outputs.extend([
            run(&["member", "list"]),
            run(&["member", "promote", &learner]),
            run(&["member", "add", "m4", &format!("--peer-urls={other_url}"), "--learner"]),
            run(&["member", "add", "m5", &format!("--peer-urls={m0_url}")]),
            run(&["member", "promote", &m1]),
            run(&["member", "update", &m1, &format!("--peer-urls={m1_url}")]),
            run(&["member", "remove", &learner]),
            run(&["member", "remove", "1234abcd"]),
            run(&["member", "add", "m6", &format!("--peer-urls={other_url}")]),
            run(&["member", "list"]),
        ]);
        let unstarted = {
            let mut client = cluster.member_client(0).await;
            let members = client.member_list().await.expect("list");
            let unstarted = members.members().iter().find(|m| m.name().is_empty()).expect("the new voter").id();
            format!("{unstarted:x}")
        };
        outputs.push(run(&["member", "remove", &unstarted]));
        outputs.push(run(&["member", "list"]));
        transcripts.push(outputs);
    }
    let differing: Vec<String> = transcripts[0]
        .iter()
        .zip(&transcripts[1])
        .enumerate()
        .filter(|(_, (k, e))| k != e)
        .map(|(step, (k, e))| format!("step {step}\n  etcd: {e:?}\n  keel: {k:?}"))
        .collect();
    assert!(differing.is_empty(), "{} steps differ:\n{}\n{}", differing.len(), differing.join("\n"), keel.all_logs());
    let keel_steps = &transcripts[0];
    assert!(keel_steps[0].stdout.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{:?}", keel_steps[0]);
    assert!(keel_steps[2].stderr.contains("in sync with leader"), "{:?}", keel_steps[2]);
    assert!(keel_steps[3].stderr.contains("too many learner members"), "{:?}", keel_steps[3]);
    assert!(keel_steps[4].stderr.contains("Peer URLs already exists"), "{:?}", keel_steps[4]);
}

/// Waits until member `i` answers a linearizable read with `key`.
async fn wait_serving(cluster: &TestCluster, i: usize, key: &str) {
    let client = cluster.member_client(i).await;
    wait_for(Duration::from_secs(60), "the new member to catch up and serve", || {
        let mut client = client.clone();
        let key = key.to_string();
        async move { client.get(key, None).await.is_ok_and(|r| r.kvs().len() == 1) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_member_replaced_under_load_loses_nothing_and_the_new_one_catches_up_by_snapshot() {
    // Snapshots often, and little log kept after them: the new member must start from one.
    let flags = ["--snapshot-count", "200", "--experimental-snapshot-catchup-entries", "20"];
    let mut keel = TestCluster::start_with(Server::Keel, 3, &flags).await;
    let load = Load::start(&keel, 8).await;
    load.wait_for_more_acks(600, &keel).await;

    // A follower's machine dies.
    let leader = keel.leader().await;
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    let victim_id = ids(&keel).await.into_iter().find(|(name, _)| *name == keel.members[victim].name).expect("id").1;
    load.drain(victim, &keel).await;
    keel.kill9(victim);

    // The procedure: remove it, add the replacement, start that on an empty data dir.
    let mut client: Client = keel.member_client(leader).await;
    client.member_remove(victim_id).await.expect("a member that is down may be removed");
    let slot = keel.add_member_slot();
    let url = keel.members[slot].peer_url.clone();
    let added = client.member_add([url.as_str()], None::<MemberAddOptions>).await.expect("member add");
    assert_eq!(added.member().map(|m| m.name()), Some(""), "unstarted until it starts");
    keel.start_member(slot);
    wait_serving(&keel, slot, "w0-000000").await;
    load.include(slot, keel.member_client(slot).await);
    load.wait_for_more_acks(300, &keel).await;
    let (acked, failures) = load.stop().await;
    assert!(failures.is_empty(), "requests failed while no leader was missing: {failures:?}\n{}", keel.all_logs());

    for i in [0, 1, 2, 3].into_iter().filter(|i| *i != victim) {
        assert_all_present(&keel, i, &acked).await;
    }
    let names: Vec<String> = ids(&keel).await.into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&keel.members[slot].name) && !names.contains(&keel.members[victim].name), "{names:?}");
    let snapshot_index = metric(&keel.members[slot].client_url, "keel_raft_snapshot_index").unwrap_or(0.0);
    assert!(snapshot_index > 0.0, "the new member started from a snapshot\n{}", keel.members[slot].logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_leader_steps_down_and_exits_and_the_rest_go_on() {
    let mut keel = TestCluster::start(Server::Keel, 3).await;
    let leader = keel.leader().await;
    let leader_id = ids(&keel).await.into_iter().find(|(name, _)| *name == keel.members[leader].name).expect("id").1;
    let mut client = keel.member_client(leader).await;
    let removed = client.member_remove(leader_id).await.expect("remove the leader");
    assert_eq!(removed.members().len(), 2, "two members left");
    let exit = keel.wait_exit(leader, Duration::from_secs(20)).await.expect("the removed member stops");
    assert!(exit.success(), "exits cleanly: {exit}");
    assert!(keel.members[leader].logs().contains("permanently removed from the cluster"));
    let survivor = (0..3).find(|i| *i != leader).expect("a survivor");
    let mut client = keel.member_client(survivor).await;
    let put = wait_for_some(Duration::from_secs(20), "a write after the leader left", || {
        let mut client = client.clone();
        async move { client.put("after", "v", None).await.ok() }
    })
    .await;
    put.unwrap_or_else(|e| panic!("{e}\n{}", keel.all_logs()));
    assert_eq!(client.member_list().await.expect("list").members().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_follower_stops_by_itself_as_etcds_does() {
    let mut keel = TestCluster::start(Server::Keel, 3).await;
    let leader = keel.leader().await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let follower_id =
        ids(&keel).await.into_iter().find(|(name, _)| *name == keel.members[follower].name).expect("id").1;
    let mut client = keel.member_client(leader).await;
    client.member_remove(follower_id).await.expect("remove a follower");
    // It hears no leader any more, campaigns, and the others refuse it as a stranger.
    let exit = keel.wait_exit(follower, Duration::from_secs(20)).await;
    let exit = exit.unwrap_or_else(|e| panic!("the removed follower stays up: {e}\n{}", keel.all_logs()));
    assert!(exit.success(), "exits cleanly: {exit}");
    assert!(keel.members[follower].logs().contains("permanently removed from the cluster"));
    client.put("after", "v", None).await.expect("the other two go on");
    assert_eq!(client.member_list().await.expect("list").members().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_while_a_member_is_cut_off_is_refused_as_etcd_refuses_it() {
    let keel = TestCluster::start(Server::Keel, 3).await;
    let leader = keel.leader().await;
    let cut_off = (0..3).find(|i| *i != leader).expect("a follower");
    let cut_off_id = ids(&keel).await.into_iter().find(|(name, _)| *name == keel.members[cut_off].name).expect("id").1;
    keel.pause(cut_off);
    // Once the leader has not heard from it for etcd's health interval (5 s)...
    let url = keel.members[leader].client_url.clone();
    let metric_name = format!("keel_raft_peer_last_ack_seconds{{member=\"{cut_off_id:x}\"}}");
    let stale = wait_for(Duration::from_secs(20), "the leader to miss the member for 5 s", || {
        let (url, metric_name) = (url.clone(), metric_name.clone());
        async move {
            let age = tokio::task::spawn_blocking(move || metric(&url, &metric_name)).await.ok().flatten();
            age.is_some_and(|age| age > 5.5)
        }
    })
    .await;
    stale.unwrap_or_else(|e| panic!("{e}\n{}", keel.all_logs()));
    let mut client = keel.member_client(leader).await;
    let spare = ReservedPort::new();
    let new_url = format!("http://127.0.0.1:{}", spare.port());
    // ...adding a member would risk the quorum: refused.
    let error = client.member_add([new_url.as_str()], None::<MemberAddOptions>).await.expect_err("unhealthy");
    assert!(error.to_string().contains("etcdserver: unhealthy cluster"), "{error}");
    // Removing the member that is cut off is allowed: it is not part of the active quorum.
    client.member_remove(cut_off_id).await.expect("remove the member that is down");
    keel.resume(cut_off);
    let members = client.member_list().await.expect("list").members().len();
    assert_eq!(members, 2);
    client.put("after", "v", None).await.expect("writes go on");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_members_keep_serving_with_two_down() {
    let mut keel = TestCluster::start(Server::Keel, 5).await;
    let load = Load::start(&keel, 4).await;
    load.wait_for_more_acks(100, &keel).await;
    let leader = keel.leader().await;
    let down: Vec<usize> = (0..5).filter(|i| *i != leader).take(2).collect();
    for &i in &down {
        load.drain(i, &keel).await;
        keel.kill9(i);
    }
    load.wait_for_more_acks(200, &keel).await;
    let (acked, failures) = load.stop().await;
    assert!(failures.is_empty(), "{failures:?}");
    for i in (0..5).filter(|i| !down.contains(i)) {
        assert_all_present(&keel, i, &acked).await;
    }
    for &i in &down {
        keel.start_member(i);
    }
    keel.wait_ready().await;
    for &i in &down {
        assert_all_present(&keel, i, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learner_serves_only_what_etcd_lets_it_until_promoted() {
    let mut keel = TestCluster::start(Server::Keel, 3).await;
    let mut client = keel.member_client(0).await;
    client.put("seen-by-learner", "v", None).await.expect("put");
    let slot = keel.add_member_slot();
    let url = keel.members[slot].peer_url.clone();
    let added = client.member_add([url.as_str()], Some(MemberAddOptions::new().with_is_learner())).await;
    let learner_id = added.expect("add a learner").member().expect("the learner").id();
    keel.start_member(slot);
    let mut learner = keel.member_client(slot).await;
    let serializable = || Some(etcd_client::GetOptions::new().with_serializable());
    let caught_up = wait_for_some(Duration::from_secs(30), "the learner to catch up", || {
        let mut learner = learner.clone();
        async move {
            let found = learner.get("seen-by-learner", serializable()).await.ok()?;
            (found.kvs().len() == 1).then_some(())
        }
    })
    .await;
    caught_up.unwrap_or_else(|e| panic!("{e}\n{}", keel.all_logs()));

    let refused = |error: etcd_client::Error| error.to_string().contains("etcdserver: rpc not supported for learner");
    assert!(refused(learner.put("k", "v", None).await.expect_err("no writes on a learner")));
    assert!(refused(learner.get("k", None).await.expect_err("no linearizable reads on a learner")));
    assert!(learner.status().await.expect("status").is_learner());
    assert_eq!(learner.member_list().await.expect("member list").members().len(), 4);

    let promoted = wait_for_some(Duration::from_secs(20), "the learner's promotion", || {
        let mut client = client.clone();
        async move { client.member_promote(learner_id).await.ok() }
    })
    .await;
    promoted.unwrap_or_else(|e| panic!("{e}\n{}", keel.all_logs()));
    let wrote = wait_for_some(Duration::from_secs(10), "a write through the promoted member", || {
        let mut learner = learner.clone();
        async move { learner.put("k", "v", None).await.ok() }
    })
    .await;
    wrote.unwrap_or_else(|e| panic!("{e}\n{}", keel.all_logs()));
}
