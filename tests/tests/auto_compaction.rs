//! `--auto-compaction-mode periodic --auto-compaction-retention 2s`: the leader compacts on its
//! own to the revision of about 2 s ago, and keeps doing so; the recent history stays readable.

use std::time::Duration;

use etcd_client::GetOptions;
use keel_tests::{wait_for, Server, TestCluster};

#[tokio::test(flavor = "multi_thread")]
async fn periodic_auto_compaction_keeps_only_the_retention_of_history() {
    let keel = TestCluster::start_with(Server::Keel, 3, &["--auto-compaction-retention=2s"]).await;
    let mut client = keel.client().await;
    let first = client.put("k", "v1", None).await.expect("put").header().expect("header").revision();
    let compacted = wait_for(Duration::from_secs(20), "the first revision to be compacted away", || {
        let mut client = client.clone();
        async move {
            // Writes go on, so that there is always a newer revision to keep.
            let _ = client.put("k", "later", None).await;
            let old = client.get("k", Some(GetOptions::new().with_revision(first))).await;
            old.is_err_and(|e| e.to_string().contains("required revision has been compacted"))
        }
    })
    .await;
    compacted.unwrap_or_else(|e| panic!("{e}\n{}", keel.all_logs()));

    // What was written within the retention is still there, at its own revision.
    let recent = client.put("k", "recent", None).await.expect("put").header().expect("header").revision();
    let at = client.get("k", Some(GetOptions::new().with_revision(recent))).await.expect("a recent revision");
    assert_eq!(at.kvs()[0].value(), b"recent");
    assert!(keel.all_logs().contains("auto-compacted"), "the leader says what it did");
}
