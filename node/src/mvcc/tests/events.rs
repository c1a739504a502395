//! Topic logs in the keyspace: dense offsets, one revision per publish, never-decreasing time,
//! de-duplication inside the window only, and all of it surviving a reopen.

use super::*;
use crate::command::{NewEvent, PublishRequest, PublishResponse, Published};
use crate::mvcc::events::{event_key, StoredEvent, DEDUP_WINDOW_MS};

fn publish(store: &mut MvccStore, topic: &str, ids: &[&str], timestamp_ms: i64) -> PublishResponse {
    let events = ids
        .iter()
        .map(|id| NewEvent { id: id.to_string(), payload: id.as_bytes().to_vec(), ..NewEvent::default() })
        .collect();
    let request = PublishRequest { topic: topic.into(), events, timestamp_ms };
    match apply(store, Command::Publish(request)) {
        CommandResponse::Publish(response) => response,
        other => panic!("publish: {other:?}"),
    }
}

fn offsets(response: &PublishResponse) -> Vec<(u64, bool)> {
    response.results.iter().map(|Published { offset, duplicate }| (*offset, *duplicate)).collect()
}

fn stored(store: &MvccStore, topic: &str, offset: u64) -> StoredEvent {
    let kvs =
        store.range(&RangeRequest { key: event_key(topic, offset), ..RangeRequest::default() }).expect("range").kvs;
    serde_json::from_slice(&kvs[0].value).expect("event JSON")
}

#[test]
fn offsets_are_dense_per_topic_and_a_publish_is_one_revision() {
    let (_, mut store) = new_store();
    let first = publish(&mut store, "orders", &["", "", ""], 1_000);
    assert_eq!(offsets(&first), vec![(0, false), (1, false), (2, false)]);
    assert_eq!(first.header_revision, 2, "three events, one revision");
    assert_eq!(offsets(&publish(&mut store, "payments", &[""], 1_000)), vec![(0, false)]);
    assert_eq!(offsets(&publish(&mut store, "orders", &[""], 1_001)), vec![(3, false)]);
    assert_eq!(store.topic("orders").map(|t| t.next_offset), Some(4));
    assert_eq!(stored(&store, "orders", 3).offset, 3);
}

#[test]
fn time_never_goes_backwards_within_a_topic() {
    let (_, mut store) = new_store();
    publish(&mut store, "t", &[""], 5_000);
    // A new leader with a clock behind the old one's.
    let later = publish(&mut store, "t", &[""], 4_000);
    assert_eq!(later.timestamp_ms, 5_000);
    assert_eq!(stored(&store, "t", 1).timestamp_ms, 5_000);
}

#[test]
fn ids_are_deduplicated_inside_the_window_only() {
    let (_, mut store) = new_store();
    assert_eq!(offsets(&publish(&mut store, "t", &["a", "b"], 1_000)), vec![(0, false), (1, false)]);
    let revision = store.current_revision();
    assert_eq!(offsets(&publish(&mut store, "t", &["a"], 2_000)), vec![(0, true)]);
    assert_eq!(store.current_revision(), revision, "a publish of duplicates only writes no event");
    assert_eq!(offsets(&publish(&mut store, "other", &["a"], 2_000)), vec![(0, false)], "ids are per topic");
    let after_window = 1_000 + DEDUP_WINDOW_MS + 1;
    assert_eq!(offsets(&publish(&mut store, "t", &["a"], after_window)), vec![(2, false)]);
}

#[test]
fn topics_and_remembered_ids_survive_a_reopen() {
    let (engine, mut store) = new_store();
    publish(&mut store, "t", &["a", ""], 1_000);
    store.commit(WriteBatch::new()).expect("commit");
    let mut reopened = MvccStore::open(engine).expect("reopen");
    assert_eq!(reopened.topic("t").map(|t| (t.next_offset, t.last_timestamp_ms)), Some((2, 1_000)));
    assert_eq!(offsets(&publish(&mut reopened, "t", &["a", "c"], 1_500)), vec![(0, true), (2, false)]);
}
