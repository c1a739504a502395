//! The production `Engine`: RocksDB with one column family per `Table`.
//!
//! It only translates the engine contract to RocksDB calls and chooses modest options; it knows
//! nothing of what the tables hold. Every RocksDB failure becomes a `StorageError` (never a
//! panic): the caller decides that a broken disk stops the member.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, ReadOptions,
    WriteOptions, DB,
};

use super::{Direction, Durability, Engine, KeyRange, StorageError, Table, TableVisitor, WriteBatch, WriteOp};

/// Block cache shared by all column families. Small on purpose: the MVCC index lives in
/// memory already, and the OS page cache (which is not the member's memory) does the rest.
const BLOCK_CACHE_BYTES: usize = 32 << 20;

/// One memtable of one column family. RocksDB's 64 MiB default, times two memtables (one being
/// flushed) times the two busy families (log and kv), held ~256 MiB per member once loaded.
const MEMTABLE_BYTES: usize = 16 << 20;

/// All memtables together: past this RocksDB flushes the largest, whatever its size.
const MEMTABLES_TOTAL_BYTES: usize = 48 << 20;

/// Flushes and compactions: enough to keep up with one Raft group's write rate without
/// competing with the apply loop for cores.
const BACKGROUND_JOBS_MAX: i32 = 2;

/// A RocksDB database opened at one directory.
pub struct RocksEngine {
    db: DB,
    path: PathBuf,
    /// Test-only sabotage (`--unsafe-ack-before-fsync`): writes that are not `Sync` skip the
    /// write-ahead log, so they live only in this process's memory until a flush and a kill -9
    /// loses them. Never set in production.
    unsafe_volatile: bool,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RocksEngine {
    /// Opens the database at `path` for the `--unsafe-ack-before-fsync` sabotage: every write
    /// that is not `Durability::Sync` bypasses the write-ahead log. Exists only so the
    /// fault-injection harness can prove that it catches lost acknowledged writes.
    /// `sync` then flushes every column family atomically instead of the WAL, so a kill -9
    /// rolls the whole database back to the last `sync`, consistently.
    pub fn open_unsafe_volatile(path: &Path) -> Result<Self, StorageError> {
        Self::open_with(path, true)
    }

    /// Opens (creating it and its column families if missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, unsafe_volatile: bool) -> Result<Self, StorageError> {
        std::fs::create_dir_all(path)
            .map_err(|error| StorageError(format!("cannot create RocksDB directory {}: {error}", path.display())))?;

        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table_options = BlockBasedOptions::default();
        table_options.set_block_cache(&cache);

        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(BACKGROUND_JOBS_MAX);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_write_buffer_size(MEMTABLE_BYTES);
        options.set_db_write_buffer_size(MEMTABLES_TOTAL_BYTES);
        options.set_block_based_table_factory(&table_options);
        options.set_atomic_flush(unsafe_volatile);

        let families = Table::ALL.map(|table| ColumnFamilyDescriptor::new(table.name(), options.clone()));
        let db = DB::open_cf_descriptors(&options, path, families)
            .map_err(|error| StorageError(format!("cannot open RocksDB at {}: {error}", path.display())))?;
        Ok(RocksEngine { db, path: path.to_path_buf(), unsafe_volatile })
    }

    fn family(&self, table: Table) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(table.name())
            .ok_or_else(|| StorageError(format!("column family {} missing in {}", table.name(), self.path.display())))
    }

    /// Bytes of the write-ahead log files (`*.log`) in the database directory.
    fn wal_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "log"))
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| metadata.len())
            .sum()
    }
}

fn rocks_error(what: &str, error: rocksdb::Error) -> StorageError {
    StorageError(format!("rocksdb {what}: {error}"))
}

impl Engine for RocksEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let family = self.family(table)?;
        self.db.get_cf(family, key).map_err(|error| rocks_error("get", error))
    }

    fn scan_as_of_now(
        &self,
        tables: &[Table],
        fixed: &mut dyn FnMut(),
        visit: &mut TableVisitor<'_>,
    ) -> Result<(), StorageError> {
        let snapshot = self.db.snapshot();
        fixed();
        for &table in tables {
            let family = self.family(table)?;
            let mut read_options = ReadOptions::default();
            read_options.set_snapshot(&snapshot);
            // A dump reads everything once: caching it would only evict what reads need.
            read_options.fill_cache(false);
            let mut iterator = self.db.raw_iterator_cf_opt(family, read_options);
            iterator.seek_to_first();
            while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
                if !visit(table, key, value) {
                    return Ok(());
                }
                iterator.next();
            }
            iterator.status().map_err(|error| rocks_error("scan", error))?;
        }
        Ok(())
    }

    fn scan(
        &self,
        table: Table,
        range: KeyRange<'_>,
        direction: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let family = self.family(table)?;
        if range.to.is_some_and(|to| to <= range.from) {
            return Ok(());
        }
        // Both bounds go to RocksDB so that it stops at them itself; reverse iteration then
        // starts from the last key below the upper bound.
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_lower_bound(range.from);
        if let Some(to) = range.to {
            read_options.set_iterate_upper_bound(to);
        }
        let mut iterator = self.db.raw_iterator_cf_opt(family, read_options);
        match direction {
            Direction::Forward => iterator.seek(range.from),
            Direction::Reverse => iterator.seek_to_last(),
        }
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            if !visit(key, value) {
                break;
            }
            match direction {
                Direction::Forward => iterator.next(),
                Direction::Reverse => iterator.prev(),
            }
        }
        iterator.status().map_err(|error| rocks_error("scan", error))
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut rocks_batch = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                WriteOp::Put { table, key, value } => rocks_batch.put_cf(self.family(table)?, key, value),
                WriteOp::Delete { table, key } => rocks_batch.delete_cf(self.family(table)?, key),
                WriteOp::DeleteRange { table, from, to } => {
                    // RocksDB rejects an inverted range; an empty one deletes nothing anyway.
                    if from < to {
                        rocks_batch.delete_range_cf(self.family(table)?, from, to);
                    }
                }
            }
        }
        let mut write_options = WriteOptions::default();
        write_options.set_sync(durability == Durability::Sync);
        write_options.disable_wal(self.unsafe_volatile && durability != Durability::Sync);
        self.db.write_opt(rocks_batch, &write_options).map_err(|error| rocks_error("write", error))
    }

    fn sync(&self) -> Result<(), StorageError> {
        if self.unsafe_volatile {
            let families = Table::ALL.iter().map(|table| self.family(*table)).collect::<Result<Vec<_>, _>>()?;
            return self
                .db
                .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
                .map_err(|error| rocks_error("flush", error));
        }
        self.db.flush_wal(true).map_err(|error| rocks_error("sync", error))
    }

    fn close(&self) -> Result<(), StorageError> {
        self.sync()?;
        self.db.cancel_all_background_work(true);
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let sst_bytes: u64 = Table::ALL
            .iter()
            .filter_map(|&table| self.family(table).ok())
            .filter_map(|family| self.db.property_int_value_cf(family, "rocksdb.total-sst-files-size").ok().flatten())
            .sum();
        sst_bytes + self.wal_bytes()
    }
}
