//! Property test: `MvccStore` against a deliberately naive model of etcd 3.4.
//!
//! The model keeps a full copy of the keyspace for every revision and re-derives each answer from
//! those snapshots, sharing no code with the store. Random command sequences over a small key
//! alphabet run on both; every response (headers, create/mod/version, prev_kvs, errors) must be
//! identical, and reopening the store from its engine must not change any answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use crate::command::{
    Command, CommandResponse, CompactRequest, CompactResponse, Compare, CompareResult,
    CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest,
    TxnResponse,
};
use crate::storage::{Engine, MemoryEngine, RocksEngine, WriteBatch};

use super::{MvccError, MvccStore};

type Keyspace = BTreeMap<Vec<u8>, KeyValue>;

// ---- the model ----

struct Model {
    /// `snapshots[r]`: the keyspace as of revision `r` (0 and 1 are empty).
    snapshots: Vec<Keyspace>,
    /// etcd's compactMainRev: -1 until the first compaction.
    compacted: i64,
}

/// A write transaction of the model: a working copy of the keyspace.
struct ModelTxn {
    begin: i64,
    working: Keyspace,
    changed: bool,
}

impl ModelTxn {
    fn read_revision(&self) -> i64 {
        self.begin + i64::from(self.changed)
    }
}

fn in_span(candidate: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => candidate == key,
        [0] => candidate >= key,
        end => candidate >= key && candidate < end,
    }
}

impl Model {
    fn new() -> Self {
        Model {
            snapshots: vec![Keyspace::new(), Keyspace::new()],
            compacted: -1,
        }
    }

    fn current(&self) -> i64 {
        self.snapshots.len() as i64 - 1
    }

    fn at(&self, revision: i64) -> &Keyspace {
        &self.snapshots[revision as usize]
    }

    /// The keyspace a read at `requested` sees in a view at `current` (`working` is the state
    /// at `current` when it is not yet a snapshot).
    fn view<'a>(
        &'a self,
        requested: i64,
        current: i64,
        working: &'a Keyspace,
    ) -> Result<&'a Keyspace, MvccError> {
        if requested > current {
            return Err(MvccError::FutureRevision {
                current_revision: current,
            });
        }
        let revision = if requested <= 0 { current } else { requested };
        if revision < self.compacted {
            return Err(MvccError::Compacted {
                compact_revision: self.compacted.max(0),
            });
        }
        Ok(if revision == current {
            working
        } else {
            self.at(revision)
        })
    }

    fn range(
        &self,
        request: &RangeRequest,
        current: i64,
        working: &Keyspace,
    ) -> Result<RangeResponse, MvccError> {
        let view = self.view(request.revision, current, working)?;
        let mut kvs: Vec<KeyValue> = view
            .values()
            .filter(|kv| in_span(&kv.key, &request.key, &request.range_end))
            .cloned()
            .collect();
        let count = kvs.len() as i64;
        if request.count_only {
            kvs.clear();
        }
        // etcd decides whether to read everything from the *requested* order: a non-key target
        // with no order is sorted after reading only the first `limit + 1` keys.
        let unfiltered = [
            request.min_mod_revision,
            request.max_mod_revision,
            request.min_create_revision,
            request.max_create_revision,
        ] == [0; 4];
        if request.sort_order == SortOrder::None && unfiltered && request.limit > 0 {
            kvs.truncate(request.limit as usize + 1);
        }
        let bound = |value: i64, min: i64, max: i64| {
            (min == 0 || value >= min) && (max == 0 || value <= max)
        };
        kvs.retain(|kv| {
            bound(
                kv.mod_revision,
                request.min_mod_revision,
                request.max_mod_revision,
            ) && bound(
                kv.create_revision,
                request.min_create_revision,
                request.max_create_revision,
            )
        });
        let order = match (request.sort_order, request.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (order, _) => order,
        };
        let sort_key = |kv: &KeyValue| -> (i64, Vec<u8>) {
            match request.sort_target {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, Vec::new()),
                SortTarget::Create => (kv.create_revision, Vec::new()),
                SortTarget::Mod => (kv.mod_revision, Vec::new()),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by_key(|kv| sort_key(kv)),
            SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(sort_key(kv))),
        }
        let more = request.limit > 0 && kvs.len() as i64 > request.limit;
        if more {
            kvs.truncate(request.limit as usize);
        }
        if request.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        Ok(RangeResponse {
            header_revision: current,
            kvs,
            more,
            count,
        })
    }

    fn begin(&self) -> ModelTxn {
        ModelTxn {
            begin: self.current(),
            working: self.at(self.current()).clone(),
            changed: false,
        }
    }

    fn end(&mut self, txn: ModelTxn) {
        if txn.changed {
            self.snapshots.push(txn.working);
        }
    }

    fn put(
        &self,
        txn: &mut ModelTxn,
        request: &PutRequest,
        reject_missing: bool,
    ) -> Result<PutResponse, MvccError> {
        let previous = txn.working.get(&request.key).cloned();
        let ignores = request.ignore_value || request.ignore_lease;
        if ignores && previous.is_none() && reject_missing {
            return Err(MvccError::KeyNotFound);
        }
        let revision = txn.begin + 1;
        let kv = KeyValue {
            key: request.key.clone(),
            create_revision: previous.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: previous.as_ref().map_or(1, |p| p.version + 1),
            value: match &previous {
                Some(p) if request.ignore_value => p.value.clone(),
                _ => request.value.clone(),
            },
            lease: match &previous {
                Some(p) if request.ignore_lease => p.lease,
                _ => request.lease,
            },
        };
        txn.working.insert(request.key.clone(), kv);
        txn.changed = true;
        Ok(PutResponse {
            header_revision: revision,
            prev_kv: if request.prev_kv { previous } else { None },
        })
    }

    fn delete(&self, txn: &mut ModelTxn, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> = txn
            .working
            .values()
            .filter(|kv| in_span(&kv.key, &request.key, &request.range_end))
            .cloned()
            .collect();
        for kv in &doomed {
            txn.working.remove(&kv.key);
        }
        txn.changed |= !doomed.is_empty();
        DeleteRangeResponse {
            header_revision: txn.read_revision(),
            deleted: doomed.len() as i64,
            prev_kvs: if request.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn compare_holds(before: &Keyspace, compare: &Compare) -> bool {
        let kvs: Vec<&KeyValue> = before
            .values()
            .filter(|kv| in_span(&kv.key, &compare.key, &compare.range_end))
            .collect();
        let zero = KeyValue::default();
        let kvs = if kvs.is_empty() {
            if matches!(compare.target, CompareTarget::Value(_)) {
                return false;
            }
            vec![&zero]
        } else {
            kvs
        };
        kvs.iter().all(|kv| {
            let ordering = match &compare.target {
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::Create(v) => kv.create_revision.cmp(v),
                CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                CompareTarget::Value(v) => kv.value.cmp(v),
                CompareTarget::Lease(v) => kv.lease.cmp(v),
            };
            match compare.result {
                CompareResult::Equal => ordering.is_eq(),
                CompareResult::NotEqual => ordering.is_ne(),
                CompareResult::Greater => ordering.is_gt(),
                CompareResult::Less => ordering.is_lt(),
            }
        })
    }

    fn branch<'r>(before: &Keyspace, request: &'r TxnRequest) -> (bool, &'r [RequestOp]) {
        if request
            .compare
            .iter()
            .all(|compare| Self::compare_holds(before, compare))
        {
            (true, &request.success)
        } else {
            (false, &request.failure)
        }
    }

    /// Runs `check` on every non-Txn op of the taken path, branches decided on `before`.
    fn check_path(
        before: &Keyspace,
        request: &TxnRequest,
        check: &dyn Fn(&RequestOp) -> Result<(), MvccError>,
    ) -> Result<(), MvccError> {
        for op in Self::branch(before, request).1 {
            match op {
                RequestOp::Txn(nested) => Self::check_path(before, nested, check)?,
                op => check(op)?,
            }
        }
        Ok(())
    }

    fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let current = self.current();
        let before = self.at(current).clone();
        let read_only = request
            .success
            .iter()
            .chain(&request.failure)
            .all(|op| matches!(op, RequestOp::Range(_)));
        if !read_only {
            Self::check_path(&before, request, &|op| match op {
                RequestOp::Put(put)
                    if (put.ignore_value || put.ignore_lease) && !before.contains_key(&put.key) =>
                {
                    Err(MvccError::KeyNotFound)
                }
                _ => Ok(()),
            })?;
        }
        let compacted = self.compacted;
        Self::check_path(&before, request, &|op| match op {
            RequestOp::Range(range) if range.revision != 0 && range.revision > current => {
                Err(MvccError::FutureRevision {
                    current_revision: current,
                })
            }
            RequestOp::Range(range) if range.revision != 0 && range.revision < compacted => {
                Err(MvccError::Compacted {
                    compact_revision: compacted.max(0),
                })
            }
            _ => Ok(()),
        })?;
        let mut txn = self.begin();
        let mut response = self.apply_ops(&mut txn, &before, request);
        self.end(txn);
        response.header_revision = self.current();
        Ok(response)
    }

    fn apply_ops(
        &self,
        txn: &mut ModelTxn,
        before: &Keyspace,
        request: &TxnRequest,
    ) -> TxnResponse {
        let (succeeded, ops) = Self::branch(before, request);
        let responses = ops
            .iter()
            .map(|op| match op {
                RequestOp::Range(range) => {
                    let current = txn.read_revision();
                    ResponseOp::Range(self.range(range, current, &txn.working).expect("checked"))
                }
                RequestOp::Put(put) => {
                    ResponseOp::Put(self.put(txn, put, false).expect("not rejecting"))
                }
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete(txn, delete)),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.apply_ops(txn, before, nested)),
            })
            .collect();
        TxnResponse {
            header_revision: 0,
            succeeded,
            responses,
        }
    }

    fn apply(&mut self, command: &Command) -> CommandResponse {
        let outcome = match command {
            Command::Put(request) => {
                let mut txn = self.begin();
                let response = self.put(&mut txn, request, true);
                self.end(txn);
                response.map(CommandResponse::Put)
            }
            Command::DeleteRange(request) => {
                let mut txn = self.begin();
                let response = self.delete(&mut txn, request);
                self.end(txn);
                Ok(CommandResponse::DeleteRange(response))
            }
            Command::Txn(request) => self.txn(request).map(CommandResponse::Txn),
            Command::Compact(request) => {
                if request.revision <= self.compacted {
                    Err(MvccError::Compacted {
                        compact_revision: self.compacted.max(0),
                    })
                } else if request.revision > self.current() {
                    Err(MvccError::FutureRevision {
                        current_revision: self.current(),
                    })
                } else {
                    self.compacted = request.revision;
                    Ok(CommandResponse::Compact(CompactResponse {
                        header_revision: self.current(),
                    }))
                }
            }
            Command::PublishMember(_) => Ok(CommandResponse::None),
        };
        outcome.unwrap_or_else(CommandResponse::Rejected)
    }

    fn top_range(&self, request: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let current = self.current();
        self.range(request, current, self.at(current))
    }
}

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

/// etcd's prefix range end: the key with its last non-0xff byte incremented.
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("not empty") += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// A key and a range end: single key, from-key, prefix, an arbitrary (maybe inverted) end, all.
fn key_span() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (key(), 0..6u8, key()).prop_map(|(key, kind, other)| match kind {
        0 | 1 => (key, Vec::new()),
        2 => (key, vec![0]),
        3 => {
            let end = prefix_end(&key);
            (key, end)
        }
        4 => (key, other),
        _ => (vec![0], vec![0]),
    })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![b"".to_vec(), b"x".to_vec(), b"y".to_vec()])
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (key(), value(), 0..3i64, any::<bool>(), 0..8u8).prop_map(
        |(key, value, lease, prev_kv, ignore)| PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value: ignore == 0 || ignore == 2,
            ignore_lease: ignore == 1 || ignore == 2,
        },
    )
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_span(), any::<bool>()).prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    let sort = (0..3u8, 0..5u8).prop_map(|(order, target)| {
        let order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][order as usize];
        let target = [
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ][target as usize];
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
        (0..3i64).prop_map(CompareTarget::Lease),
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
        (range_request(), prop_oneof![2 => Just(0i64), 1 => 1..10i64]).prop_map(
            |(request, revision)| RequestOp::Range(RangeRequest {
                revision,
                ..request
            })
        ),
    ];
    let op = leaf.prop_recursive(2, 12, 4, |inner| {
        (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(inner.clone(), 0..4),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(compare, success, failure)| {
                RequestOp::Txn(TxnRequest {
                    compare,
                    success,
                    failure,
                })
            })
    });
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op.clone(), 0..5),
        prop::collection::vec(op, 0..5),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => put_request().prop_map(|request| Step::Apply(Command::Put(request))),
        3 => delete_request().prop_map(|request| Step::Apply(Command::DeleteRange(request))),
        4 => txn_request().prop_map(|request| Step::Apply(Command::Txn(request))),
        1 => (-1..6i64).prop_map(|back| Step::Compact { back }),
        4 => (range_request(), prop::option::of(-1..8i64))
            .prop_map(|(request, back)| Step::Range { request, back }),
        1 => Just(Step::Commit),
        1 => Just(Step::Reopen),
    ]
}

// ---- running both ----

fn all_keys_at(revision: i64) -> RangeRequest {
    RangeRequest {
        key: Vec::new(),
        range_end: vec![0],
        revision,
        ..RangeRequest::default()
    }
}

/// Every answer that depends on the state: revisions, and all keys at every readable revision.
fn assert_same_state(store: &MvccStore, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.current_revision(), model.current());
    prop_assert_eq!(store.compact_revision(), model.compacted.max(0));
    prop_assert_eq!(store.key_count(), model.at(model.current()).len());
    for revision in model.compacted.max(1) - 1..=model.current() + 1 {
        prop_assert_eq!(
            store.range(&all_keys_at(revision)),
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
                prop_assert_eq!(
                    store.apply(command).expect("apply"),
                    expect,
                    "{:?}",
                    command
                );
            }
            Step::Compact { back } => {
                let command = Command::Compact(CompactRequest {
                    revision: model.current() - back,
                    physical: true,
                });
                let expect = model.apply(&command);
                prop_assert_eq!(
                    store.apply(&command).expect("apply"),
                    expect,
                    "{:?}",
                    command
                );
            }
            Step::Range { request, back } => {
                let revision = back.map_or(0, |back| model.current() - back);
                let request = RangeRequest {
                    revision,
                    ..request.clone()
                };
                prop_assert_eq!(
                    store.range(&request),
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
