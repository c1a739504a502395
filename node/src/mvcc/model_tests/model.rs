//! The model: a deliberately naive etcd 3.4 that keeps a full copy of the keyspace for every
//! revision and re-derives each answer from those snapshots, sharing no code with the store.

use std::collections::BTreeMap;

use crate::command::{
    Command, CommandResponse, CompactResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, KeyValue, LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};

use super::super::MvccError;

type Keyspace = BTreeMap<Vec<u8>, KeyValue>;

pub(super) struct Model {
    /// `snapshots[r]`: the keyspace as of revision `r` (0 and 1 are empty).
    snapshots: Vec<Keyspace>,
    /// etcd's compactMainRev: -1 until the first compaction.
    pub(super) compacted: i64,
    /// Lease id → granted TTL. A lease's keys are the live keys whose `lease` is its id.
    pub(super) leases: BTreeMap<i64, i64>,
}

/// A write transaction of the model: a working copy of the keyspace.
struct ModelTxn {
    begin: i64,
    working: Keyspace,
    changed: bool,
}

impl ModelTxn {
    pub(super) fn read_revision(&self) -> i64 {
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
    pub(super) fn new() -> Self {
        Model { snapshots: vec![Keyspace::new(), Keyspace::new()], compacted: -1, leases: BTreeMap::new() }
    }

    pub(super) fn current(&self) -> i64 {
        self.snapshots.len() as i64 - 1
    }

    pub(super) fn at(&self, revision: i64) -> &Keyspace {
        &self.snapshots[revision as usize]
    }

    /// The keyspace a read at `requested` sees in a view at `current` (`working` is the state
    /// at `current` when it is not yet a snapshot).
    pub(super) fn view<'a>(
        &'a self,
        requested: i64,
        current: i64,
        working: &'a Keyspace,
    ) -> Result<&'a Keyspace, MvccError> {
        if requested > current {
            return Err(MvccError::FutureRevision { current_revision: current });
        }
        let revision = if requested <= 0 { current } else { requested };
        if revision < self.compacted {
            return Err(MvccError::Compacted { compact_revision: self.compacted.max(0) });
        }
        Ok(if revision == current { working } else { self.at(revision) })
    }

    pub(super) fn range(
        &self,
        request: &RangeRequest,
        current: i64,
        working: &Keyspace,
    ) -> Result<RangeResponse, MvccError> {
        let view = self.view(request.revision, current, working)?;
        let mut kvs: Vec<KeyValue> =
            view.values().filter(|kv| in_span(&kv.key, &request.key, &request.range_end)).cloned().collect();
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
        let bound = |value: i64, min: i64, max: i64| (min == 0 || value >= min) && (max == 0 || value <= max);
        kvs.retain(|kv| {
            bound(kv.mod_revision, request.min_mod_revision, request.max_mod_revision)
                && bound(kv.create_revision, request.min_create_revision, request.max_create_revision)
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
        Ok(RangeResponse { header_revision: current, kvs, more, count })
    }

    fn begin(&self) -> ModelTxn {
        ModelTxn { begin: self.current(), working: self.at(self.current()).clone(), changed: false }
    }

    fn end(&mut self, txn: ModelTxn) {
        if txn.changed {
            self.snapshots.push(txn.working);
        }
    }

    fn put(&self, txn: &mut ModelTxn, request: &PutRequest, reject_missing: bool) -> Result<PutResponse, MvccError> {
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
        let mut kv = kv;
        if kv.lease != 0 && !self.leases.contains_key(&kv.lease) {
            if reject_missing {
                return Err(MvccError::LeaseNotFound);
            }
            kv.lease = 0;
        }
        txn.working.insert(request.key.clone(), kv);
        txn.changed = true;
        Ok(PutResponse { header_revision: revision, prev_kv: if request.prev_kv { previous } else { None } })
    }

    fn delete(&self, txn: &mut ModelTxn, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> =
            txn.working.values().filter(|kv| in_span(&kv.key, &request.key, &request.range_end)).cloned().collect();
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

    pub(super) fn compare_holds(before: &Keyspace, compare: &Compare) -> bool {
        let kvs: Vec<&KeyValue> =
            before.values().filter(|kv| in_span(&kv.key, &compare.key, &compare.range_end)).collect();
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

    pub(super) fn branch<'r>(before: &Keyspace, request: &'r TxnRequest) -> (bool, &'r [RequestOp]) {
        if request.compare.iter().all(|compare| Self::compare_holds(before, compare)) {
            (true, &request.success)
        } else {
            (false, &request.failure)
        }
    }

    /// Runs `check` on every non-Txn op of the taken path, branches decided on `before`.
    pub(super) fn check_path(
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

    pub(super) fn txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let current = self.current();
        let before = self.at(current).clone();
        let read_only = request.success.iter().chain(&request.failure).all(|op| matches!(op, RequestOp::Range(_)));
        if !read_only {
            let leases = &self.leases;
            Self::check_path(&before, request, &|op| match op {
                RequestOp::Put(put) if (put.ignore_value || put.ignore_lease) && !before.contains_key(&put.key) => {
                    Err(MvccError::KeyNotFound)
                }
                RequestOp::Put(put) if !put.ignore_lease && put.lease != 0 && !leases.contains_key(&put.lease) => {
                    Err(MvccError::LeaseNotFound)
                }
                _ => Ok(()),
            })?;
        }
        let compacted = self.compacted;
        Self::check_path(&before, request, &|op| match op {
            RequestOp::Range(range) if range.revision != 0 && range.revision > current => {
                Err(MvccError::FutureRevision { current_revision: current })
            }
            RequestOp::Range(range) if range.revision != 0 && range.revision < compacted => {
                Err(MvccError::Compacted { compact_revision: compacted.max(0) })
            }
            _ => Ok(()),
        })?;
        let mut txn = self.begin();
        let mut response = self.apply_ops(&mut txn, &before, request);
        self.end(txn);
        response.header_revision = self.current();
        Ok(response)
    }

    fn apply_ops(&self, txn: &mut ModelTxn, before: &Keyspace, request: &TxnRequest) -> TxnResponse {
        let (succeeded, ops) = Self::branch(before, request);
        let responses = ops
            .iter()
            .map(|op| match op {
                RequestOp::Range(range) => {
                    let current = txn.read_revision();
                    ResponseOp::Range(self.range(range, current, &txn.working).expect("checked"))
                }
                RequestOp::Put(put) => ResponseOp::Put(self.put(txn, put, false).expect("not rejecting")),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete(txn, delete)),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.apply_ops(txn, before, nested)),
            })
            .collect();
        TxnResponse { header_revision: 0, succeeded, responses }
    }

    pub(super) fn apply(&mut self, command: &Command) -> CommandResponse {
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
                    Err(MvccError::Compacted { compact_revision: self.compacted.max(0) })
                } else if request.revision > self.current() {
                    Err(MvccError::FutureRevision { current_revision: self.current() })
                } else {
                    self.compacted = request.revision;
                    Ok(CommandResponse::Compact(CompactResponse { header_revision: self.current() }))
                }
            }
            Command::LeaseGrant(request) => {
                if let std::collections::btree_map::Entry::Vacant(entry) = self.leases.entry(request.id) {
                    entry.insert(request.ttl_secs);
                    Ok(CommandResponse::LeaseGrant(LeaseGrantResponse {
                        header_revision: self.current(),
                        id: request.id,
                        ttl_secs: request.ttl_secs,
                    }))
                } else {
                    Err(MvccError::LeaseExists)
                }
            }
            Command::LeaseRevoke(request) => {
                if self.leases.remove(&request.id).is_none() {
                    Err(MvccError::LeaseNotFound)
                } else {
                    let mut txn = self.begin();
                    let doomed: Vec<Vec<u8>> =
                        txn.working.values().filter(|kv| kv.lease == request.id).map(|kv| kv.key.clone()).collect();
                    for key in doomed {
                        txn.working.remove(&key);
                        txn.changed = true;
                    }
                    self.end(txn);
                    Ok(CommandResponse::LeaseRevoke(LeaseRevokeResponse { header_revision: self.current() }))
                }
            }
            Command::Register(_)
            | Command::LeasedPut(_)
            | Command::Publish(_)
            | Command::GroupJoin(_)
            | Command::GroupClaim(_)
            | Command::GroupSettle(_)
            | Command::SetRetention(_)
            | Command::TrimTopic(_) => {
                unreachable!("tested in mvcc::tests::lease, mvcc::tests::events and mvcc::tests::groups")
            }
            Command::InitSecretKey(_) => Ok(CommandResponse::None),
            Command::PublishMember(_) => Ok(CommandResponse::None),
        };
        outcome.unwrap_or_else(CommandResponse::Rejected)
    }

    /// The keys each lease holds now, by lease id.
    pub(super) fn lease_keys(&self) -> BTreeMap<i64, Vec<Vec<u8>>> {
        let mut keys: BTreeMap<i64, Vec<Vec<u8>>> = self.leases.keys().map(|id| (*id, Vec::new())).collect();
        for kv in self.at(self.current()).values() {
            if let Some(list) = keys.get_mut(&kv.lease) {
                list.push(kv.key.clone());
            }
        }
        keys
    }

    pub(super) fn top_range(&self, request: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let current = self.current();
        self.range(request, current, self.at(current))
    }
}
