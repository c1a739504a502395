//! The production `Engine`: RocksDB with one column family per `Table`.
//!
//! It only translates the engine contract to RocksDB calls and chooses modest options; it knows
//! nothing of what the tables hold. Every RocksDB failure becomes a `StorageError` (never a
//! panic): the caller decides that a broken disk stops the member.
//!
//! Opening is strict about damage: RocksDB's default recovery stops replaying the write-ahead
//! log at the first bad record and opens with whatever came before, silently. Here a damaged
//! record anywhere but in the torn last write of a crash refuses to open, as `OpenError::Damaged`
//! naming the file. (A log cut short looks exactly like a torn last write to RocksDB; the Raft
//! log store's watermark catches that case.)

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, ErrorKind,
    Options, ReadOptions, WriteOptions, DB,
};

use super::{
    Direction, Durability, Engine, KeyRange, StorageError, Table, TableVisitor, ValueVisitor, WriteBatch, WriteOp,
    STATE_TABLES,
};

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

/// RocksDB's info log in the database directory: where it names the write-ahead log file a
/// damaged record was found in (its errors do not).
const INFO_LOG_FILE: &str = "LOG";

/// How much of the info log is read to find that name: a failed open writes a few KiB, and the
/// file is started afresh at every open.
const INFO_LOG_READ_BYTES_MAX: u64 = 4 << 20;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its files are there but their content is damaged: a write-ahead log record, a table
    /// file, the MANIFEST. Nothing can be served from it safely.
    #[error("{detail}")]
    Damaged {
        /// The damaged file, when RocksDB named it.
        file: Option<PathBuf>,
        detail: String,
    },
    /// Anything else (permissions, a lock held by another process, no space).
    #[error(transparent)]
    Failed(#[from] StorageError),
}

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
    pub fn open_unsafe_volatile(path: &Path) -> Result<Self, OpenError> {
        Self::open_with(path, true)
    }

    /// Opens (creating it and its column families if missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, unsafe_volatile: bool) -> Result<Self, OpenError> {
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
        // Replaying the write-ahead log tolerates only an incomplete last record (a write torn
        // by a crash, never acknowledged); any other damage fails the open. RocksDB's default
        // (PointInTime) would stop at the damage and open with what came before, silently.
        options.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        // RocksDB's default, stated because recovery depends on it: without it, damage found
        // while replaying the log is only logged.
        options.set_paranoid_checks(true);
        // The size of every write-ahead log file RocksDB closes is recorded in the MANIFEST, so
        // that an older log cut short or deleted fails the open (the live one is not tracked:
        // that would cost a MANIFEST write per fsync).
        options.set_track_and_verify_wals_in_manifest(true);

        let families = Table::ALL.map(|table| ColumnFamilyDescriptor::new(table.name(), options.clone()));
        let db = DB::open_cf_descriptors(&options, path, families).map_err(|error| open_error(path, error))?;
        Ok(RocksEngine { db, path: path.to_path_buf(), unsafe_volatile })
    }

    fn family(&self, table: Table) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(table.name())
            .ok_or_else(|| StorageError(format!("column family {} missing in {}", table.name(), self.path.display())))
    }

    /// Bytes of the write-ahead log files (`*.log`) in the database directory.
    /// The sum of integer `properties` over `tables` (a table or property RocksDB does not
    /// answer counts 0).
    fn sum_property(&self, tables: &[Table], properties: &[&str]) -> u64 {
        let mut sum = 0u64;
        for &table in tables {
            let Ok(family) = self.family(table) else { continue };
            for property in properties {
                let value = self.db.property_int_value_cf(family, *property).ok().flatten().unwrap_or(0);
                sum = sum.saturating_add(value);
            }
        }
        sum
    }

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

/// The newest write-ahead log file in the database directory `path`: before an open, the one
/// the last process was writing. RocksDB names them by increasing number (`000123.log`).
pub fn newest_write_ahead_log(path: &Path) -> Option<PathBuf> {
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter_map(|file| {
            let number: u64 = file.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((number, file))
        })
        .max_by_key(|(number, _)| *number)
        .map(|(_, file)| file)
}

/// Classifies a failed open: damage (naming the file when RocksDB did) or anything else.
fn open_error(path: &Path, error: rocksdb::Error) -> OpenError {
    if error.kind() != ErrorKind::Corruption {
        return OpenError::Failed(StorageError(format!("cannot open RocksDB at {}: {error}", path.display())));
    }
    let message = error.to_string();
    let file = wal_number_in(&message).map(|number| path.join(format!("{number:06}.log"))).or_else(|| {
        let info_log = read_info_log(&path.join(INFO_LOG_FILE))?;
        damaged_file_in_info_log(&info_log).map(PathBuf::from)
    });
    let detail = match &file {
        Some(file) => format!("{} is damaged ({message})", file.display()),
        None => format!("the RocksDB database at {} is damaged ({message})", path.display()),
    };
    OpenError::Damaged { file, detail }
}

/// The start of RocksDB's info log, if it can be read.
fn read_info_log(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(INFO_LOG_READ_BYTES_MAX).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The write-ahead log file the info log reports damage in: the first
/// `<path>.log: dropping <n> bytes; <reason>` line of the failed recovery.
fn damaged_file_in_info_log(info_log: &str) -> Option<&str> {
    info_log.lines().find_map(|line| {
        let (before, _) = line.split_once(": dropping ")?;
        // The line starts with a timestamp, a thread id and `[source:line] `; the path follows.
        let file = before.rsplit_once("] ").map_or(before, |(_, file)| file).trim();
        file.ends_with(".log").then_some(file)
    })
}

/// The write-ahead log number in a MANIFEST check's message ("... WAL (log number: 12) ...",
/// "Missing WAL with log number: 12").
fn wal_number_in(message: &str) -> Option<u64> {
    let (_, after) = message.split_once("log number: ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Fuzzing entry point: reads `data` as RocksDB's info log and as an open error's message, the
/// two outside texts a failed open is explained from. Must never panic.
#[doc(hidden)]
pub fn fuzz_open_error_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = damaged_file_in_info_log(&text);
    let _ = wal_number_in(&text);
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

    fn get_many_as_of_now(
        &self,
        table: Table,
        keys: &[Vec<u8>],
        fixed: &mut dyn FnMut(),
        visit: &mut ValueVisitor<'_>,
    ) -> Result<(), StorageError> {
        let family = self.family(table)?;
        let snapshot = self.db.snapshot();
        fixed();
        let mut read_options = ReadOptions::default();
        read_options.set_snapshot(&snapshot);
        for key in keys {
            let value =
                self.db.get_pinned_cf_opt(family, key, &read_options).map_err(|error| rocks_error("get", error))?;
            if !visit(key, value.as_deref()) {
                break;
            }
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
        // Background work is stopped even when the sync fails (a full disk): RocksDB aborts the
        // process if its threads outlive it, and the exit must stay a clean non-zero one.
        let synced = self.sync();
        self.db.cancel_all_background_work(true);
        synced
    }

    fn size_bytes(&self) -> u64 {
        let sst_bytes: u64 = Table::ALL
            .iter()
            .filter_map(|&table| self.family(table).ok())
            .filter_map(|family| self.db.property_int_value_cf(family, "rocksdb.total-sst-files-size").ok().flatten())
            .sum();
        sst_bytes + self.wal_bytes()
    }

    fn state_size_bytes(&self) -> u64 {
        self.sum_property(&STATE_TABLES, &["rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"])
    }

    fn state_size_in_use_bytes(&self) -> u64 {
        let live =
            self.sum_property(&STATE_TABLES, &["rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables"]);
        live.min(self.state_size_bytes())
    }

    fn defragment(&self) -> Result<(), StorageError> {
        let families = Table::ALL.iter().map(|table| self.family(*table)).collect::<Result<Vec<_>, _>>()?;
        // Flushing first lets RocksDB drop the write-ahead logs the memtables held on to.
        self.db
            .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
            .map_err(|error| rocks_error("flush", error))?;
        let mut options = rocksdb::CompactOptions::default();
        // The bottom level too: that is where deleted records' space is given back.
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for family in families {
            self.db.compact_range_cf_opt(family, None::<&[u8]>, None::<&[u8]>, &options);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Writes `batches` small batches (each `Buffered`, as the log store does) and closes the
    /// database without a flush, so that everything lives in the write-ahead log alone.
    fn database_in_its_wal(path: &Path, batches: u32) {
        let engine = RocksEngine::open(path).expect("open");
        for i in 0..batches {
            let mut batch = WriteBatch::new();
            batch.put(Table::Log, i.to_be_bytes(), vec![b'x'; 200]);
            engine.write(batch, Durability::Buffered).expect("write");
        }
        engine.sync().expect("sync");
    }

    fn only_wal(path: &Path) -> PathBuf {
        let wals: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("read dir")
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.len() > 0))
            .collect();
        assert_eq!(wals.len(), 1, "one non-empty write-ahead log: {wals:?}");
        wals[0].clone()
    }

    fn count(engine: &RocksEngine) -> usize {
        let mut n = 0;
        engine
            .scan(Table::Log, KeyRange::all(), Direction::Forward, &mut |_, _| {
                n += 1;
                true
            })
            .expect("scan");
        n
    }

    #[test]
    fn flipped_bytes_in_the_write_ahead_log_refuse_to_open_and_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        database_in_its_wal(dir.path(), 500);
        let wal = only_wal(dir.path());
        let mut bytes = std::fs::read(&wal).expect("read wal");
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 16] {
            *byte ^= 0xff;
        }
        std::fs::write(&wal, bytes).expect("write wal");

        match RocksEngine::open(dir.path()) {
            Err(OpenError::Damaged { file, detail }) => {
                assert_eq!(file.as_deref(), Some(wal.as_path()), "{detail}");
                assert!(detail.contains(&wal.display().to_string()), "{detail}");
            }
            Err(other) => panic!("expected damage, got {other:?}"),
            Ok(engine) => panic!("a damaged write-ahead log opened with {} of 500 entries", count(&engine)),
        }
    }

    #[test]
    fn a_torn_last_write_still_opens_with_every_earlier_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        database_in_its_wal(dir.path(), 500);
        let wal = only_wal(dir.path());
        let length = std::fs::metadata(&wal).expect("stat").len();
        // A few bytes off the end: the last record is incomplete, as after a crash mid-write.
        std::fs::OpenOptions::new().write(true).open(&wal).expect("open wal").set_len(length - 20).expect("truncate");

        let engine = RocksEngine::open(dir.path()).expect("a torn last write is not damage");
        assert_eq!(count(&engine), 499, "everything but the torn record");
    }

    #[test]
    fn the_damaged_file_is_found_in_the_info_log_and_in_manifest_messages() {
        let line = "2025/01/02-03:04:05.678901 7f00 [WARN] [db/db_impl/db_impl_open.cc:1168] \
                    /data/m 1/db/000004.log: dropping 32768 bytes; Corruption: checksum mismatch";
        assert_eq!(damaged_file_in_info_log(&format!("other\n{line}\n")), Some("/data/m 1/db/000004.log"));
        assert_eq!(damaged_file_in_info_log("x: dropping 3 bytes; y"), None, "only write-ahead logs");
        assert_eq!(damaged_file_in_info_log(""), None);
        let message = "Corruption: Size mismatch: WAL (log number: 12) in MANIFEST is 500 bytes";
        assert_eq!(wal_number_in(message), Some(12));
        assert_eq!(wal_number_in("Corruption: Missing WAL with log number: 7."), Some(7));
        assert_eq!(wal_number_in("Corruption: log number: x"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn fuzz_open_error_text_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_open_error_text(&data);
        }

        #[test]
        fn fuzz_open_error_text_never_panics_on_mutated_samples(
            sample in prop::sample::select(vec![
                "t [WARN] [db/db_impl/db_impl_open.cc:1168] /d/db/000004.log: dropping 10 bytes; Corruption: x",
                "Corruption: Size mismatch: WAL (log number: 12) in MANIFEST is 500 bytes",
            ]),
            cut in 0usize..120,
            insert in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = sample.as_bytes().to_vec();
            let at = cut.min(bytes.len());
            bytes.splice(at..at, insert);
            fuzz_open_error_text(&bytes);
        }
    }
}
