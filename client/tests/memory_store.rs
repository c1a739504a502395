//! MemoryStore against the shared store contract, plus what only the in-memory store can show
//! cheaply: expiry exactly on time under a paused clock.

use std::sync::Arc;
use std::time::Duration;

use keel_client::store::{conformance, MemoryStore, ReadOptions, Record, Store, WriteOptions};
use keel_client::Error;

#[tokio::test(start_paused = true)]
async fn memory_store_passes_the_conformance_suite() {
    conformance::run(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn memory_store_passes_the_conformance_suite_in_real_time() {
    // The same suite on the real clock: expiry must not depend on time being paused. Takes
    // about four seconds (two TTL waits).
    conformance::run(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(start_paused = true)]
async fn a_record_is_readable_until_its_ttl_and_never_after() {
    let store = MemoryStore::new();
    let options = WriteOptions::with_ttl(Duration::from_millis(1500));
    store.write(&Record::new("session", "s1"), options).await.expect("write");

    // The TTL is rounded up to whole seconds, as the cluster counts it: 2 s.
    tokio::time::advance(Duration::from_millis(1999)).await;
    let records = store.read("session", ReadOptions::default()).await.expect("alive before 2 s");
    assert_eq!(records[0].ttl, Some(Duration::from_secs(1)), "what is left, rounded up");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(store.read("session", ReadOptions::default()).await, Err(Error::NotFound), "gone at 2 s");
    assert_eq!(store.databases().await, Ok(Vec::new()), "an expired record leaves no database behind");
}

#[tokio::test]
async fn invalid_writes_say_what_is_wrong() {
    let store = MemoryStore::new();
    let result = store.write(&Record::new("k", "v"), WriteOptions::with_ttl(Duration::ZERO)).await;
    assert_eq!(result, Err(Error::InvalidArgument("store: ttl must be greater than 0 seconds".into())));
    let result = store.write(&Record::new("", "v"), WriteOptions::default()).await;
    assert_eq!(result, Err(Error::InvalidArgument("store: key is empty".into())));
}
