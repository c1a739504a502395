//! A member whose own storage is broken stops; it never answers. Engine failures while applying
//! come out of `apply` as `StorageError` (the state machine hands that to openraft, which stops
//! the member), never as `CommandResponse::Rejected`, which is a replicated answer every member
//! must give alike. Stored records that do not decode exactly refuse `open`, instead of being
//! skipped or read as something else.

use super::groups::{claim, join, publish, settle};
use super::*;
use crate::command::{GroupClaimRequest, LeaseGrantRequest, NewEvent, PublishRequest, TrimTopicRequest};
use crate::storage::FaultyEngine;

fn faulty_store() -> (Arc<FaultyEngine>, MvccStore) {
    let engine = Arc::new(FaultyEngine::new());
    let store = MvccStore::open(engine.clone()).expect("open");
    (engine, store)
}

#[test]
fn an_engine_failure_while_dead_lettering_is_fatal_not_a_rejection() {
    let (engine, mut store) = faulty_store();
    publish(&mut store, "t", 1, 1_000);
    join(&mut store, "g", 0, Some(0));
    assert_eq!(claim(&mut store, "g", 1, 1_000), [0]);
    settle(&mut store, "g", &[], &[0]);
    // Committed, so the dead letter reads the event from the engine, not from the staged changes.
    store.commit(WriteBatch::new()).expect("commit");

    engine.fail_reads();
    let request = GroupClaimRequest {
        topic: "t".into(),
        group: "g".into(),
        consumer: "c".into(),
        max: 1,
        auto_ack: false,
        now_ms: 1_001,
    };
    let outcome = store.apply(&Command::GroupClaim(request));
    assert!(outcome.is_err(), "the claim must stop this member, not answer: {outcome:?}");
}

#[test]
fn an_engine_failure_while_trimming_is_fatal_not_a_rejection() {
    let (engine, mut store) = faulty_store();
    publish(&mut store, "t", 3, 1_000);
    store.commit(WriteBatch::new()).expect("commit");

    engine.fail_reads();
    let outcome = store.apply(&Command::TrimTopic(TrimTopicRequest { topic: "t".into(), before: 2 }));
    assert!(outcome.is_err(), "the trim must stop this member, not answer: {outcome:?}");
}

#[test]
fn a_rule_refusal_is_still_an_answer() {
    // The other side of the boundary: what etcd's rules refuse, every member refuses alike.
    let (_, mut store) = faulty_store();
    let grant = Command::LeaseGrant(LeaseGrantRequest { id: 7, ttl_secs: 60 });
    apply(&mut store, grant.clone());
    assert_eq!(apply(&mut store, grant), CommandResponse::Rejected(MvccError::LeaseExists));
}

/// A store holding one of each kind of stored record: a key-value, a lease, a topic, a
/// remembered publish id and a group.
fn stored_state() -> Arc<MemoryEngine> {
    let (engine, mut store) = new_store();
    grant(&mut store, 7);
    let put = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 7, ..PutRequest::default() };
    apply(&mut store, Command::Put(put));
    let event = NewEvent { id: "once".into(), ..NewEvent::default() };
    apply(&mut store, Command::Publish(PublishRequest { topic: "t".into(), events: vec![event], timestamp_ms: 1 }));
    join(&mut store, "g", 0, None);
    store.commit(WriteBatch::new()).expect("commit");
    engine
}

fn stored(engine: &MemoryEngine, table: Table, key: &[u8]) -> Vec<u8> {
    engine.get(table, key).expect("get").unwrap_or_else(|| panic!("no record at {key:?}"))
}

/// The only key of `table` starting with `prefix`.
fn only_key(engine: &MemoryEngine, table: Table, prefix: &[u8]) -> Vec<u8> {
    let mut found = Vec::new();
    engine
        .scan(table, KeyRange::all(), Direction::Forward, &mut |key, _| {
            if key.starts_with(prefix) {
                found.push(key.to_vec());
            }
            true
        })
        .expect("scan");
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// Moves the record at `from` to `to`.
fn rename(engine: &MemoryEngine, table: Table, from: &[u8], to: &[u8]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(table, to, stored(engine, table, from));
    batch.delete(table, from);
    batch
}

/// Appends `junk` to the record at `key`.
fn extend(engine: &MemoryEngine, table: Table, key: &[u8], junk: &[u8]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(table, key, [stored(engine, table, key).as_slice(), junk].concat());
    batch
}

#[test]
fn a_stored_record_that_does_not_decode_exactly_refuses_to_open() {
    const GROUP: &[u8] = b"mvcc/group/t\0g";
    const TOPIC: &[u8] = b"mvcc/topic/t";
    type Damage = fn(&MemoryEngine) -> WriteBatch;
    let cases: [(&str, Damage); 8] = [
        ("a group key without its topic/group separator", |e| rename(e, Table::StateMeta, GROUP, b"mvcc/group/tg")),
        ("a group key that is not UTF-8", |e| rename(e, Table::StateMeta, GROUP, b"mvcc/group/\x80\0g")),
        ("a group record with bytes after it", |e| extend(e, Table::StateMeta, GROUP, b"junk")),
        ("a topic key that is not UTF-8", |e| rename(e, Table::StateMeta, TOPIC, b"mvcc/topic/\x80")),
        ("a topic record that is garbage", |_| {
            let mut batch = WriteBatch::new();
            batch.put(Table::StateMeta, TOPIC, b"\xff\xff\xff".to_vec());
            batch
        }),
        ("a remembered id with bytes after it", |e| {
            let key = only_key(e, Table::StateMeta, b"mvcc/topic-id/");
            extend(e, Table::StateMeta, &key, b"junk")
        }),
        ("a lease record with bytes after it", |e| {
            let key = only_key(e, Table::StateMeta, b"mvcc/lease/");
            extend(e, Table::StateMeta, &key, b"junk")
        }),
        ("a key-value record with bytes after it", |e| {
            let mut batch = WriteBatch::new();
            e.scan(Table::Kv, KeyRange::all(), Direction::Forward, &mut |key, value| {
                batch.put(Table::Kv, key, [value, b"junk"].concat());
                true
            })
            .expect("scan");
            batch
        }),
    ];
    for (what, damage) in cases {
        let engine = stored_state();
        MvccStore::open(engine.clone()).unwrap_or_else(|error| panic!("{what}: the undamaged store opens: {error}"));
        let batch = damage(&engine);
        engine.write(batch, crate::storage::Durability::Sync).expect("damage");
        let opened = MvccStore::open(engine);
        assert!(opened.is_err(), "{what}: opened as {:?}", opened.map(|store| store.topics()));
    }
}
