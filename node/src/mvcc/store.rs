//! The replicated state of one member: the etcd keyspace and the sub-stores beside it (leases,
//! topics, consumer groups), each owning its own records. The commands that change them live in
//! `crate::apply`, one file each, and reach the keyspace only through the methods here, which
//! keep the keyspace and the lease sub-store in step (which keys a lease holds).

use std::sync::Arc;

use crate::command::{Command, CommandResponse, KeyValue, RangeRequest, RangeResponse};
use crate::storage::{Durability, Engine, StorageError, WriteBatch};

use super::alarms::Alarms;
use super::auth::AuthStore;
use super::event::Event;
use super::events::Topics;
use super::groups::Groups;
use super::keyspace::{Keyspace, WriteTxn};
use super::lease::LeaseTable;
use super::range::KeySpan;
use super::{MvccError, ReadError};

/// The replicated state of one member.
pub struct MvccStore {
    pub(super) keyspace: Keyspace,
    pub(crate) leases: LeaseTable,
    pub(crate) topics: Topics,
    pub(crate) groups: Groups,
    pub(crate) auth: AuthStore,
    pub(crate) alarms: Alarms,
}

impl std::fmt::Debug for MvccStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MvccStore").field("keyspace", &self.keyspace).finish_non_exhaustive()
    }
}

/// Why an operation did not complete: etcd's rules refused it (a replicated answer), or this
/// member's storage failed (fatal for the member). `apply` splits the two; an operation that
/// cannot be refused returns `StorageError` alone, so its type says it has no rejection to give.
#[derive(Debug)]
pub(crate) enum OpError {
    Rejected(MvccError),
    Storage(StorageError),
}

impl From<OpError> for ReadError {
    fn from(error: OpError) -> Self {
        match error {
            OpError::Rejected(error) => ReadError::Rejected(error),
            OpError::Storage(error) => ReadError::Storage(error),
        }
    }
}

impl From<StorageError> for OpError {
    fn from(error: StorageError) -> Self {
        OpError::Storage(error)
    }
}

impl From<MvccError> for OpError {
    fn from(error: MvccError) -> Self {
        OpError::Rejected(error)
    }
}

impl MvccStore {
    /// Opens the state stored in `engine`: the leases, topics and groups, then the keyspace
    /// (rebuilding its index, and which keys each lease holds). An empty engine gives an empty
    /// state: current revision 1 (the first write gets revision 2, as in etcd).
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, StorageError> {
        let mut leases = LeaseTable::load(engine.as_ref())?;
        let topics = Topics::load(engine.as_ref())?;
        let groups = Groups::load(engine.as_ref())?;
        let auth = AuthStore::load(engine.as_ref())?;
        let alarms = Alarms::load(engine.as_ref())?;
        let keyspace = Keyspace::open(engine, &mut leases)?;
        Ok(MvccStore { keyspace, leases, topics, groups, auth, alarms })
    }

    /// Applies one write command (see `crate::apply`, one file per command). Changes are
    /// staged in memory and visible at once to later `range` and `apply` calls; nothing reaches
    /// the engine until the caller writes `take_changes`.
    ///
    /// The boundary between the two kinds of failure: etcd's apply-time refusals come back as
    /// `Ok(CommandResponse::Rejected(..))` with nothing changed, the same answer on every member;
    /// a failure of this member's storage (the engine, a record that does not decode) comes back
    /// as `Err(StorageError)`, possibly with changes staged half-way. The caller must then stop
    /// the member without answering and without writing: the others applied the command, and
    /// an answer from this member would differ from theirs.
    pub fn apply(&mut self, command: &Command) -> Result<CommandResponse, StorageError> {
        crate::apply::apply(self, command)
    }

    /// Everything staged since the last call, as one batch for the caller to write atomically
    /// with its own metadata (the applied log id): each sub-store's records and the keyspace's.
    /// After a failed write the state is ahead of its engine: the caller must drop and reopen it.
    pub fn take_changes(&mut self) -> Result<WriteBatch, StorageError> {
        let mut batch = WriteBatch::new();
        self.leases.take_staged(&mut batch)?;
        self.topics.take_staged(&mut batch);
        self.groups.take_staged(&mut batch);
        self.auth.take_staged(&mut batch);
        self.alarms.take_staged(&mut batch);
        self.keyspace.take_staged(&mut batch);
        Ok(batch)
    }

    /// `take_changes` plus `extra`, written with `Durability::Buffered` (tests and tools; the
    /// state machine writes `take_changes` itself).
    pub fn commit(&mut self, extra: WriteBatch) -> Result<(), StorageError> {
        let mut batch = self.take_changes()?;
        batch.ops.extend(extra.ops);
        self.keyspace.engine().write(batch, Durability::Buffered)
    }

    /// The engine the state is stored in.
    pub(crate) fn engine_handle(&self) -> Arc<dyn Engine> {
        self.keyspace.engine_handle()
    }

    // ---- the keyspace, as readers and commands see it ----

    /// The revision of the last change, staged or committed.
    pub fn current_revision(&self) -> i64 {
        self.keyspace.current_revision()
    }

    /// The revision of the last compaction; 0 if none (etcd reports it the same way).
    pub fn compact_revision(&self) -> i64 {
        self.keyspace.compact_revision()
    }

    /// etcd's `compactMainRev`: `-1` until the first compaction (a first compaction to revision
    /// 0 is accepted, a second is not).
    pub(crate) fn compact_main_revision(&self) -> i64 {
        self.keyspace.compact_main_revision()
    }

    /// etcd's Range: `key`/`range_end` rules (empty `range_end` = the single key; `[0]` = every
    /// key >= `key`; `range_end <= key` = nothing), at `revision` (0 = current) with `limit`,
    /// `more`, `count` (matches before the limit and before the min/max filters, as etcd 3.4),
    /// sorting, `keys_only`, `count_only` and the min/max revision filters.
    /// `header_revision` is the current revision.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, ReadError> {
        Ok(self.keyspace.range_in_view(request, self.current_revision())?)
    }

    /// A Range inside a write transaction, in the view whose current revision is `current`.
    pub(crate) fn range_in_view(&self, request: &RangeRequest, current: i64) -> Result<RangeResponse, OpError> {
        self.keyspace.range_in_view(request, current)
    }

    /// The values of every key in `span` as of revision `at`, in key order.
    pub(crate) fn kvs_at(&self, span: KeySpan<'_>, at: i64) -> Result<Vec<KeyValue>, StorageError> {
        self.keyspace.kvs_at(span, at)
    }

    /// The changes of revisions `from..=to` read back from history (see `Keyspace::history`).
    pub fn history(&self, from: i64, to: i64, events_max: usize) -> Result<super::HistoryPage, ReadError> {
        self.keyspace.history(from, to, events_max)
    }

    /// The changes applied since the last call, in revision order.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.keyspace.take_events()
    }

    /// etcd's auth state as applied so far.
    pub fn auth(&self) -> &keel_model::auth::etcd::AuthState {
        self.auth.state()
    }

    /// The active alarms of `alarm`'s type (every type for `AlarmType::None`).
    pub fn alarms(&self, alarm: crate::command::AlarmType) -> Vec<crate::command::AlarmMember> {
        self.alarms.get(alarm)
    }

    /// What applied auth commands said about simple tokens since the last call, in order.
    pub fn take_token_changes(&mut self) -> Vec<keel_model::auth::etcd::TokenChange> {
        self.auth.take_token_changes()
    }

    /// Number of keys that currently exist.
    pub fn key_count(&self) -> usize {
        self.keyspace.key_count()
    }

    /// TEST ONLY: stores every later Put `skew` versions higher, so that this member's state
    /// differs from the others' (the harness proves its replica comparison with it).
    pub fn unsafe_skew_versions(&mut self, skew: i64) {
        self.keyspace.unsafe_skew_versions(skew);
    }

    // ---- writes, keeping leases in step ----

    pub(crate) fn begin_write(&self) -> WriteTxn {
        self.keyspace.begin_write()
    }

    pub(crate) fn end_write(&mut self, txn: WriteTxn) {
        self.keyspace.end_write(txn);
    }

    /// Writes `key = value` on `lease` (0 = none) in `txn`, moving the key to that lease.
    pub(crate) fn put_key(
        &mut self,
        txn: &mut WriteTxn,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> Result<(), StorageError> {
        self.keyspace.put_key(txn, key, value, lease)?;
        self.leases.attach(key, lease);
        Ok(())
    }

    /// Deletes every live key in `span` in `txn`, and takes each off its lease; returns how many.
    pub(crate) fn delete_span(&mut self, txn: &mut WriteTxn, span: KeySpan<'_>) -> Result<i64, StorageError> {
        let deleted = self.keyspace.delete_span(txn, span)?;
        for key in &deleted {
            self.leases.detach(key);
        }
        Ok(i64::try_from(deleted.len()).unwrap_or(i64::MAX))
    }

    /// Compacts the keyspace to `revision` (see `Keyspace::compact`).
    pub(crate) fn compact(&mut self, revision: i64) -> Result<(), MvccError> {
        self.keyspace.compact(revision)
    }
}
