//! Property test: `MvccStore` against a deliberately naive model of etcd 3.4.
//!
//! The model (`model`) keeps a full copy of the keyspace for every revision and re-derives each
//! answer from those snapshots, sharing no code with the store. Random command sequences over a small key
//! alphabet run on both; every response (headers, create/mod/version, prev_kvs, errors) must be
//! identical, and reopening the store from its engine must not change any answer.

use std::sync::Arc;

use proptest::prelude::*;

use crate::command::{
    Command, CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, SortOrder, SortTarget, TxnRequest,
};
use crate::storage::{Engine, MemoryEngine, RocksEngine, WriteBatch};

use super::{MvccStore, ReadError};

mod model;

use model::Model;

// ---- the steps ----

#[derive(Clone, Debug)]
enum Step {
    Apply(Command),
    /// Compact to `current - back`.
    Compact {
        back: i64,
    },
    /// Range at `current - back` (`None`: revision 0).
    Range {
        request: RangeRequest,
        back: Option<i64>,
    },
    Commit,
    Reopen,
}

const KEYS: [&[u8]; 6] = [b"", b"a", b"a\0", b"ab", b"b", b"c"];

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(KEYS.to_vec()).prop_map(<[u8]>::to_vec)
}

/// A key and a range end: single key, from-key, prefix, an arbitrary (maybe inverted) end, all.
fn key_span() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (key(), 0..6u8, key()).prop_map(|(key, kind, other)| match kind {
        0 | 1 => (key, Vec::new()),
        2 => (key, vec![0]),
        3 => {
            let end = crate::keys::prefix_range_end(&key);
            (key, end)
        }
        4 => (key, other),
        _ => (vec![0], vec![0]),
    })
}

/// Lease ids over the whole i64 range: negative ones are stored with a first byte of 0xff,
/// where hand-rolled prefix ends lost them on reopen.
const LEASE_IDS: [i64; 6] = [1, 2, -1, -5, i64::MIN, i64::MAX];

fn lease_id() -> impl Strategy<Value = i64> {
    prop::sample::select(LEASE_IDS.to_vec())
}

/// A lease id or 0 (no lease).
fn lease_or_none() -> impl Strategy<Value = i64> {
    prop_oneof![1 => Just(0i64), 3 => lease_id()]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![b"".to_vec(), b"x".to_vec(), b"y".to_vec()])
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (key(), value(), lease_or_none(), any::<bool>(), 0..8u8).prop_map(|(key, value, lease, prev_kv, ignore)| {
        PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value: ignore == 0 || ignore == 2,
            ignore_lease: ignore == 1 || ignore == 2,
        }
    })
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_span(), any::<bool>()).prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest { key, range_end, prev_kv })
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    let sort = (0..3u8, 0..5u8).prop_map(|(order, target)| {
        let order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][order as usize];
        let target = [SortTarget::Key, SortTarget::Version, SortTarget::Create, SortTarget::Mod, SortTarget::Value]
            [target as usize];
        (order, target)
    });
    let filters = prop::collection::vec(prop_oneof![3 => Just(0i64), 1 => 1..10i64], 4);
    (key_span(), -1..4i64, sort, 0..6u8, filters).prop_map(
        |((key, range_end), limit, (sort_order, sort_target), flags, filters)| RangeRequest {
            key,
            range_end,
            limit,
            revision: 0,
            sort_order,
            sort_target,
            serializable: false,
            keys_only: flags == 1,
            count_only: flags == 2,
            min_mod_revision: filters[0],
            max_mod_revision: filters[1],
            min_create_revision: filters[2],
            max_create_revision: filters[3],
        },
    )
}

fn compare() -> impl Strategy<Value = Compare> {
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::Greater,
        CompareResult::Less,
        CompareResult::NotEqual,
    ]);
    let target = prop_oneof![
        (0..4i64).prop_map(CompareTarget::Version),
        (0..8i64).prop_map(CompareTarget::Create),
        (0..8i64).prop_map(CompareTarget::Mod),
        value().prop_map(CompareTarget::Value),
        lease_or_none().prop_map(CompareTarget::Lease),
    ];
    (key_span(), result, target).prop_map(|((key, range_end), result, target)| Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn txn_request() -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        put_request().prop_map(RequestOp::Put),
        delete_request().prop_map(RequestOp::DeleteRange),
        // Absolute revisions inside a Txn: some future, some compacted.
        (range_request(), prop_oneof![2 => Just(0i64), 1 => 1..10i64])
            .prop_map(|(request, revision)| RequestOp::Range(RangeRequest { revision, ..request })),
    ];
    let op = leaf.prop_recursive(2, 12, 4, |inner| {
        (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(inner.clone(), 0..4),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(compare, success, failure)| RequestOp::Txn(TxnRequest { compare, success, failure }))
    });
    (prop::collection::vec(compare(), 0..3), prop::collection::vec(op.clone(), 0..5), prop::collection::vec(op, 0..5))
        .prop_map(|(compare, success, failure)| TxnRequest { compare, success, failure })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put_request().prop_map(|request| Step::Apply(Command::Put(request))),
        3 => delete_request().prop_map(|request| Step::Apply(Command::DeleteRange(request))),
        4 => txn_request().prop_map(|request| Step::Apply(Command::Txn(request))),
        2 => (lease_id(), prop::sample::select(vec![5i64, 10]))
            .prop_map(|(id, ttl_secs)| Step::Apply(Command::LeaseGrant(LeaseGrantRequest { id, ttl_secs }))),
        1 => lease_or_none().prop_map(|id| Step::Apply(Command::LeaseRevoke(LeaseRevokeRequest { id }))),
        1 => (-1..6i64).prop_map(|back| Step::Compact { back }),
        4 => (range_request(), prop::option::of(-1..8i64))
            .prop_map(|(request, back)| Step::Range { request, back }),
        1 => Just(Step::Commit),
        1 => Just(Step::Reopen),
    ]
}

// ---- running both ----

fn all_keys_at(revision: i64) -> RangeRequest {
    RangeRequest { key: Vec::new(), range_end: vec![0], revision, ..RangeRequest::default() }
}

/// Every answer that depends on the state: revisions, and all keys at every readable revision.
fn assert_same_state(store: &MvccStore, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.current_revision(), model.current());
    prop_assert_eq!(store.compact_revision(), model.compacted.max(0));
    prop_assert_eq!(store.key_count(), model.at(model.current()).len());
    let store_leases: Vec<(i64, i64)> = store.leases();
    let model_leases: Vec<(i64, i64)> = model.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect();
    prop_assert_eq!(store_leases, model_leases);
    for (id, keys) in model.lease_keys() {
        let store_keys: Vec<Vec<u8>> = store.lease(id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default();
        prop_assert_eq!(store_keys, keys, "keys of lease {}", id);
    }
    for revision in model.compacted.max(1) - 1..=model.current() + 1 {
        prop_assert_eq!(
            store.range(&all_keys_at(revision)).map_err(ReadError::rejected),
            model.top_range(&all_keys_at(revision)),
            "revision {}",
            revision
        );
    }
    Ok(())
}

fn run(steps: &[Step], engine: Arc<dyn Engine>) -> Result<(), TestCaseError> {
    let mut store = MvccStore::open(engine.clone()).expect("open");
    let mut model = Model::new();
    for step in steps {
        match step {
            Step::Apply(command) => {
                let expect = model.apply(command);
                prop_assert_eq!(store.apply(command).expect("apply"), expect, "{:?}", command);
            }
            Step::Compact { back } => {
                let command = Command::Compact(CompactRequest { revision: model.current() - back, physical: true });
                let expect = model.apply(&command);
                prop_assert_eq!(store.apply(&command).expect("apply"), expect, "{:?}", command);
            }
            Step::Range { request, back } => {
                let revision = back.map_or(0, |back| model.current() - back);
                let request = RangeRequest { revision, ..request.clone() };
                prop_assert_eq!(
                    store.range(&request).map_err(ReadError::rejected),
                    model.top_range(&request),
                    "{:?}",
                    request
                );
            }
            Step::Commit => store.commit(WriteBatch::new()).expect("commit"),
            Step::Reopen => {
                store.commit(WriteBatch::new()).expect("commit");
                store = MvccStore::open(engine.clone()).expect("reopen");
                assert_same_state(&store, &model)?;
            }
        }
        prop_assert_eq!(store.current_revision(), model.current());
    }
    assert_same_state(&store, &model)?;
    store.commit(WriteBatch::new()).expect("commit");
    assert_same_state(&MvccStore::open(engine).expect("reopen"), &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn store_on_memory_matches_model(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps, Arc::new(MemoryEngine::new()))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn store_on_rocksdb_matches_model(steps in prop::collection::vec(step(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        run(&steps, Arc::new(RocksEngine::open(dir.path()).expect("open")))?;
    }
}
