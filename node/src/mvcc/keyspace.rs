//! The etcd keyspace, MVCC only: the key index in memory, values in the engine (`Table::Kv`), the
//! current and compact revisions (`mvcc/`-prefixed `StateMeta` keys), and the changes staged
//! between two commits. Which keys a lease holds is the lease sub-store's: `MvccStore` keeps the
//! two in step.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::command::KeyValue;
use crate::storage::{Direction, Engine, KeyRange, StorageError, Table, WriteBatch};

use super::event::{Event, EventKind};
use super::key_index::KeyIndex;
use super::lease::LeaseTable;
use super::range::KeySpan;
use super::revision::{RecordKind, Revision};
use super::MvccError;

/// `Table::StateMeta` key of the current revision: kept explicitly because compaction may leave
/// no record at it.
pub(crate) const CURRENT_REVISION_KEY: &[u8] = b"mvcc/current_revision";

/// The current revision a `Table::StateMeta` record states, if it is that record.
pub(crate) fn current_revision_record(key: &[u8], value: &[u8]) -> Option<i64> {
    (key == CURRENT_REVISION_KEY).then(|| <[u8; 8]>::try_from(value).ok().map(i64::from_be_bytes)).flatten()
}
/// `Table::StateMeta` key of the compact revision; absent until the first compaction.
pub(crate) const COMPACT_REVISION_KEY: &[u8] = b"mvcc/compact_revision";

/// etcd's `compactMainRev` before any compaction. Kept (rather than 0) because etcd's rules
/// compare against it: a first compaction to revision 0 is accepted, a second is not.
pub(super) const NEVER_COMPACTED: i64 = -1;

/// etcd's revision of an empty store: the first change gets revision 2.
const EMPTY_STORE_REVISION: i64 = 1;

/// The MVCC keyspace of one member.
pub(crate) struct Keyspace {
    engine: Arc<dyn Engine>,
    /// Every key with remembered history, live or not. Boxed slices rather than vectors: this
    /// map holds every key of the keyspace, and a key never grows.
    pub(super) index: BTreeMap<Box<[u8]>, KeyIndex>,
    /// The revision of the last change applied (staged or committed).
    pub(super) current_revision: i64,
    /// etcd's `compactMainRev`; `NEVER_COMPACTED` until the first compaction.
    pub(super) compacted: i64,
    /// Changes to `Table::Kv` since the last commit, by engine key: a record to write, or `None`
    /// to delete one. Reads look here before the engine.
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The changes applied since the last `take_events`, in revision order, for watchers.
    events: Vec<Event>,
    /// TEST ONLY: added to the version of every Put (see `--unsafe-diverge-versions`); 0.
    unsafe_version_skew: i64,
    /// Keys that exist now, kept as puts and deletes happen so that `/metrics` never counts the
    /// index under the lock.
    live_keys: usize,
}

impl std::fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyspace")
            .field("current_revision", &self.current_revision)
            .field("compacted", &self.compacted)
            .field("keys", &self.index.len())
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

/// One write transaction in progress (etcd's `storeTxnWrite`): every change it makes gets main
/// revision `begin + 1` and the next sub-revision.
#[derive(Debug)]
pub(crate) struct WriteTxn {
    begin: i64,
    changes: i64,
}

impl WriteTxn {
    /// The revision reads inside the transaction are served at (and report): the revision
    /// being written once something changed.
    pub(crate) fn read_revision(&self) -> i64 {
        if self.changes > 0 {
            self.begin + 1
        } else {
            self.begin
        }
    }

    fn next_revision(&mut self) -> Revision {
        let revision = Revision::new(self.begin + 1, self.changes);
        self.changes += 1;
        revision
    }
}

/// What etcd's `rangeKeys` finds, before the values are read.
pub(super) struct RangeRevisions {
    /// The revision of each key's value to read, in key order, after the limit.
    pub revisions: Vec<Revision>,
    /// Keys matching before any limit.
    pub count: i64,
}

impl Keyspace {
    /// Opens the keyspace stored in `engine` (tables `Kv` and `StateMeta`), rebuilding the
    /// in-memory key index by scanning `Kv`. An empty engine gives an empty store: current
    /// revision 1 (the first write gets revision 2, as in etcd), compact revision 0. Each live
    /// key's lease is attached in `leases` as its records are read.
    pub fn open(engine: Arc<dyn Engine>, leases: &mut LeaseTable) -> Result<Self, StorageError> {
        let mut index: BTreeMap<Box<[u8]>, KeyIndex> = BTreeMap::new();
        let mut newest_revision = EMPTY_STORE_REVISION;
        let mut failure = None;
        engine.scan(Table::Kv, KeyRange::all(), Direction::Forward, &mut |key, value| match restore_record(
            &mut index, leases, key, value,
        ) {
            Ok(main) => {
                newest_revision = newest_revision.max(main);
                true
            }
            Err(error) => {
                failure = Some(error);
                false
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        let current_revision =
            read_meta(engine.as_ref(), CURRENT_REVISION_KEY)?.unwrap_or(EMPTY_STORE_REVISION).max(newest_revision);
        let compacted = read_meta(engine.as_ref(), COMPACT_REVISION_KEY)?.unwrap_or(NEVER_COMPACTED);
        let live_keys = index.values().filter(|history| history.live().is_some()).count();
        Ok(Keyspace {
            engine,
            index,
            current_revision,
            compacted,
            staged: BTreeMap::new(),
            events: Vec::new(),
            unsafe_version_skew: 0,
            live_keys,
        })
    }

    /// The revision of the last change, staged or committed.
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction; 0 if none (etcd reports it the same way).
    pub fn compact_revision(&self) -> i64 {
        self.compacted.max(0)
    }

    /// Moves the records staged since the last call into `batch`, with the current and compact
    /// revisions.
    pub fn take_staged(&mut self, batch: &mut WriteBatch) {
        for (key, record) in std::mem::take(&mut self.staged) {
            match record {
                Some(value) => batch.put(Table::Kv, key, value),
                None => batch.delete(Table::Kv, key),
            }
        }
        batch.put(Table::StateMeta, CURRENT_REVISION_KEY, self.current_revision.to_be_bytes());
        if self.compacted != NEVER_COMPACTED {
            batch.put(Table::StateMeta, COMPACT_REVISION_KEY, self.compacted.to_be_bytes());
        }
    }

    /// The changes applied since the last call, in revision order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub(super) fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// The engine, for a read that outlives this store's lock (`Engine::scan_as_of_now`).
    pub(super) fn engine_handle(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    /// TEST ONLY: stores every later Put `skew` versions higher, so that this member's state
    /// differs from the others' (the harness proves its replica comparison with it).
    pub fn unsafe_skew_versions(&mut self, skew: i64) {
        self.unsafe_version_skew = skew;
    }

    /// Number of keys that currently exist.
    pub fn key_count(&self) -> usize {
        self.live_keys
    }

    // ---- reads ----

    /// etcd's `rangeKeys` without reading values: checks `requested` (0 or negative =
    /// `current`) against the current and compact revisions, then lists the revisions of up to
    /// `limit` (<= 0 = all) keys, and how many keys match in all. Reads only the in-memory index.
    pub(super) fn range_revisions(
        &self,
        span: KeySpan<'_>,
        requested: i64,
        current: i64,
        limit: i64,
        count_only: bool,
    ) -> Result<RangeRevisions, MvccError> {
        if requested > current {
            return Err(MvccError::FutureRevision { current_revision: current });
        }
        let at = if requested <= 0 { current } else { requested };
        if at < self.compacted {
            return Err(MvccError::Compacted { compact_revision: self.compact_revision() });
        }
        let mut revisions = self.revisions_at(span, at);
        let count = i64::try_from(revisions.len()).unwrap_or(i64::MAX);
        if count_only {
            revisions.clear();
        }
        let take = usize::try_from(limit).ok().filter(|&limit| limit > 0).unwrap_or(usize::MAX);
        revisions.truncate(take);
        Ok(RangeRevisions { revisions, count })
    }

    /// Whether changes are staged: only between `apply` and `commit`, under the write lock.
    pub(super) fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// The values of every key in `span` as of revision `at`, in key order, without revision
    /// checks (for reads inside a write, which are always at the newest revision).
    pub(crate) fn kvs_at(&self, span: KeySpan<'_>, at: i64) -> Result<Vec<KeyValue>, StorageError> {
        self.kvs_at_most(span, at, usize::MAX)
    }

    /// The first `limit` of `kvs_at`.
    pub(crate) fn kvs_at_most(&self, span: KeySpan<'_>, at: i64, limit: usize) -> Result<Vec<KeyValue>, StorageError> {
        self.revisions_at(span, at).into_iter().take(limit).map(|revision| self.fetch(revision)).collect()
    }

    /// The revision holding each key of `span` as of `at`, in key order.
    fn revisions_at(&self, span: KeySpan<'_>, at: i64) -> Vec<Revision> {
        let mut revisions = Vec::new();
        self.visit_span(span, |_, history| revisions.extend(history.get(at)));
        revisions
    }

    /// Calls `visit` for each remembered key in `span`, in key order.
    pub(super) fn visit_span(&self, span: KeySpan<'_>, mut visit: impl FnMut(&[u8], &KeyIndex)) {
        let (from, to) = match span {
            KeySpan::Single(key) => {
                if let Some(history) = self.index.get(key) {
                    visit(key, history);
                }
                return;
            }
            KeySpan::Range { from, to } => (from, to),
        };
        // `BTreeMap::range` panics on an inverted range; etcd treats it as empty.
        if to.is_some_and(|to| to <= from) {
            return;
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        for (key, history) in self.index.range::<[u8], _>((Bound::Included(from), upper)) {
            visit(key, history);
        }
    }

    /// The record written at `revision`, from the staged overlay or the engine.
    pub(super) fn fetch(&self, revision: Revision) -> Result<KeyValue, StorageError> {
        let key = revision.engine_key(RecordKind::Value);
        let bytes = match self.staged.get(&key) {
            Some(Some(bytes)) => bytes.clone(),
            Some(None) => return Err(missing_record(revision)),
            None => self.engine.get(Table::Kv, &key)?.ok_or_else(|| missing_record(revision))?,
        };
        decode_record(&bytes, format_args!("record at revision {revision:?}"))
    }

    // ---- writes ----

    pub(crate) fn begin_write(&self) -> WriteTxn {
        WriteTxn { begin: self.current_revision, changes: 0 }
    }

    pub(crate) fn end_write(&mut self, txn: WriteTxn) {
        if txn.changes > 0 {
            assert!(txn.begin == self.current_revision, "write transactions do not overlap");
            self.current_revision = txn.begin + 1;
        }
    }

    /// Writes `key = value` (etcd's `storeTxnWrite.put`): keeps the create revision of a live
    /// key and bumps its version, or starts a new generation.
    pub(super) fn put_key(
        &mut self,
        txn: &mut WriteTxn,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> Result<(), StorageError> {
        let revision = txn.next_revision();
        // Look up before inserting: most puts overwrite a key, and need no copy of it.
        let live = match self.index.get_mut(key) {
            Some(history) => history.put(revision),
            None => self.index.entry(key.into()).or_default().put(revision),
        };
        if live.version == 1 {
            // A new generation: the key did not exist before this put.
            self.live_keys = self.live_keys.saturating_add(1);
        }
        let record = KeyValue {
            key: key.to_vec(),
            create_revision: live.created,
            mod_revision: revision.main,
            version: live.version.saturating_add(self.unsafe_version_skew),
            value,
            lease,
        };
        self.stage(revision.engine_key(RecordKind::Value), &record)?;
        self.events.push(Event { kind: EventKind::Put, kv: record });
        Ok(())
    }

    /// Deletes every live key in `span`; returns them.
    pub(super) fn delete_span(&mut self, txn: &mut WriteTxn, span: KeySpan<'_>) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut doomed = Vec::new();
        self.visit_span(span, |key, history| {
            if history.live().is_some() {
                doomed.push(key.to_vec());
            }
        });
        for key in &doomed {
            let revision = txn.next_revision();
            if let Some(history) = self.index.get_mut(key.as_slice()) {
                history.tombstone(revision);
            }
            let record = KeyValue { key: key.clone(), mod_revision: revision.main, ..KeyValue::default() };
            self.stage(revision.engine_key(RecordKind::Tombstone), &record)?;
            self.events.push(Event { kind: EventKind::Delete, kv: record });
        }
        self.live_keys = self.live_keys.saturating_sub(doomed.len());
        Ok(doomed)
    }

    /// Stages the deletion of records that compaction dropped.
    pub(super) fn stage_removal(&mut self, revision: Revision, kind: RecordKind) {
        self.staged.insert(revision.engine_key(kind), None);
    }

    fn stage(&mut self, engine_key: Vec<u8>, record: &KeyValue) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(record)
            .map_err(|error| StorageError(format!("mvcc: cannot encode record: {error}")))?;
        self.staged.insert(engine_key, Some(bytes));
        Ok(())
    }
}

/// Decodes a record this module stored. Anything but exactly one record (bytes that do not
/// decode, or bytes left after it) means this member's storage is damaged: an error, never a
/// record skipped or read as something else.
pub(super) fn decode_record<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: std::fmt::Arguments<'_>,
) -> Result<T, StorageError> {
    match postcard::take_from_bytes(bytes) {
        Ok((record, [])) => Ok(record),
        Ok((_, rest)) => Err(StorageError(format!("mvcc: corrupt {what}: {} bytes after the record", rest.len()))),
        Err(error) => Err(StorageError(format!("mvcc: corrupt {what}: {error}"))),
    }
}

fn missing_record(revision: Revision) -> StorageError {
    StorageError(format!("mvcc: the key index names revision {revision:?} but its record is missing"))
}

fn read_meta(engine: &dyn Engine, key: &[u8]) -> Result<Option<i64>, StorageError> {
    let Some(bytes) = engine.get(Table::StateMeta, key)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StorageError(format!("mvcc: corrupt {} ({} bytes)", String::from_utf8_lossy(key), bytes.len())))?;
    Ok(Some(i64::from_be_bytes(bytes)))
}

/// Adds one `Kv` record to the index being rebuilt, and the key to its lease when the record is
/// the key's newest (records come in revision order); returns its main revision.
fn restore_record(
    index: &mut BTreeMap<Box<[u8]>, KeyIndex>,
    leases: &mut LeaseTable,
    engine_key: &[u8],
    value: &[u8],
) -> Result<i64, StorageError> {
    let corrupt = |what: &str| StorageError(format!("mvcc: corrupt record {engine_key:?}: {what}"));
    let (revision, kind) = Revision::from_engine_key(engine_key).ok_or_else(|| corrupt("bad revision key"))?;
    let record: KeyValue = decode_record(value, format_args!("record {engine_key:?}"))?;
    match kind {
        RecordKind::Value => leases.attach(&record.key, record.lease),
        RecordKind::Tombstone => leases.detach(&record.key),
    }
    let history = index.entry(record.key.into_boxed_slice()).or_default();
    match kind {
        RecordKind::Value => history.restore_put(revision, record.create_revision, record.version),
        RecordKind::Tombstone => {
            if history.live().is_none_or(|live| live.revision >= revision) {
                return Err(corrupt("tombstone of a key that does not exist"));
            }
            history.tombstone(revision);
        }
    }
    Ok(revision.main)
}
