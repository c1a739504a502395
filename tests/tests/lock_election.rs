//! etcd's Lock and Election services, against etcd 3.4: `etcdctl lock` and `etcdctl elect` print
//! what they print on etcd; a second locker waits for the first, in order of arrival, and gets a
//! later fencing revision; a waiter that gives up leaves no key behind; an election hands over on
//! resign, refuses a stale leader's proclaim, and its observers see every change.

use std::time::Duration;

use etcd_client::{Client, ElectionClient, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};
use keel_tests::transcript::{assert_same_transcripts, step, Step};
use keel_tests::{etcdctl_command, wait_for, Server, TestCluster};

const SCRIPT: &[Step] = &[
    step(&["lock", "mylock", "echo", "held"]),
    step(&["lock", "mylock", "--", "sh", "-c", "echo ${ETCD_LOCK_KEY%/*} at a revision: ${ETCD_LOCK_REV:+yes}"]),
    step(&["get", "mylock", "--prefix", "--keys-only"]),
];

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_lock_and_elect_print_what_they_print_on_etcd() {
    let (keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    let outputs = assert_same_transcripts(&keel, &etcd, SCRIPT);
    assert_eq!(outputs[0].stdout, "held\n", "{outputs:?}");
    assert_eq!(outputs[1].stdout, "mylock at a revision: yes\n", "{outputs:?}");
    assert_eq!(outputs[2].stdout, "", "the lock's key is gone once the command ran: {outputs:?}");

    // `etcdctl elect NAME VALUE` campaigns, prints the leader key and value, and holds on.
    let mut printed = Vec::new();
    for cluster in [&keel, &etcd] {
        let mut child = etcdctl_command(&cluster.endpoints_csv(), &["elect", "myelection", "alice"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("etcdctl elect");
        let stdout = child.stdout.take().expect("stdout");
        let lines = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout).lines().take(2).map(|line| line.expect("a line")).collect::<Vec<_>>()
        });
        let lines = tokio::time::timeout(Duration::from_secs(10), lines).await.expect("two lines").expect("read");
        let _ = child.kill();
        let _ = child.wait();
        let key_prefix = lines[0].split('/').next().unwrap_or_default().to_string();
        printed.push((key_prefix, lines[1].clone()));
    }
    assert_eq!(printed[0], printed[1], "keel (left) and etcd (right)");
    assert_eq!(printed[0], ("myelection".to_string(), "alice".to_string()));
}

/// A lease of 60 s for a contender.
async fn lease(client: &mut Client) -> i64 {
    client.lease_grant(60, None).await.expect("lease").id()
}

/// Locks `name` with a new lease; answers the key and its create revision (the fencing token).
async fn lock(client: &mut Client, name: &str) -> (Vec<u8>, i64) {
    let lease = lease(client).await;
    let locked = client.lock(name, Some(LockOptions::new().with_lease(lease))).await.expect("lock");
    let key = locked.key().to_vec();
    let kv = client.get(key.clone(), None).await.expect("get").kvs()[0].clone();
    (key, kv.create_revision())
}

async fn lock_and_election_behave_as_etcds(cluster: &TestCluster) -> Vec<String> {
    let mut seen = Vec::new();
    let mut a = cluster.member_client(0).await;
    let mut b = cluster.member_client(1).await;

    // Mutual exclusion, in order, with increasing fencing revisions.
    let (key_a, token_a) = lock(&mut a, "queue").await;
    let lease_b = lease(&mut b).await;
    let mut waiting = b.clone();
    let second = tokio::spawn(async move {
        waiting.lock("queue", Some(LockOptions::new().with_lease(lease_b))).await.map(|r| r.key().to_vec())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.push(format!("second waits while the first holds: {}", !second.is_finished()));
    a.unlock(key_a).await.expect("unlock");
    let key_b = tokio::time::timeout(Duration::from_secs(10), second).await.expect("acquired").expect("task");
    let key_b = key_b.expect("lock");
    let token_b = b.get(key_b.clone(), None).await.expect("get").kvs()[0].create_revision();
    seen.push(format!("fencing revisions increase: {}", token_b > token_a));

    // A waiter that gives up leaves no key behind.
    let lease_c = lease(&mut a).await;
    let gave_up =
        tokio::time::timeout(Duration::from_millis(300), a.lock("queue", Some(LockOptions::new().with_lease(lease_c))))
            .await;
    seen.push(format!("the third waits: {}", gave_up.is_err()));
    let left = wait_keys(&mut a, "queue/", 1).await;
    seen.push(format!("keys left after it gave up: {left}"));
    b.unlock(key_b).await.expect("unlock");

    // Election.
    let mut election: ElectionClient = a.election_client();
    let lease_a = lease(&mut a).await;
    let leading = election.campaign("vote", "a1", lease_a).await.expect("campaign");
    let leader_key: LeaderKey = leading.leader().expect("leader key").clone();
    let leader = election.leader("vote").await.expect("leader");
    seen.push(format!("leader value: {:?}", leader.kv().map(|kv| kv.value_str().unwrap_or_default().to_string())));
    let mut observing = b.election_client();
    let mut observed = observing.observe("vote").await.expect("observe");
    let first = observed.message().await.expect("observed").expect("a leader");
    seen.push(format!("observed: {:?}", first.kv().map(|kv| kv.value_str().unwrap_or_default().to_string())));
    election.proclaim("a2", Some(ProclaimOptions::new().with_leader(leader_key.clone()))).await.expect("proclaim");
    let next = observed.message().await.expect("observed").expect("a leader");
    seen.push(format!("observed: {:?}", next.kv().map(|kv| kv.value_str().unwrap_or_default().to_string())));
    let lease_b = lease(&mut b).await;
    let mut campaigner = b.election_client();
    let campaign_b = tokio::spawn(async move { campaigner.campaign("vote", "b1", lease_b).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.push(format!("b waits for a: {}", !campaign_b.is_finished()));
    election.resign(Some(ResignOptions::new().with_leader(leader_key.clone()))).await.expect("resign");
    let b_leads = tokio::time::timeout(Duration::from_secs(10), campaign_b).await.expect("b leads").expect("task");
    seen.push(format!("b leads: {}", b_leads.is_ok()));
    let stale = election.proclaim("a3", Some(ProclaimOptions::new().with_leader(leader_key))).await;
    seen.push(format!("stale proclaim: {:?}", stale.err().map(|e| e.to_string())));
    let none = election.leader("nobody").await;
    seen.push(format!("no leader: {:?}", none.err().map(|e| e.to_string())));
    seen
}

/// Waits (5 s at most) until `prefix` holds `count` keys (a background delete may still be on
/// its way); answers how many it holds then.
async fn wait_keys(client: &mut Client, prefix: &str, count: usize) -> usize {
    let options = || Some(etcd_client::GetOptions::new().with_prefix());
    let _ = wait_for(Duration::from_secs(5), "the abandoned key to go", || {
        let mut client = client.clone();
        async move { client.get(prefix, options()).await.is_ok_and(|r| r.kvs().len() == count) }
    })
    .await;
    client.get(prefix, options()).await.expect("get").kvs().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn locks_and_elections_behave_as_on_etcd() {
    let (keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    let (on_keel, on_etcd) =
        tokio::join!(lock_and_election_behave_as_etcds(&keel), lock_and_election_behave_as_etcds(&etcd));
    assert_eq!(on_keel, on_etcd, "keel (left) and etcd (right)");
    for line in &on_keel {
        assert!(!line.ends_with("false"), "{line}: {on_keel:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keel_client_locks_fence_and_elections_hand_over() {
    use keel_client::lock::Coordination;
    let keel = TestCluster::start(Server::Keel, 3).await;
    let endpoints = keel.endpoints();
    let (a, b) =
        (Coordination::connect(&endpoints).await.expect("a"), Coordination::connect(&endpoints).await.expect("b"));
    let ttl = Duration::from_secs(5);

    // Lock: the second holder waits, then gets a larger fencing token; the first one's compare
    // no longer holds.
    let first = a.lock("jobs", ttl).await.expect("first lock");
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.lock("jobs", ttl).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second holder waits for the first");
    let first_token = first.fencing_token();
    let stale = first.still_held();
    first.unlock().await.expect("unlock");
    let second = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("acquired").expect("task");
    let second = second.expect("second lock");
    assert!(second.fencing_token() > first_token, "{} after {first_token}", second.fencing_token());
    let mut etcd = keel.client().await;
    let guarded = etcd_client::Txn::new().when([stale]).and_then([etcd_client::TxnOp::put("guarded", "stale", None)]);
    assert!(!etcd.txn(guarded).await.expect("txn").succeeded(), "the first holder's compare fails");
    let guarded = etcd_client::Txn::new()
        .when([second.still_held()])
        .and_then([etcd_client::TxnOp::put("guarded", "fresh", None)]);
    assert!(etcd.txn(guarded).await.expect("txn").succeeded(), "the holder's compare holds");

    // A session whose lease the cluster drops says so.
    etcd.lease_revoke(second.lease()).await.expect("revoke the holder's lease");
    let lost = wait_for(Duration::from_secs(10), "the holder to notice", || async { second.is_lost() }).await;
    lost.unwrap_or_else(|e| panic!("{e}"));

    // Election: lead, proclaim, observe, resign, hand over.
    let session = a.session(ttl).await.expect("session");
    let leading = a.campaign("primary", b"a1", session).await.expect("campaign");
    let mut observer = b.observe("primary").await.expect("observe");
    assert_eq!(observer.recv().await.expect("observed"), Some(b"a1".to_vec()));
    leading.proclaim(b"a2").await.expect("proclaim");
    assert_eq!(observer.recv().await.expect("observed"), Some(b"a2".to_vec()));
    let campaigner = {
        let b = b.clone();
        tokio::spawn(async move {
            let session = b.session(ttl).await.expect("session");
            b.campaign("primary", b"b1", session).await
        })
    };
    leading.resign().await.expect("resign");
    let b_leads = tokio::time::timeout(Duration::from_secs(10), campaigner).await.expect("b leads").expect("task");
    let b_leads = b_leads.expect("campaign");
    assert_eq!(a.leader("primary").await.expect("leader"), Some(b"b1".to_vec()));
    assert_eq!(observer.recv().await.expect("observed"), Some(b"b1".to_vec()));
    assert_eq!(a.leader("nobody").await.expect("no leader"), None);
    b_leads.resign().await.expect("resign");
}
