//! The storage engine: a few ordered tables of byte keys and values, written in atomic batches.
//!
//! Everything Keel persists (the Raft log, the vote, the MVCC keyspace and the state machine's
//! metadata) goes through this trait, so that the same code runs on RocksDB in production and on
//! an in-memory engine in tests, and one conformance suite (`conformance`) holds both to the same
//! contract. It knows nothing of Raft, revisions or gRPC.

mod memory;
mod rocks;

use crate::keys;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod faulty;

#[cfg(test)]
pub use faulty::FaultyEngine;
pub use memory::MemoryEngine;
pub use rocks::{fuzz_open_error_text, newest_write_ahead_log, OpenError, RocksEngine};

/// The fixed set of tables. RocksDB keeps each in its own column family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Raft log entries, keyed by big-endian log index.
    Log,
    /// Raft's own state: vote, committed and purged log ids.
    RaftMeta,
    /// MVCC records, keyed by revision.
    Kv,
    /// State-machine metadata: applied log id, membership, current and compacted revision.
    StateMeta,
}

/// The tables of the replicated state (etcd's backend), as opposed to Raft's log and metadata.
pub const STATE_TABLES: [Table; 2] = [Table::Kv, Table::StateMeta];

impl Table {
    pub const ALL: [Table; 4] = [Table::Log, Table::RaftMeta, Table::Kv, Table::StateMeta];

    pub fn name(self) -> &'static str {
        match self {
            Table::Log => "log",
            Table::RaftMeta => "raft_meta",
            Table::Kv => "kv",
            Table::StateMeta => "state_meta",
        }
    }
}

/// Whether `write` returns only once the batch is on stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync before returning: for the Raft log and vote, which acknowledge client writes.
    Sync,
    /// Return once written to the OS: for state that the log can rebuild after a crash.
    Buffered,
}

/// Scan order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// One change in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
    /// Deletes every key in `[from, to)`.
    DeleteRange {
        table: Table,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Changes applied all together or not at all, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put { table, key: key.into(), value: value.into() });
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete { table, key: key.into() });
    }

    pub fn delete_range(&mut self, table: Table, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::DeleteRange { table, from: from.into(), to: to.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// A failure of the storage below us (disk, corruption). Never caused by client input: the
/// caller treats it as fatal for the member.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

/// A key range `[from, to)`; `to: None` means "to the end of the table".
#[derive(Clone, Copy, Debug)]
pub struct KeyRange<'a> {
    pub from: &'a [u8],
    pub to: Option<&'a [u8]>,
}

impl<'a> KeyRange<'a> {
    pub fn all() -> Self {
        KeyRange { from: &[], to: None }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.from && self.to.is_none_or(|to| key < to)
    }
}

/// The engine contract. Implementations are shared between threads; a batch is atomic and
/// visible to readers all at once; reads see every batch whose `write` has returned.
/// Visits one key and its value (`None`: absent) during `Engine::get_many_as_of_now`; returns
/// false to stop.
pub type ValueVisitor<'a> = dyn FnMut(&[u8], Option<&[u8]>) -> bool + 'a;

/// Visits one entry of a table during `Engine::scan_as_of_now`; returns false to stop.
pub type TableVisitor<'a> = dyn FnMut(Table, &[u8], &[u8]) -> bool + 'a;

pub trait Engine: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Calls `visit(key, value)` for each entry of `range` in `direction` until it returns false.
    fn scan(
        &self,
        table: Table,
        range: KeyRange<'_>,
        direction: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;

    /// Calls `visit(key, value)` for each entry of `table` whose key starts with `prefix`, in
    /// key order, until it returns false. Every prefix scan goes through here, so that one
    /// rule (`keys::prefix_end`) decides where a prefix's keys end.
    fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let end = keys::prefix_end(prefix);
        self.scan(table, KeyRange { from: prefix, to: end.as_deref() }, Direction::Forward, visit)
    }

    /// The greatest key of `table`, or `None` when it is empty.
    fn last_key(&self, table: Table) -> Result<Option<Vec<u8>>, StorageError> {
        let mut last = None;
        self.scan(table, KeyRange::all(), Direction::Reverse, &mut |key, _| {
            last = Some(key.to_vec());
            false
        })?;
        Ok(last)
    }

    /// Calls `visit(table, key, value)` for every entry of `tables`, table by table in key
    /// order, all as of one point in time: `fixed` is called once that point is taken, before
    /// the first visit, and batches written after it are not seen. Snapshots dump the state
    /// this way while the state machine goes on applying.
    fn scan_as_of_now(
        &self,
        tables: &[Table],
        fixed: &mut dyn FnMut(),
        visit: &mut TableVisitor<'_>,
    ) -> Result<(), StorageError>;

    /// Calls `visit(key, value)` for each of `keys` in order, all read as of one point in time:
    /// `fixed` is called once that point is taken, before the first visit. Stops when `visit`
    /// returns false. Reads of a range release the keyspace lock this way before their values
    /// are read. This default reads everything before it calls `fixed` (correct, no gain);
    /// RocksDB reads from a snapshot after it.
    fn get_many_as_of_now(
        &self,
        table: Table,
        keys: &[Vec<u8>],
        fixed: &mut dyn FnMut(),
        visit: &mut ValueVisitor<'_>,
    ) -> Result<(), StorageError> {
        let values = keys.iter().map(|key| self.get(table, key)).collect::<Result<Vec<_>, _>>()?;
        fixed();
        for (key, value) in keys.iter().zip(&values) {
            if !visit(key, value.as_deref()) {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError>;

    /// Makes every batch written so far durable (RocksDB: fsync the WAL). Many `Buffered`
    /// writes followed by one `sync` is how the log store shares one fsync between appends.
    fn sync(&self) -> Result<(), StorageError>;

    /// Makes everything durable and stops background work, so that the process can exit with
    /// the engine still referenced (RocksDB aborts if its background threads outlive exit).
    /// Nothing may be written afterwards.
    fn close(&self) -> Result<(), StorageError> {
        self.sync()
    }

    /// Bytes the engine occupies on disk, the Raft log and write-ahead logs included (0 for memory).
    fn size_bytes(&self) -> u64;

    /// Bytes the replicated state's tables take (`STATE_TABLES`: etcd's backend, without the
    /// Raft log, which etcd keeps apart in its WAL): Maintenance.Status's `dbSize` and what
    /// `--quota-backend-bytes` limits. Data still in memory counts, as it is bound for disk.
    fn state_size_bytes(&self) -> u64;

    /// Of `state_size_bytes`, what live data takes (etcd's `dbSizeInUse`): the rest is space a
    /// `defragment` may give back.
    fn state_size_in_use_bytes(&self) -> u64 {
        self.state_size_bytes()
    }

    /// Gives back the space that deleted and overwritten records still take (etcd's defragment):
    /// flushes memory to files and compacts every table whole. Blocks; readers and writers go on.
    fn defragment(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
