//! Replicas hold the same state: after kill -9 and restart of every member during writes, with
//! leases whose ids are negative or start with 0xff in the mix, every member answers the same
//! HashKV at one revision, and `etcdctl endpoint hashkv --cluster` prints one hash.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseGrantOptions, PutOptions};
use keel_tests::{etcdctl, wait_for, wait_for_some, Server, TestCluster, READY_TIMEOUT};

/// Lease ids clients may choose (etcd accepts any non-zero id): negative ones, and ones whose
/// first byte is 0xff, which sort after every other id.
const LEASE_IDS: [i64; 5] = [-5, -1, i64::MIN, i64::MAX, 42];

fn spawn_writer(client: &Client, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let (mut client, stop) = (client.clone(), stop.clone());
    tokio::spawn(async move {
        let mut acked = 0;
        while !stop.load(Ordering::SeqCst) {
            let key = format!("w-{}", acked % 50);
            let put = tokio::time::timeout(Duration::from_secs(5), client.put(key, acked.to_string(), None)).await;
            if let Ok(Ok(_)) = put {
                acked += 1;
            }
        }
        acked
    })
}

/// HashKV of member `i` at `revision`, once it has applied that far.
async fn hash_kv(cluster: &TestCluster, i: usize, revision: i64) -> (u32, i64) {
    let client = cluster.member_client(i).await;
    wait_for_some(READY_TIMEOUT, "the member to reach the revision", || {
        let mut client = client.clone();
        async move {
            let answer = client.hash_kv(revision).await.ok()?;
            Some((answer.hash(), answer.compact_version()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("member {i}: {e}\n{}", cluster.all_logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_member_hashes_alike_after_each_is_killed_during_writes() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let mut client = cluster.client().await;
    for id in LEASE_IDS {
        client.lease_grant(3600, Some(LeaseGrantOptions::new().with_id(id))).await.expect("grant");
        let key = format!("leased/{id}");
        client.put(key, "v", Some(PutOptions::new().with_lease(id))).await.expect("put on lease");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&client, &stop);
    for i in 0..3 {
        cluster.kill9(i);
        cluster.start_member(i);
        cluster.wait_ready().await;
    }
    stop.store(true, Ordering::SeqCst);
    assert!(writer.await.expect("writer") > 0, "writes went through during the kills");

    // Revoking on every member deletes the same keys: each restarted member still knows every
    // lease, whatever its id.
    let mut client = cluster.client().await;
    for id in [-5, i64::MIN] {
        client.lease_revoke(id).await.unwrap_or_else(|e| panic!("revoke {id}: {e}\n{}", cluster.all_logs()));
    }
    let last = client.put("last", "x", None).await.expect("put").header().expect("header").revision();
    client.compact(last - 1, None).await.expect("compact");
    let revision = client.put("after-compaction", "x", None).await.expect("put").header().expect("header").revision();

    let mut hashes = Vec::new();
    for i in 0..3 {
        hashes.push(hash_kv(&cluster, i, revision).await);
    }
    assert!(hashes.iter().all(|hash| *hash == hashes[0]), "members disagree at revision {revision}: {hashes:?}");
    assert!(hashes[0].1 > 0, "the compaction point is reported");

    // etcdctl asks every member of `member list` for its hash at its current revision.
    wait_for(READY_TIMEOUT, "etcdctl endpoint hashkv --cluster to show one hash", || {
        let output = etcdctl(&cluster.endpoints_csv(), &["endpoint", "hashkv", "--cluster"]);
        let distinct: BTreeSet<String> =
            output.stdout.lines().filter_map(|line| line.split(", ").nth(1)).map(str::to_string).collect();
        let lines = output.stdout.lines().count();
        async move { output.success && lines == 3 && distinct.len() == 1 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
}

#[tokio::test]
async fn hash_kv_refuses_compacted_and_future_revisions_as_etcd_does() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let mut client = cluster.client().await;
    for value in ["1", "2", "3"] {
        client.put("k", value, None).await.expect("put");
    }
    client.compact(3, None).await.expect("compact");
    let current = client.hash_kv(0).await.expect("hash at the current revision");
    assert_eq!(current.header().expect("header").revision(), 4);
    assert_eq!(current.compact_version(), 3);
    assert_eq!(client.hash_kv(4).await.expect("hash at 4").hash(), current.hash());
    let compacted = client.hash_kv(3).await.expect_err("at the compaction point");
    assert!(compacted.to_string().contains("required revision has been compacted"), "{compacted}");
    let future = client.hash_kv(5).await.expect_err("future");
    assert!(future.to_string().contains("required revision is a future revision"), "{future}");
    assert_ne!(client.hash().await.expect("hash").hash(), 0);
}
