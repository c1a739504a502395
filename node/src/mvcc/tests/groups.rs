//! Consumer groups and retention in the keyspace: claims hand each event to one consumer,
//! settles are idempotent, dead letters land in their topic, trims delete the oldest events
//! and move the first offset, and all of it survives a reopen.

use keel_model::group::GroupOptions;

use super::*;
use crate::command::{
    GroupClaimRequest, GroupJoinRequest, GroupSettleRequest, NewEvent, PublishRequest, Retention, SetRetentionRequest,
    TrimTopicRequest,
};
use crate::mvcc::events::{event_key, StoredEvent};

pub(super) fn publish(store: &mut MvccStore, topic: &str, count: usize, timestamp_ms: i64) {
    let events =
        (0..count).map(|n| NewEvent { payload: format!("e{n}").into_bytes(), ..NewEvent::default() }).collect();
    let request = PublishRequest { topic: topic.into(), events, timestamp_ms };
    assert!(matches!(apply(store, Command::Publish(request)), CommandResponse::Publish(_)));
}

pub(super) fn join(store: &mut MvccStore, group: &str, start: u64, retry_limit: Option<u32>) -> (u64, u64) {
    let options = GroupOptions { ack_wait_ms: 1_000, retry_limit, max_in_flight: 100 };
    let request = GroupJoinRequest { topic: "t".into(), group: group.into(), start, options };
    match apply(store, Command::GroupJoin(request)) {
        CommandResponse::GroupJoin(joined) => (joined.ack_floor, joined.cursor),
        other => panic!("join: {other:?}"),
    }
}

pub(super) fn claim(store: &mut MvccStore, group: &str, max: u32, now_ms: i64) -> Vec<u64> {
    let request = GroupClaimRequest {
        topic: "t".into(),
        group: group.into(),
        consumer: "c".into(),
        max,
        auto_ack: false,
        now_ms,
    };
    match apply(store, Command::GroupClaim(request)) {
        CommandResponse::GroupClaim(claimed) => claimed.outcome.delivered.iter().map(|d| d.offset).collect(),
        other => panic!("claim: {other:?}"),
    }
}

pub(super) fn settle(store: &mut MvccStore, group: &str, acks: &[u64], nacks: &[u64]) -> Vec<u64> {
    let request = GroupSettleRequest {
        topic: "t".into(),
        group: group.into(),
        acks: acks.to_vec(),
        nacks: nacks.to_vec(),
        now_ms: 0,
    };
    match apply(store, Command::GroupSettle(request)) {
        CommandResponse::GroupSettle(settled) => settled.acked,
        other => panic!("settle: {other:?}"),
    }
}

#[test]
fn a_group_hands_each_event_out_once_and_its_position_survives_a_reopen() {
    let (engine, mut store) = new_store();
    publish(&mut store, "t", 5, 1_000);
    assert_eq!(join(&mut store, "g", 0, None), (0, 0));
    assert_eq!(join(&mut store, "late", 5, None), (5, 5), "a group that starts at the end");
    assert_eq!(claim(&mut store, "g", 3, 1_000), [0, 1, 2]);
    assert_eq!(claim(&mut store, "g", 3, 1_000), [3, 4]);
    let revision = store.current_revision();
    assert_eq!(settle(&mut store, "g", &[0, 1, 9], &[]), [0, 1]);
    assert_eq!(settle(&mut store, "g", &[0], &[]), Vec::<u64>::new(), "settling again changes nothing");
    assert_eq!(store.current_revision(), revision, "group changes are not keyspace revisions");
    store.commit(WriteBatch::new()).expect("commit");

    let mut reopened = MvccStore::open(engine).expect("reopen");
    assert_eq!(join(&mut reopened, "g", 0, None), (2, 5), "an existing group keeps its place");
    assert_eq!(claim(&mut reopened, "g", 3, 1_500), Vec::<u64>::new(), "2..4 are pending, nothing new");
    assert_eq!(claim(&mut reopened, "g", 3, 2_000), [2, 3, 4], "their ack wait ran out");
}

#[test]
fn events_out_of_attempts_go_to_the_dead_letter_topic() {
    let (_, mut store) = new_store();
    publish(&mut store, "t", 2, 1_000);
    join(&mut store, "g", 0, Some(0));
    assert_eq!(claim(&mut store, "g", 2, 1_000), [0, 1]);
    settle(&mut store, "g", &[1], &[0]);
    assert_eq!(claim(&mut store, "g", 2, 1_001), Vec::<u64>::new(), "no retry left");
    let dead = store.topic("t.dead-letter").expect("a dead-letter topic");
    assert_eq!(dead.next_offset, 1);
    let kvs = store
        .range(&RangeRequest { key: event_key("t.dead-letter", 0), ..RangeRequest::default() })
        .expect("range")
        .kvs;
    let letter: StoredEvent = serde_json::from_slice(&kvs[0].value).expect("event JSON");
    assert_eq!(letter.metadata.get("dead-letter-offset").map(String::as_str), Some("0"));
    assert_eq!(letter.metadata.get("dead-letter-group").map(String::as_str), Some("g"));
    assert_eq!(store.group("t", "g").map(|g| g.ack_floor()), Some(2));
}

#[test]
fn trims_delete_the_oldest_events_and_retention_says_where_to_cut() {
    let (_, mut store) = new_store();
    publish(&mut store, "t", 10, 1_000);
    publish(&mut store, "t", 10, 5_000);
    let retention = Retention { max_events: Some(15), ..Retention::default() };
    apply(&mut store, Command::SetRetention(SetRetentionRequest { topic: "t".into(), retention }));
    assert_eq!(store.retention_cut("t", 5_000).expect("cut"), Some(5));
    let by_age = Retention { max_age: Some(std::time::Duration::from_secs(2)), ..Retention::default() };
    apply(&mut store, Command::SetRetention(SetRetentionRequest { topic: "t".into(), retention: by_age }));
    assert_eq!(store.retention_cut("t", 5_500).expect("cut"), Some(10), "events stamped before 3.5 s go");
    let bytes_before = store.topic("t").expect("topic").bytes;

    apply(&mut store, Command::TrimTopic(TrimTopicRequest { topic: "t".into(), before: 10 }));
    let topic = store.topic("t").expect("topic").clone();
    assert_eq!((topic.first_offset, topic.next_offset), (10, 20));
    assert!(topic.bytes < bytes_before && topic.bytes > 0, "{} of {bytes_before} bytes left", topic.bytes);
    let all = RangeRequest { key: event_key("t", 0), range_end: event_key("t", 99), ..RangeRequest::default() };
    assert_eq!(store.range(&all).expect("range").kvs.len(), 10);
    assert_eq!(store.retention_cut("t", 5_500).expect("cut"), None, "nothing more to cut");
    assert_eq!(join(&mut store, "g", 0, None), (10, 10), "a new group from the earliest kept event");
}

#[test]
fn a_group_of_a_topic_named_with_nul_survives_a_reopen() {
    // Written before names had one rule: the API refuses such topics now, data dirs may hold them.
    let (engine, mut store) = new_store();
    let topic = "a\0b";
    let events = vec![NewEvent { payload: b"e".to_vec(), ..NewEvent::default() }; 2];
    apply(&mut store, Command::Publish(PublishRequest { topic: topic.into(), events, timestamp_ms: 1_000 }));
    let options = GroupOptions { ack_wait_ms: 1_000, retry_limit: None, max_in_flight: 100 };
    let join = GroupJoinRequest { topic: topic.into(), group: "g".into(), start: 0, options };
    apply(&mut store, Command::GroupJoin(join));
    let claim = GroupClaimRequest {
        topic: topic.into(),
        group: "g".into(),
        consumer: "c".into(),
        max: 1,
        auto_ack: true,
        now_ms: 1,
    };
    apply(&mut store, Command::GroupClaim(claim));
    store.commit(WriteBatch::new()).expect("commit");

    let reopened = MvccStore::open(engine).expect("reopen");
    assert_eq!(reopened.groups(topic).len(), 1, "the group is still the topic's: {:?}", reopened.groups("a"));
    assert_eq!(reopened.group(topic, "g").map(|g| g.cursor), Some(1), "and its acknowledged position with it");
}

#[test]
fn a_stored_retention_age_too_large_for_milliseconds_keeps_every_event() {
    // Applied before the API bounded ages: 2^64-1 ms once wrapped to -1 and emptied the topic.
    let (_, mut store) = new_store();
    publish(&mut store, "t", 3, 1_000);
    let retention = Retention { max_age: Some(std::time::Duration::from_millis(u64::MAX)), ..Retention::default() };
    apply(&mut store, Command::SetRetention(SetRetentionRequest { topic: "t".into(), retention }));
    assert_eq!(store.retention_cut("t", 2_000).expect("cut"), None);
    let forever = Retention { max_age: Some(std::time::Duration::MAX), ..Retention::default() };
    apply(&mut store, Command::SetRetention(SetRetentionRequest { topic: "t".into(), retention: forever }));
    assert_eq!(store.retention_cut("t", i64::MAX).expect("cut"), None);
}
