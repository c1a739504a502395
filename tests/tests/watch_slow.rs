//! A watcher that stops reading costs only itself: writes keep being acknowledged, another
//! watcher keeps receiving every event, and when the slow one reads again it gets every
//! revision it missed, from history, in order, with no gap and no duplicate.

use std::time::Duration;

use etcd_client::WatchOptions;
use keel_tests::{connect, Server, TestCluster};
use tokio_stream::StreamExt;

/// Enough writes, each large enough, to fill the slow watcher's HTTP/2 window and response
/// queue many times over and to overrun the hub's ring of 1024 batches.
const WRITES: usize = 3000;
const VALUE_BYTES: usize = 1024;

#[tokio::test]
async fn a_watcher_that_stops_reading_blocks_nobody_and_misses_nothing() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let endpoints = cluster.endpoints();

    // Phase 1: a slow watcher that reads nothing for now, and a fast one that reads all.
    let mut slow_client = connect(&endpoints).await;
    let mut slow = slow_client.watch("k", Some(WatchOptions::new().with_prefix())).await.expect("slow watch");
    let mut fast_client = connect(&endpoints).await;
    let mut fast = fast_client.watch("k", Some(WatchOptions::new().with_prefix())).await.expect("fast watch");
    // A watch without a start revision starts where the member is when it creates it: write
    // only once both are created (etcd-client returns before the member answers).
    for stream in [&mut slow, &mut fast] {
        let created = stream.message().await.expect("watch response").expect("created response");
        assert!(created.created(), "{created:?}");
    }
    let fast_reader = tokio::spawn(async move {
        let mut revisions = Vec::new();
        while revisions.len() < WRITES {
            match fast.next().await {
                Some(Ok(response)) => {
                    revisions.extend(response.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()))
                }
                _ => break,
            }
        }
        revisions
    });

    // Phase 2: the writes are all acknowledged while the slow watcher reads nothing.
    let mut writer = connect(&endpoints).await;
    let value = vec![b'v'; VALUE_BYTES];
    let mut last_revision = 0;
    for i in 0..WRITES {
        let response =
            tokio::time::timeout(Duration::from_secs(10), writer.put(format!("k{i:05}"), value.clone(), None))
                .await
                .expect("a write is never held up by a slow watcher")
                .expect("put");
        last_revision = response.header().expect("header").revision();
    }
    let fast_revisions = tokio::time::timeout(Duration::from_secs(30), fast_reader)
        .await
        .expect("the fast watcher keeps up")
        .expect("reader task");
    let expected: Vec<i64> = (last_revision - WRITES as i64 + 1..=last_revision).collect();
    assert_eq!(fast_revisions, expected, "the fast watcher saw every write in order");

    // Phase 3: the slow watcher reads again and gets everything, from history.
    let mut slow_revisions = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while slow_revisions.last() != Some(&last_revision) {
        let response = tokio::time::timeout_at(deadline, slow.next())
            .await
            .expect("the slow watcher catches up within 30 s")
            .expect("the slow watch stream stays open")
            .expect("watch response");
        slow_revisions.extend(response.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()));
    }
    assert_eq!(slow_revisions, expected, "no gap, no duplicate, no reordering after catching up");
}
