//! MemoryEvents against the shared events contract, plus what only the in-memory logs can show
//! cheaply: the de-duplication window ends on time under a paused clock.

use std::sync::Arc;
use std::time::Duration;

use keel_client::events::{conformance, Events, MemoryEvents, PublishOptions, Published, ReadOptions, DEDUP_WINDOW};
use keel_client::Error;

#[tokio::test(start_paused = true)]
async fn memory_events_pass_the_conformance_suite() {
    conformance::run(Arc::new(MemoryEvents::new())).await;
}

#[tokio::test(start_paused = true)]
async fn an_id_is_a_duplicate_within_the_window_and_new_after_it() {
    let events = MemoryEvents::new();
    let with_id = || PublishOptions { id: Some("order-1".into()), ..PublishOptions::default() };
    assert_eq!(events.publish("orders", b"a".to_vec(), with_id()).await, Ok(Published { offset: 0, duplicate: false }));

    // The window is inclusive, as the cluster's: a repeat exactly at its end is still a duplicate.
    tokio::time::advance(DEDUP_WINDOW).await;
    let repeat = events.publish("orders", b"b".to_vec(), with_id()).await;
    assert_eq!(repeat, Ok(Published { offset: 0, duplicate: true }));
    tokio::time::advance(Duration::from_millis(1)).await;
    let after = events.publish("orders", b"c".to_vec(), with_id()).await;
    assert_eq!(after, Ok(Published { offset: 1, duplicate: false }), "past the window the id is new again");
    let read = events.read("orders", ReadOptions::default()).await.expect("read");
    assert_eq!(read.iter().map(|event| event.payload.as_slice()).collect::<Vec<_>>(), [b"a", b"c"]);
}

#[tokio::test]
async fn refusals_say_what_is_wrong() {
    let events = MemoryEvents::new();
    let result = events.publish("a/b", b"p".to_vec(), PublishOptions::default()).await;
    let expected = "events: topic \"a/b\" must not contain '/'";
    assert_eq!(result, Err(Error::InvalidArgument(expected.into())));
    assert_eq!(events.read("nothing", ReadOptions::default()).await, Err(Error::NotFound));
}
