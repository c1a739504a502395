//! Unit tests of etcd's rules, one table per rule where it reads better: writes, compaction
//! and persistence here; ranges in `range`, compares and transactions in `txn`.

mod events;
mod fatal;
mod groups;
mod lease;
mod range;
mod tree;
mod txn;

use std::sync::Arc;

use crate::command::{
    Command, CommandResponse, CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp,
    SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use crate::storage::{Direction, Engine, KeyRange, MemoryEngine, Table, WriteBatch};

use super::{MvccError, MvccStore, ReadError};

fn new_store() -> (Arc<MemoryEngine>, MvccStore) {
    let engine = Arc::new(MemoryEngine::new());
    let store = MvccStore::open(engine.clone()).expect("open");
    (engine, store)
}

fn apply(store: &mut MvccStore, command: Command) -> CommandResponse {
    store.apply(&command).expect("apply")
}

fn put(store: &mut MvccStore, key: &str, value: &str) -> PutResponse {
    let request = PutRequest { key: key.into(), value: value.into(), prev_kv: true, ..PutRequest::default() };
    match apply(store, Command::Put(request)) {
        CommandResponse::Put(response) => response,
        other => panic!("put {key}: {other:?}"),
    }
}

fn delete(store: &mut MvccStore, key: &str, range_end: &str) -> DeleteRangeResponse {
    let request = DeleteRangeRequest { key: key.into(), range_end: range_end.into(), prev_kv: true };
    match apply(store, Command::DeleteRange(request)) {
        CommandResponse::DeleteRange(response) => response,
        other => panic!("delete {key}: {other:?}"),
    }
}

fn txn(store: &mut MvccStore, request: TxnRequest) -> Result<TxnResponse, MvccError> {
    match apply(store, Command::Txn(request)) {
        CommandResponse::Txn(response) => Ok(response),
        CommandResponse::Rejected(error) => Err(error),
        other => panic!("txn: {other:?}"),
    }
}

/// Grants lease `id` (grants do not change the revision).
fn grant(store: &mut MvccStore, id: i64) {
    let request = crate::command::LeaseGrantRequest { id, ttl_secs: 60 };
    assert!(matches!(apply(store, Command::LeaseGrant(request)), CommandResponse::LeaseGrant(_)));
}

fn compact(store: &mut MvccStore, revision: i64) -> CommandResponse {
    apply(store, Command::Compact(CompactRequest { revision, physical: false }))
}

fn get(key: &str) -> RangeRequest {
    RangeRequest { key: key.into(), ..RangeRequest::default() }
}

fn span(key: &[u8], range_end: &[u8]) -> RangeRequest {
    RangeRequest { key: key.to_vec(), range_end: range_end.to_vec(), ..RangeRequest::default() }
}

fn keys(response: &RangeResponse) -> Vec<String> {
    response.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect()
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest { key: key.into(), value: value.into(), ..PutRequest::default() })
}

fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare { result, target, key: key.into(), range_end: Vec::new() }
}

#[test]
fn empty_store_starts_at_revision_one() {
    let (_, store) = new_store();
    assert_eq!((store.current_revision(), store.compact_revision(), store.key_count()), (1, 0, 0));
    let response = store.range(&span(b"\0", b"\0")).expect("range");
    assert_eq!((response.header_revision, response.count, response.kvs.len()), (1, 0, 0));
}

#[test]
fn puts_and_deletes_keep_etcd_revisions_and_versions() {
    let (_, mut store) = new_store();
    assert_eq!(put(&mut store, "a", "1"), PutResponse { header_revision: 2, prev_kv: None });
    let second = put(&mut store, "a", "2");
    assert_eq!(second, PutResponse { header_revision: 3, prev_kv: Some(kv("a", "1", 2, 2, 1)) });
    assert_eq!(store.range(&get("a")).expect("range").kvs, vec![kv("a", "2", 2, 3, 2)]);

    // Deleting nothing does not move the revision.
    let nothing = delete(&mut store, "zzz", "");
    assert_eq!((nothing.header_revision, nothing.deleted), (3, 0));
    assert_eq!(store.current_revision(), 3);

    let deleted = delete(&mut store, "a", "");
    assert_eq!(deleted, DeleteRangeResponse { header_revision: 4, deleted: 1, prev_kvs: vec![kv("a", "2", 2, 3, 2)] });
    assert_eq!(store.key_count(), 0);

    // A new generation: version 1, new create revision.
    put(&mut store, "a", "3");
    assert_eq!(store.range(&get("a")).expect("range").kvs, vec![kv("a", "3", 5, 5, 1)]);
    // The past stays readable.
    let at_three = RangeRequest { revision: 3, ..get("a") };
    assert_eq!(store.range(&at_three).expect("range").kvs, vec![kv("a", "2", 2, 3, 2)]);
    let at_four = RangeRequest { revision: 4, ..get("a") };
    assert_eq!(store.range(&at_four).expect("range").kvs, vec![]);
}

#[test]
fn put_ignore_value_and_lease_keep_the_previous_ones() {
    let (_, mut store) = new_store();
    grant(&mut store, 7);
    grant(&mut store, 8);
    let first = PutRequest { key: "k".into(), value: "v".into(), lease: 7, ..PutRequest::default() };
    apply(&mut store, Command::Put(first));
    let keep_value = PutRequest { key: "k".into(), ignore_value: true, lease: 8, ..PutRequest::default() };
    apply(&mut store, Command::Put(keep_value));
    let kv_now = &store.range(&get("k")).expect("range").kvs[0];
    assert_eq!((kv_now.value.as_slice(), kv_now.lease), (b"v".as_slice(), 8));
    let keep_lease = PutRequest { key: "k".into(), value: "w".into(), ignore_lease: true, ..PutRequest::default() };
    apply(&mut store, Command::Put(keep_lease));
    let kv_now = &store.range(&get("k")).expect("range").kvs[0];
    assert_eq!((kv_now.value.as_slice(), kv_now.lease), (b"w".as_slice(), 8));

    let missing = PutRequest { key: "missing".into(), ignore_value: true, ..PutRequest::default() };
    let revision = store.current_revision();
    assert_eq!(apply(&mut store, Command::Put(missing)), CommandResponse::Rejected(MvccError::KeyNotFound));
    assert_eq!(store.current_revision(), revision);
    assert_eq!(MvccError::KeyNotFound.to_string(), "etcdserver: key not found");
}

#[test]
fn compaction_rules_and_records() {
    let (engine, mut store) = new_store();
    put(&mut store, "a", "1"); // 2
    put(&mut store, "a", "2"); // 3
    put(&mut store, "b", "1"); // 4
    delete(&mut store, "b", ""); // 5
    put(&mut store, "c", "1"); // 6
    store.commit(WriteBatch::new()).expect("commit");
    assert_eq!(record_count(engine.as_ref()), 5);

    assert_eq!(compact(&mut store, 7), CommandResponse::Rejected(MvccError::FutureRevision { current_revision: 6 }));
    assert_eq!(
        compact(&mut store, 5),
        CommandResponse::Compact(crate::command::CompactResponse { header_revision: 6 })
    );
    assert_eq!(compact(&mut store, 5), CommandResponse::Rejected(MvccError::Compacted { compact_revision: 5 }));
    assert_eq!(compact(&mut store, 4), CommandResponse::Rejected(MvccError::Compacted { compact_revision: 5 }));
    store.commit(WriteBatch::new()).expect("commit");
    // Left: a@3 and c@6. b's generation ended at 5 <= 5 and is gone, tombstone included.
    assert_eq!(record_count(engine.as_ref()), 2);
    let all = store.range(&span(b"\0", b"\0")).expect("range");
    assert_eq!(all.kvs, vec![kv("a", "2", 2, 3, 2), kv("c", "1", 6, 6, 1)]);
    let at_five = store.range(&RangeRequest { revision: 5, ..span(b"\0", b"\0") }).expect("range");
    assert_eq!(keys(&at_five), vec!["a"]);

    // Reopening gives the same answers, and versions keep counting.
    let mut reopened = MvccStore::open(engine.clone()).expect("reopen");
    assert_eq!((reopened.current_revision(), reopened.compact_revision()), (6, 5));
    assert_eq!(reopened.range(&span(b"\0", b"\0")).expect("range"), all);
    put(&mut reopened, "a", "3");
    assert_eq!(reopened.range(&get("a")).expect("range").kvs, vec![kv("a", "3", 2, 7, 3)]);
}

#[test]
fn first_compaction_may_be_at_revision_zero_as_in_etcd() {
    let (_, mut store) = new_store();
    assert!(matches!(compact(&mut store, 0), CommandResponse::Compact(_)));
    assert_eq!(compact(&mut store, 0), CommandResponse::Rejected(MvccError::Compacted { compact_revision: 0 }));
    assert_eq!(compact(&mut store, -1), CommandResponse::Rejected(MvccError::Compacted { compact_revision: 0 }));
}

#[test]
fn revisions_survive_reopen_when_every_record_is_gone() {
    let (engine, mut store) = new_store();
    put(&mut store, "a", "1");
    delete(&mut store, "a", "");
    compact(&mut store, 3);
    let mut extra = WriteBatch::new();
    extra.put(Table::StateMeta, b"applied".as_slice(), b"42".as_slice());
    store.commit(extra).expect("commit");
    assert_eq!(record_count(engine.as_ref()), 0);
    assert_eq!(engine.get(Table::StateMeta, b"applied").expect("get"), Some(b"42".to_vec()));
    let reopened = MvccStore::open(engine).expect("reopen");
    assert_eq!((reopened.current_revision(), reopened.compact_revision(), reopened.key_count()), (3, 3, 0));
}

#[test]
fn nothing_reaches_the_engine_before_commit() {
    let (engine, mut store) = new_store();
    put(&mut store, "a", "1");
    assert_eq!(record_count(engine.as_ref()), 0);
    assert_eq!(MvccStore::open(engine.clone()).expect("open").current_revision(), 1);
    store.commit(WriteBatch::new()).expect("commit");
    assert_eq!(record_count(engine.as_ref()), 1);
    assert_eq!(MvccStore::open(engine).expect("open").current_revision(), 2);
}

#[test]
fn publish_member_changes_nothing() {
    let (_, mut store) = new_store();
    let command = Command::PublishMember(crate::command::MemberAttributes::default());
    assert_eq!(apply(&mut store, command), CommandResponse::None);
    assert_eq!(store.current_revision(), 1);
}

fn record_count(engine: &dyn Engine) -> usize {
    let mut count = 0;
    engine
        .scan(Table::Kv, KeyRange::all(), Direction::Forward, &mut |_, _| {
            count += 1;
            true
        })
        .expect("scan");
    count
}
