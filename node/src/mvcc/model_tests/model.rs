//! The model: a deliberately naive etcd 3.4 that keeps a full copy of the keyspace for every
//! revision and re-derives each answer from those snapshots, sharing no code with the store;
//! leases with Register and LeasedPut on top. Topics and groups are in `events`.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use crate::command::{
    AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, Command, CommandResponse, CompactResponse,
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue, LeaseGrantResponse,
    LeaseRevokeResponse, LeasedPutRequest, LeasedPutResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RegisterRequest, RegisterResponse, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};

use super::super::{Event, EventKind, MvccError};
use super::events::{Group, Topic};

pub(super) type Keyspace = BTreeMap<Vec<u8>, KeyValue>;

pub(super) struct Model {
    /// `snapshots[r]`: the keyspace as of revision `r` (0 and 1 are empty).
    snapshots: Vec<Keyspace>,
    /// etcd's compactMainRev: -1 until the first compaction.
    pub(super) compacted: i64,
    /// Lease id → granted TTL. A lease's keys are the live keys whose `lease` is its id.
    pub(super) leases: BTreeMap<i64, i64>,
    /// Every change ever made, in order: what watchers are sent and what history holds.
    pub(super) changes: Vec<Event>,
    /// How many of `changes` `take_changes` has handed out.
    changes_taken: usize,
    /// Topics by name, and groups by (topic, group).
    pub(super) topics: BTreeMap<String, Topic>,
    pub(super) groups: BTreeMap<(String, String), Group>,
    /// Active alarms, as (member, type).
    alarms: BTreeSet<(u64, AlarmType)>,
}

/// A write transaction of the model: a working copy of the keyspace, and its changes in order.
pub(super) struct ModelTxn {
    begin: i64,
    pub(super) working: Keyspace,
    changed: bool,
    changes: Vec<Event>,
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

fn has_put(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).any(|op| match op {
        RequestOp::Put(_) => true,
        RequestOp::Txn(nested) => has_put(nested),
        _ => false,
    })
}

impl Model {
    pub(super) fn new() -> Self {
        Model {
            snapshots: vec![Keyspace::new(), Keyspace::new()],
            compacted: -1,
            leases: BTreeMap::new(),
            changes: Vec::new(),
            changes_taken: 0,
            topics: BTreeMap::new(),
            groups: BTreeMap::new(),
            alarms: BTreeSet::new(),
        }
    }

    /// The changes made since the last call.
    pub(super) fn take_changes(&mut self) -> Vec<Event> {
        let fresh = self.changes[self.changes_taken..].to_vec();
        self.changes_taken = self.changes.len();
        fresh
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

    pub(super) fn begin(&self) -> ModelTxn {
        ModelTxn {
            begin: self.current(),
            working: self.at(self.current()).clone(),
            changed: false,
            changes: Vec::new(),
        }
    }

    pub(super) fn end(&mut self, txn: ModelTxn) {
        if txn.changed {
            self.snapshots.push(txn.working);
            self.changes.extend(txn.changes);
        }
    }

    /// Deletes `key` if it is live; a deletion is a change of its own, at the txn's revision.
    pub(super) fn remove_key(txn: &mut ModelTxn, key: &[u8]) -> Option<KeyValue> {
        let removed = txn.working.remove(key)?;
        let kv = KeyValue { key: key.to_vec(), mod_revision: txn.begin + 1, ..KeyValue::default() };
        txn.changes.push(Event { kind: EventKind::Delete, kv });
        txn.changed = true;
        Some(removed)
    }

    /// Puts `key = value` on `lease` (which exists, or is 0) in `txn`.
    pub(super) fn put_value(&self, txn: &mut ModelTxn, key: &[u8], value: Vec<u8>, lease: i64) {
        let request = PutRequest { key: key.to_vec(), value, lease, ..PutRequest::default() };
        self.put(txn, &request, false).expect("not rejecting");
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
        txn.working.insert(request.key.clone(), kv.clone());
        txn.changes.push(Event { kind: EventKind::Put, kv });
        txn.changed = true;
        Ok(PutResponse { header_revision: revision, prev_kv: if request.prev_kv { previous } else { None } })
    }

    fn delete(&self, txn: &mut ModelTxn, request: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> =
            txn.working.values().filter(|kv| in_span(&kv.key, &request.key, &request.range_end)).cloned().collect();
        for kv in &doomed {
            Self::remove_key(txn, &kv.key);
        }
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
        if let Some(refusal) = self.refused_by_alarms(command) {
            return CommandResponse::Rejected(refusal);
        }
        let outcome = match command {
            // The sequences never enable auth, so who sent a command changes nothing; auth's own
            // rules are tested against their own cases (`keel_model::auth::etcd`).
            Command::Authorized(authorized) => return self.apply(&authorized.command),
            Command::Auth(_) => panic!("the model test generates no auth commands"),
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
                if let Entry::Vacant(entry) = self.leases.entry(request.id) {
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
                        Self::remove_key(&mut txn, &key);
                    }
                    self.end(txn);
                    Ok(CommandResponse::LeaseRevoke(LeaseRevokeResponse { header_revision: self.current() }))
                }
            }
            Command::Register(request) => self.register(request).map(CommandResponse::Register),
            Command::LeasedPut(request) => self.leased_put(request).map(CommandResponse::LeasedPut),
            Command::Publish(request) => Ok(CommandResponse::Publish(self.publish(request))),
            Command::GroupJoin(request) => Ok(CommandResponse::GroupJoin(self.group_join(request))),
            Command::GroupClaim(request) => Ok(CommandResponse::GroupClaim(self.group_claim(request))),
            Command::GroupSettle(request) => Ok(CommandResponse::GroupSettle(self.group_settle(request))),
            Command::SetRetention(request) => Ok(CommandResponse::Topic(self.set_retention(request))),
            Command::TrimTopic(request) => Ok(CommandResponse::Topic(self.trim_topic(request))),
            Command::InitSecretKey(_) => Ok(CommandResponse::None),
            Command::PublishMember(_) => Ok(CommandResponse::None),
            Command::Alarm(request) => Ok(CommandResponse::Alarm(self.alarm(request))),
        };
        outcome.unwrap_or_else(CommandResponse::Rejected)
    }

    fn alarm(&mut self, request: &AlarmRequest) -> AlarmResponse {
        let pair = (request.member_id, request.alarm);
        let alarms: Vec<(u64, AlarmType)> = match request.action {
            AlarmAction::Get => self
                .alarms
                .iter()
                .filter(|(_, alarm)| request.alarm == AlarmType::None || *alarm == request.alarm)
                .copied()
                .collect(),
            AlarmAction::Activate if request.alarm == AlarmType::None => Vec::new(),
            AlarmAction::Activate => {
                self.alarms.insert(pair);
                vec![pair]
            }
            AlarmAction::Deactivate => self.alarms.remove(&pair).then_some(pair).into_iter().collect(),
        };
        let alarms = alarms.into_iter().map(|(member_id, alarm)| AlarmMember { member_id, alarm }).collect();
        AlarmResponse { header_revision: self.current(), alarms }
    }

    /// etcd's capped applier (NOSPACE: no Put, LeaseGrant or Txn with a put, nor Keel's writes
    /// that add keys or events) and corrupt applier (CORRUPT: no change at all but Keel's
    /// retention trims and the members' own records).
    fn refused_by_alarms(&self, command: &Command) -> Option<MvccError> {
        let active = |wanted: AlarmType| self.alarms.iter().any(|(_, alarm)| *alarm == wanted);
        let command = command.inner();
        let changes = match command {
            Command::Txn(txn) => txn.success.iter().chain(&txn.failure).any(|op| !matches!(op, RequestOp::Range(_))),
            Command::TrimTopic(_) | Command::InitSecretKey(_) | Command::PublishMember(_) => false,
            Command::Auth(_) | Command::Alarm(_) | Command::Authorized(_) => false,
            _ => true,
        };
        if active(AlarmType::Corrupt) && changes {
            return Some(MvccError::Corrupt);
        }
        let adds = match command {
            Command::Txn(txn) => has_put(txn),
            Command::Put(_) | Command::LeaseGrant(_) | Command::Register(_) | Command::LeasedPut(_) => true,
            Command::Publish(_) | Command::GroupJoin(_) => true,
            _ => false,
        };
        (active(AlarmType::NoSpace) && adds).then_some(MvccError::NoSpace)
    }

    /// The lease `key` is on now, if any.
    fn lease_of(&self, key: &[u8]) -> Option<i64> {
        self.at(self.current()).get(key).map(|kv| kv.lease).filter(|lease| self.leases.contains_key(lease))
    }

    /// A registration: every key on one lease. The lease all the keys share is kept when its TTL
    /// is the one asked for (and nothing is written if their values are the same too);
    /// otherwise `lease_id` is granted (refused if it exists). TTL 0: no lease. A lease the
    /// keys leave with no key at all is forgotten.
    fn register(&mut self, request: &RegisterRequest) -> Result<RegisterResponse, MvccError> {
        let first = request.puts.first().and_then(|(key, _)| self.lease_of(key));
        let shared = first.filter(|first| request.puts.iter().all(|(key, _)| self.lease_of(key) == Some(*first)));
        let reused = shared.filter(|lease| request.ttl_secs != 0 && self.leases[lease] == request.ttl_secs);
        let lease = match reused {
            _ if request.ttl_secs == 0 => 0,
            Some(lease) => lease,
            None if self.leases.contains_key(&request.lease_id) => return Err(MvccError::LeaseExists),
            None => {
                self.leases.insert(request.lease_id, request.ttl_secs);
                request.lease_id
            }
        };
        let now = self.at(self.current());
        let same_values = request.puts.iter().all(|(key, value)| now.get(key).is_some_and(|kv| &kv.value == value));
        let left: BTreeSet<i64> = request.puts.iter().filter_map(|(key, _)| self.lease_of(key)).collect();
        if reused.is_none() || !same_values {
            let mut txn = self.begin();
            for (key, value) in &request.puts {
                self.put_value(&mut txn, key, value.clone(), lease);
            }
            self.end(txn);
        }
        for previous in left {
            let holds_a_key = self.at(self.current()).values().any(|kv| kv.lease == previous);
            if previous != lease && !holds_a_key {
                self.leases.remove(&previous);
            }
        }
        Ok(RegisterResponse { header_revision: self.current(), lease_id: lease, reused: reused.is_some() })
    }

    /// A put on lease `reuse` if it exists, otherwise on a new lease `grant_id` (refused if it
    /// exists). The key's previous lease stays, even with no key left.
    fn leased_put(&mut self, request: &LeasedPutRequest) -> Result<LeasedPutResponse, MvccError> {
        let lease = if request.reuse != 0 && self.leases.contains_key(&request.reuse) {
            request.reuse
        } else {
            match self.leases.entry(request.grant_id) {
                Entry::Occupied(_) => return Err(MvccError::LeaseExists),
                Entry::Vacant(entry) => {
                    entry.insert(request.ttl_secs);
                    request.grant_id
                }
            }
        };
        let mut txn = self.begin();
        self.put_value(&mut txn, &request.key, request.value.clone(), lease);
        self.end(txn);
        Ok(LeasedPutResponse { header_revision: self.current(), lease_id: lease })
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
