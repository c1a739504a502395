//! Micro-benchmarks of Keel's internals, below Raft and gRPC: applying puts to the MVCC
//! keyspace, range reads at the current revision, and encoding Raft log entries.
//!
//! Each measures one layer through its public API, in one process, with no network and no
//! fsync; the end-to-end figures over the etcd API are `keel-bench`'s. Run with
//! `cargo bench -p keel-node --bench internals` (a filter such as `-- range/` picks a group).
//!
//! Keys are `/bench/000000`, `/bench/000001`, ...; values are `VALUE_BYTES` bytes, the size
//! `keel-bench` puts by default.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use keel_node::command::{Command, CompactRequest, PutRequest, RangeRequest};
use keel_node::mvcc::MvccStore;
use keel_node::raft::{decode_entry, encode_entry, Entry, LogId, TypeConfig};
use keel_node::storage::{Engine, MemoryEngine, RocksEngine, WriteBatch};
use openraft::alias::CommittedLeaderIdOf;
use openraft::EntryPayload;
use tempfile::TempDir;

/// Keys in the keyspace the writes and the RocksDB reads run over (`keel-bench`'s default).
const KEYS: usize = 10_000;
/// Keys in the larger, in-memory keyspace the reads also run over.
const KEYS_LARGE: usize = 100_000;
/// Size of every value written: `keel-bench`'s default `--value-size`.
const VALUE_BYTES: usize = 256;
/// Puts applied and committed together, as the state machine applies a batch of log entries.
const PUTS_PER_BATCH: usize = 100;
/// Keys a prefix range returns: every key sharing all but the last two digits.
const PREFIX_KEYS: usize = 100;
/// Entries in the batch that the log store encodes (on append) and decodes (on read) one by one.
const ENTRIES_PER_BATCH: usize = 64;
/// Revisions of history the apply benchmarks keep before compacting (outside the measured time):
/// without it every put adds a record forever and the memory engine grows by gigabytes. A
/// production cluster compacts too; this keeps about one old revision per key.
const HISTORY_REVISIONS_MAX: i64 = 10_000;
/// Steps through the keyspace by this many keys, so that successive operations touch keys far
/// apart. Prime and coprime with both keyspace sizes, so every key is visited.
const KEY_STRIDE: usize = 7_919;

// Short measurements, so that the whole suite runs in about two minutes on two cores.
criterion_group! {
    name = internals;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = mvcc_apply, range, log_encoding
}
criterion_main!(internals);

/// `PUTS_PER_BATCH` puts over `KEYS` existing keys, then the commit of the batch to the engine
/// (`Durability::Buffered`, as the state machine commits) and the hand-over of its events.
fn mvcc_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc_apply");
    group.throughput(Throughput::Elements(PUTS_PER_BATCH as u64));
    let mut memory = Fixture::memory(KEYS);
    group.bench_function("memory", |b| b.iter_custom(|batches| apply_batches(&mut memory, batches)));
    let mut rocksdb = Fixture::rocksdb(KEYS);
    group.bench_function("rocksdb", |b| b.iter_custom(|batches| apply_batches(&mut rocksdb, batches)));
    group.finish();
}

/// Reads at the current revision: one key, a prefix of `PREFIX_KEYS` keys, and a count of every
/// key (which the in-memory key index answers without reading a value).
fn range(c: &mut Criterion) {
    let mut group = c.benchmark_group("range");
    let rocksdb = Fixture::rocksdb(KEYS);
    range_benchmarks(&mut group, "rocksdb", &rocksdb);
    drop(rocksdb);
    let memory = Fixture::memory(KEYS_LARGE);
    range_benchmarks(&mut group, "memory", &memory);
    group.finish();
}

/// The codec of the Raft log on one entry holding a put, and on `ENTRIES_PER_BATCH` of them
/// encoded and decoded one by one, as the log store does.
fn log_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_encoding");
    let batch: Vec<Entry> = (0..ENTRIES_PER_BATCH).map(|index| put_entry(index as u64 + 1)).collect();
    let encoded: Vec<Vec<u8>> = batch.iter().map(|entry| encode_entry(entry).expect("encode")).collect();
    let entry = &batch[0];
    let entry_bytes = &encoded[0];

    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| encode_entry(black_box(entry)).expect("encode")));
    group.bench_function("decode", |b| b.iter(|| decode_entry(black_box(entry_bytes)).expect("decode")));

    group.throughput(Throughput::Elements(ENTRIES_PER_BATCH as u64));
    group.bench_function(format!("encode_batch_{ENTRIES_PER_BATCH}"), |b| {
        b.iter(|| black_box(&batch).iter().map(|entry| encode_entry(entry).expect("encode")).collect::<Vec<_>>())
    });
    group.bench_function(format!("decode_batch_{ENTRIES_PER_BATCH}"), |b| {
        b.iter(|| black_box(&encoded).iter().map(|bytes| decode_entry(bytes).expect("decode")).collect::<Vec<_>>())
    });
    group.finish();
}

/// A store over one engine, preloaded with keys. Fields drop in order: the store and the engine
/// (closing RocksDB) before the directory it lives in is removed.
struct Fixture {
    store: MvccStore,
    keys: usize,
    /// The next put's position in the keyspace, in steps of `KEY_STRIDE`.
    next_put: usize,
    _dir: Option<TempDir>,
}

impl Fixture {
    fn memory(keys: usize) -> Self {
        Self::preloaded(Arc::new(MemoryEngine::new()), keys, None)
    }

    fn rocksdb(keys: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = RocksEngine::open(dir.path()).expect("open RocksDB");
        Self::preloaded(Arc::new(engine), keys, Some(dir))
    }

    /// Puts every key once, committing every `PUTS_PER_BATCH` puts.
    fn preloaded(engine: Arc<dyn Engine>, keys: usize, dir: Option<TempDir>) -> Self {
        let mut store = MvccStore::open(engine).expect("open store");
        for chunk_start in (0..keys).step_by(PUTS_PER_BATCH) {
            for index in chunk_start..keys.min(chunk_start + PUTS_PER_BATCH) {
                store.apply(&put_command(index)).expect("apply");
            }
            store.commit(WriteBatch::new()).expect("commit");
        }
        store.take_events();
        assert_eq!(store.key_count(), keys);
        Fixture { store, keys, next_put: 0, _dir: dir }
    }

    /// The next `count` keys in stride order.
    fn next_keys(&mut self, count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| {
                self.next_put = (self.next_put + KEY_STRIDE) % self.keys;
                self.next_put
            })
            .collect()
    }
}

/// Applies `batches` batches of puts and returns the time spent applying and committing them;
/// building the commands and compacting are left out.
fn apply_batches(fixture: &mut Fixture, batches: u64) -> Duration {
    let mut measured = Duration::ZERO;
    for _ in 0..batches {
        let commands: Vec<Command> = fixture.next_keys(PUTS_PER_BATCH).into_iter().map(put_command).collect();
        let start = Instant::now();
        for command in &commands {
            black_box(fixture.store.apply(command).expect("apply"));
        }
        fixture.store.commit(WriteBatch::new()).expect("commit");
        black_box(fixture.store.take_events());
        measured += start.elapsed();

        let store = &mut fixture.store;
        if store.current_revision() - store.compact_revision() >= HISTORY_REVISIONS_MAX {
            let compact = Command::Compact(CompactRequest { revision: store.current_revision(), physical: false });
            store.apply(&compact).expect("compact");
            store.commit(WriteBatch::new()).expect("commit compaction");
        }
    }
    measured
}

fn range_benchmarks(group: &mut BenchmarkGroup<'_, WallTime>, engine: &str, fixture: &Fixture) {
    let keys = fixture.keys;
    let store = &fixture.store;
    // Requests are built before measuring, in stride order; each iteration takes the next.
    let gets: Vec<RangeRequest> = (0..keys).map(|step| get_request((step * KEY_STRIDE) % keys)).collect();
    let prefixes: Vec<RangeRequest> =
        (0..keys / PREFIX_KEYS).map(|step| prefix_request((step * KEY_STRIDE) % (keys / PREFIX_KEYS))).collect();
    let count_all = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..RangeRequest::default() };

    // The requests ask for what they are named after.
    assert_eq!(store.range(&gets[0]).expect("get").kvs.len(), 1);
    assert_eq!(store.range(&prefixes[0]).expect("prefix").kvs.len(), PREFIX_KEYS);
    assert_eq!(store.range(&count_all).expect("count").count, keys as i64);

    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("get/{engine}/{keys}"), |b| {
        let mut requests = gets.iter().cycle();
        b.iter(|| store.range(requests.next().expect("cycle never ends")).expect("range"))
    });
    group.throughput(Throughput::Elements(PREFIX_KEYS as u64));
    group.bench_function(format!("prefix_{PREFIX_KEYS}/{engine}/{keys}"), |b| {
        let mut requests = prefixes.iter().cycle();
        b.iter(|| store.range(requests.next().expect("cycle never ends")).expect("range"))
    });
    group.throughput(Throughput::Elements(keys as u64));
    group.bench_function(format!("count_all/{engine}/{keys}"), |b| {
        b.iter(|| store.range(black_box(&count_all)).expect("range"))
    });
}

fn key(index: usize) -> Vec<u8> {
    format!("/bench/{index:06}").into_bytes()
}

fn put_command(index: usize) -> Command {
    // Values differ per key, as real ones do; their content does not matter to the store.
    let value = vec![b'a' + (index % 26) as u8; VALUE_BYTES];
    Command::Put(PutRequest { key: key(index), value, ..PutRequest::default() })
}

fn get_request(index: usize) -> RangeRequest {
    RangeRequest { key: key(index), ..RangeRequest::default() }
}

/// Keys `prefix * PREFIX_KEYS ..` up to the next multiple: `/bench/0012` is `/bench/001200` to
/// `/bench/001299`.
fn prefix_request(prefix: usize) -> RangeRequest {
    let key = format!("/bench/{prefix:04}").into_bytes();
    // etcd's prefix end: the prefix with its last byte incremented (a digit, never 0xff).
    let mut range_end = key.clone();
    *range_end.last_mut().expect("the prefix is not empty") += 1;
    RangeRequest { key, range_end, ..RangeRequest::default() }
}

/// A log entry as the leader appends it for a client's put: term 3, leader 1.
fn put_entry(index: u64) -> Entry {
    let leader = CommittedLeaderIdOf::<TypeConfig> { term: 3, node_id: 1 };
    Entry { log_id: LogId::new(leader, index), payload: EntryPayload::Normal(put_command(index as usize)) }
}
