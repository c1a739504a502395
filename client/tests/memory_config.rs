//! MemoryConfig against the shared configuration contract, plus what only the in-memory
//! configuration can show cheaply: a slow watcher is told it lagged, old revisions compact.

use std::sync::Arc;

use keel_client::config::{
    conformance, Config, GetOptions, MemoryConfig, SetOptions, WatchOptions, HISTORY_REVISIONS_MAX, WATCH_EVENTS_MAX,
};
use keel_client::Error;
use serde_json::json;

#[tokio::test]
async fn memory_config_passes_the_conformance_suite() {
    conformance::run(Arc::new(MemoryConfig::new())).await;
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told() {
    let config = MemoryConfig::new();
    let mut watcher = config.watch("counter", WatchOptions::default()).await.expect("watch");
    assert_eq!(watcher.next().await.map(|value| value.exists()), Ok(false), "nothing there yet");
    let changes = WATCH_EVENTS_MAX + 10;
    for count in 0..changes {
        config.set("counter", json!(count), SetOptions::default()).await.expect("set");
    }
    assert_eq!(watcher.next().await, Err(Error::WatchLagged { skipped: 10 }));
    // Then it carries on from the oldest change still kept, with the value as of that change.
    assert_eq!(watcher.next().await.map(|value| value.into_json()), Ok(json!(10)));
}

#[tokio::test]
async fn revisions_older_than_the_history_are_compacted() {
    let config = MemoryConfig::new();
    let first = config.set("counter", json!(0), SetOptions::default()).await.expect("set");
    for count in 1..=HISTORY_REVISIONS_MAX {
        config.set("counter", json!(count), SetOptions::default()).await.expect("set");
    }
    let at = |revision| GetOptions { revision: Some(revision), ..GetOptions::default() };
    // The change before `first` (none: revision 1 is the empty start) left the history.
    let compacted = config.get_with("counter", at(first - 1)).await;
    assert!(matches!(&compacted, Err(Error::Other { message, .. }) if message.contains("compacted")), "{compacted:?}");
    let oldest = config.get_with("counter", at(first)).await.expect("the oldest revision kept");
    assert_eq!(oldest.into_json(), json!(0));
}
