//! One test suite for the `Engine` contract, run against every implementation.
//!
//! Each `suite_*` function takes any engine; the `#[test]`s at the bottom run each against a
//! `MemoryEngine` and a `RocksEngine` in a temporary directory. Nothing here may depend on an
//! implementation's internals.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::{Direction, Durability, Engine, KeyRange, MemoryEngine, RocksEngine, Table, WriteBatch};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn put(engine: &dyn Engine, table: Table, key: &[u8], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(table, key, value);
    engine.write(batch, Durability::Buffered).expect("write");
}

fn scan(engine: &dyn Engine, table: Table, range: KeyRange<'_>, direction: Direction) -> Entries {
    let mut entries = Vec::new();
    engine
        .scan(table, range, direction, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            true
        })
        .expect("scan");
    entries
}

fn scan_prefix(engine: &dyn Engine, table: Table, prefix: &[u8]) -> Entries {
    let mut entries = Vec::new();
    engine
        .scan_prefix(table, prefix, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            true
        })
        .expect("scan prefix");
    entries
}

fn keys(entries: &Entries) -> Vec<&[u8]> {
    entries.iter().map(|(key, _)| key.as_slice()).collect()
}

fn fill(engine: &dyn Engine, table: Table, keys: &[&[u8]]) {
    let mut batch = WriteBatch::new();
    for key in keys {
        batch.put(table, *key, [b"v-".as_slice(), key].concat());
    }
    engine.write(batch, Durability::Buffered).expect("write");
}

fn suite_get_put_delete(engine: &dyn Engine) {
    assert_eq!(engine.get(Table::Kv, b"a").expect("get"), None);
    put(engine, Table::Kv, b"a", b"1");
    assert_eq!(engine.get(Table::Kv, b"a").expect("get"), Some(b"1".to_vec()));
    put(engine, Table::Kv, b"a", b"2");
    assert_eq!(engine.get(Table::Kv, b"a").expect("get"), Some(b"2".to_vec()));

    let mut batch = WriteBatch::new();
    batch.delete(Table::Kv, b"a");
    batch.delete(Table::Kv, b"never-written");
    engine.write(batch, Durability::Sync).expect("write");
    assert_eq!(engine.get(Table::Kv, b"a").expect("get"), None);
    engine.sync().expect("sync");
}

fn suite_batch_is_ordered(engine: &dyn Engine) {
    // Within one batch, later operations win over earlier ones on the same key.
    let mut batch = WriteBatch::new();
    batch.put(Table::Kv, b"gone", b"1");
    batch.delete(Table::Kv, b"gone");
    batch.delete(Table::Kv, b"back");
    batch.put(Table::Kv, b"back", b"2");
    batch.put(Table::Kv, b"twice", b"first");
    batch.put(Table::Kv, b"twice", b"second");
    batch.put(Table::Kv, b"ranged", b"3");
    batch.delete_range(Table::Kv, b"r", b"s");
    batch.put(Table::Log, b"other-table", b"4");
    engine.write(batch, Durability::Sync).expect("write");

    assert_eq!(engine.get(Table::Kv, b"gone").expect("get"), None);
    assert_eq!(engine.get(Table::Kv, b"back").expect("get"), Some(b"2".to_vec()));
    assert_eq!(engine.get(Table::Kv, b"twice").expect("get"), Some(b"second".to_vec()));
    assert_eq!(engine.get(Table::Kv, b"ranged").expect("get"), None);
    assert_eq!(engine.get(Table::Log, b"other-table").expect("get"), Some(b"4".to_vec()));
}

fn suite_empty_batch_and_empty_bytes(engine: &dyn Engine) {
    engine.write(WriteBatch::new(), Durability::Sync).expect("empty batch");
    put(engine, Table::Kv, b"", b"empty key");
    put(engine, Table::Kv, b"empty value", b"");
    assert_eq!(engine.get(Table::Kv, b"").expect("get"), Some(b"empty key".to_vec()));
    assert_eq!(engine.get(Table::Kv, b"empty value").expect("get"), Some(Vec::new()));
    let all = scan(engine, Table::Kv, KeyRange::all(), Direction::Forward);
    assert_eq!(keys(&all), vec![b"".as_slice(), b"empty value"]);
}

fn suite_delete_range(engine: &dyn Engine) {
    fill(engine, Table::Kv, &[b"a", b"b", b"b\0", b"ba", b"c", b"d"]);
    let mut batch = WriteBatch::new();
    batch.delete_range(Table::Kv, b"b", b"c");
    // Inverted and empty ranges delete nothing and are not errors.
    batch.delete_range(Table::Kv, b"d", b"a");
    batch.delete_range(Table::Kv, b"d", b"d");
    engine.write(batch, Durability::Buffered).expect("write");
    let left = scan(engine, Table::Kv, KeyRange::all(), Direction::Forward);
    assert_eq!(keys(&left), vec![b"a".as_slice(), b"c", b"d"]);
}

fn suite_scan_bounds_and_direction(engine: &dyn Engine) {
    fill(engine, Table::Kv, &[b"a", b"b", b"b\0", b"b\xff", b"c", b"\xff\xff"]);
    struct Case {
        from: &'static [u8],
        to: Option<&'static [u8]>,
        expect: Vec<&'static [u8]>,
    }
    let cases = [
        Case { from: b"", to: None, expect: vec![b"a", b"b", b"b\0", b"b\xff", b"c", b"\xff\xff"] },
        Case { from: b"b", to: Some(b"c"), expect: vec![b"b", b"b\0", b"b\xff"] },
        Case { from: b"b\0", to: Some(b"b\xff"), expect: vec![b"b\0"] },
        Case { from: b"bb", to: None, expect: vec![b"b\xff", b"c", b"\xff\xff"] },
        Case { from: b"", to: Some(b"b"), expect: vec![b"a"] },
        Case { from: b"c", to: Some(b"c"), expect: vec![] },
        Case { from: b"d", to: Some(b"a"), expect: vec![] },
        Case { from: b"x", to: Some(b"y"), expect: vec![] },
        Case { from: b"\xff\xff\xff", to: None, expect: vec![] },
    ];
    for case in cases {
        let range = KeyRange { from: case.from, to: case.to };
        let forward = scan(engine, Table::Kv, range, Direction::Forward);
        assert_eq!(keys(&forward), case.expect, "forward {:?}..{:?}", case.from, case.to);
        let reverse = scan(engine, Table::Kv, range, Direction::Reverse);
        let mut expect_reverse = case.expect.clone();
        expect_reverse.reverse();
        assert_eq!(keys(&reverse), expect_reverse, "reverse {:?}..{:?}", case.from, case.to);
        for (key, value) in &forward {
            assert_eq!(value, &[b"v-".as_slice(), key].concat());
        }
    }
}

fn suite_scan_stops_early(engine: &dyn Engine) {
    fill(engine, Table::Kv, &[b"a", b"b", b"c", b"d"]);
    for (direction, expect) in [(Direction::Forward, vec![b"a", b"b"]), (Direction::Reverse, vec![b"d", b"c"])] {
        let mut seen = Vec::new();
        engine
            .scan(Table::Kv, KeyRange::all(), direction, &mut |key, _| {
                seen.push(key.to_vec());
                seen.len() < 2
            })
            .expect("scan");
        assert_eq!(seen, expect.iter().map(|key| key.to_vec()).collect::<Vec<_>>());
    }
}

fn suite_tables_are_independent(engine: &dyn Engine) {
    for (index, table) in Table::ALL.into_iter().enumerate() {
        put(engine, table, b"same", &[index as u8]);
    }
    let mut batch = WriteBatch::new();
    batch.delete_range(Table::Log, b"", b"\xff");
    engine.write(batch, Durability::Buffered).expect("write");
    assert_eq!(engine.get(Table::Log, b"same").expect("get"), None);
    for (index, table) in Table::ALL.into_iter().enumerate().skip(1) {
        assert_eq!(engine.get(table, b"same").expect("get"), Some(vec![index as u8]));
        let all = scan(engine, table, KeyRange::all(), Direction::Forward);
        assert_eq!(all, vec![(b"same".to_vec(), vec![index as u8])]);
    }
}

fn suite_batches_visible_to_other_threads(engine: Arc<dyn Engine>) {
    let writer = Arc::clone(&engine);
    std::thread::spawn(move || put(writer.as_ref(), Table::Kv, b"from-thread", b"1")).join().expect("writer thread");
    assert_eq!(engine.get(Table::Kv, b"from-thread").expect("get"), Some(b"1".to_vec()));
}

/// A conformance suite: takes any fresh engine.
type Suite = fn(&dyn Engine);

/// Every suite that needs a fresh engine, by name for failure messages.
/// A prefix's keys include those whose next byte is 0xff; an empty or all-0xff prefix runs to
/// the end of the table.
fn suite_scan_prefix_at_the_edges(engine: &dyn Engine) {
    fill(engine, Table::StateMeta, &[b"a", b"b", b"b\0", b"b\xfe", b"b\xff", b"b\xff\xff", b"c", b"\xff", b"\xff\xff"]);
    let cases: [(&[u8], Vec<&[u8]>); 6] = [
        (b"b", vec![b"b", b"b\0", b"b\xfe", b"b\xff", b"b\xff\xff"]),
        (b"b\xff", vec![b"b\xff", b"b\xff\xff"]),
        (b"\xff", vec![b"\xff", b"\xff\xff"]),
        (b"\xff\xff", vec![b"\xff\xff"]),
        (b"", vec![b"a", b"b", b"b\0", b"b\xfe", b"b\xff", b"b\xff\xff", b"c", b"\xff", b"\xff\xff"]),
        (b"d", vec![]),
    ];
    for (prefix, expect) in cases {
        assert_eq!(keys(&scan_prefix(engine, Table::StateMeta, prefix)), expect, "prefix {prefix:?}");
    }
}

fn suite_last_key(engine: &dyn Engine) {
    assert_eq!(engine.last_key(Table::Kv).expect("last key"), None);
    fill(engine, Table::Kv, &[b"", b"a", &[0xff; 70], b"\xff"]);
    fill(engine, Table::Log, &[b"z"]);
    assert_eq!(engine.last_key(Table::Kv).expect("last key"), Some(vec![0xff; 70]));
}

/// Values of given keys as of one point: present and absent keys in order, later writes unseen,
/// and a visitor that stops the reads early.
fn suite_get_many_as_of_now(engine: &dyn Engine) {
    fill(engine, Table::Kv, &[b"a", b"c"]);
    let keys = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
    let mut seen = Vec::new();
    let mut fixed = || put(engine, Table::Kv, b"b", b"later");
    engine
        .get_many_as_of_now(Table::Kv, &keys, &mut fixed, &mut |key, value| {
            seen.push((key.to_vec(), value.map(<[u8]>::to_vec)));
            true
        })
        .expect("get many");
    let expect =
        vec![(b"a".to_vec(), Some(b"v-a".to_vec())), (b"b".to_vec(), None), (b"c".to_vec(), Some(b"v-c".to_vec()))];
    assert_eq!(seen, expect, "a value written after the point is not seen");
    let mut visits = 0;
    engine
        .get_many_as_of_now(Table::Kv, &keys, &mut || {}, &mut |_, _| {
            visits += 1;
            false
        })
        .expect("get many");
    assert_eq!(visits, 1);
}

const SUITES: [(&str, Suite); 11] = [
    ("get_many_as_of_now", suite_get_many_as_of_now),
    ("get_put_delete", suite_get_put_delete),
    ("batch_is_ordered", suite_batch_is_ordered),
    ("empty_batch_and_empty_bytes", suite_empty_batch_and_empty_bytes),
    ("delete_range", suite_delete_range),
    ("scan_bounds_and_direction", suite_scan_bounds_and_direction),
    ("scan_stops_early", suite_scan_stops_early),
    ("tables_are_independent", suite_tables_are_independent),
    ("scan_as_of_now_ignores_later_writes", suite_scan_as_of_now_ignores_later_writes),
    ("scan_prefix_at_the_edges", suite_scan_prefix_at_the_edges),
    ("last_key", suite_last_key),
];

/// A scan as of now sees every table as it was when `fixed` ran, whatever is written after.
fn suite_scan_as_of_now_ignores_later_writes(engine: &dyn Engine) {
    fill(engine, Table::Kv, &[b"a", b"b"]);
    fill(engine, Table::StateMeta, &[b"m"]);
    let mut seen = Vec::new();
    let mut fixed = || {
        let mut later = WriteBatch::new();
        later.put(Table::Kv, b"c".to_vec(), b"late".to_vec());
        later.delete(Table::Kv, b"a".to_vec());
        later.put(Table::StateMeta, b"m".to_vec(), b"changed".to_vec());
        engine.write(later, Durability::Buffered).expect("write after the point in time");
    };
    engine
        .scan_as_of_now(&[Table::Kv, Table::StateMeta], &mut fixed, &mut |table, key, value| {
            seen.push((table, key.to_vec(), value.to_vec()));
            true
        })
        .expect("scan");
    let expected: Vec<(Table, Vec<u8>, Vec<u8>)> = vec![
        (Table::Kv, b"a".to_vec(), b"v-a".to_vec()),
        (Table::Kv, b"b".to_vec(), b"v-b".to_vec()),
        (Table::StateMeta, b"m".to_vec(), b"v-m".to_vec()),
    ];
    assert_eq!(seen, expected);
    assert_eq!(engine.get(Table::Kv, b"c").expect("get"), Some(b"late".to_vec()), "the later write happened");
}

#[test]
fn memory_engine_conforms() {
    for (name, suite) in SUITES {
        eprintln!("memory: {name}");
        suite(&MemoryEngine::new());
    }
    suite_batches_visible_to_other_threads(Arc::new(MemoryEngine::new()));
    assert_eq!(MemoryEngine::new().size_bytes(), 0);
}

#[test]
fn rocks_engine_conforms() {
    for (name, suite) in SUITES {
        eprintln!("rocks: {name}");
        let dir = tempfile::tempdir().expect("tempdir");
        suite(&RocksEngine::open(dir.path()).expect("open"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    suite_batches_visible_to_other_threads(Arc::new(RocksEngine::open(dir.path()).expect("open")));
}

fn reopen_keeps(durability: Durability, path: &Path) {
    {
        let engine = RocksEngine::open(path).expect("open");
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, b"k", b"v");
        batch.put(Table::StateMeta, b"m", b"");
        batch.put(Table::Log, b"gone", b"x");
        batch.delete(Table::Log, b"gone");
        engine.write(batch, durability).expect("write");
    }
    let engine = RocksEngine::open(path).expect("reopen");
    assert_eq!(engine.get(Table::Kv, b"k").expect("get"), Some(b"v".to_vec()));
    assert_eq!(engine.get(Table::StateMeta, b"m").expect("get"), Some(Vec::new()));
    assert_eq!(engine.get(Table::Log, b"gone").expect("get"), None);
    assert!(engine.size_bytes() > 0, "the WAL alone takes some bytes");
}

#[test]
fn rocks_engine_reopen_keeps_synced_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    reopen_keeps(Durability::Sync, dir.path());
}

#[test]
fn rocks_engine_reopen_keeps_buffered_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    reopen_keeps(Durability::Buffered, dir.path());
}

#[test]
fn rocks_engine_open_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the directory should be.
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"").expect("write file");
    let error = RocksEngine::open(&file).expect_err("a file is not a database");
    assert!(error.to_string().contains("not-a-directory"), "{error}");

    // A database already open (RocksDB's LOCK file).
    let path = dir.path().join("db");
    let _first = RocksEngine::open(&path).expect("open");
    let error = RocksEngine::open(&path).expect_err("locked");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

/// Keys and prefixes of bytes at the edges (0, 1, 0xfe, 0xff) and one in the middle, so that
/// prefixes ending in 0xff, all 0xff, and empty turn up often.
fn edgy_bytes(len_max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xfe, 0xff]), 0..=len_max)
}

/// `scan_prefix` returns exactly the stored keys that start with the prefix, in order.
fn check_scan_prefix(engine: &dyn Engine, stored: &BTreeSet<Vec<u8>>, prefix: &[u8]) -> Result<(), TestCaseError> {
    let mut batch = WriteBatch::new();
    for key in stored {
        batch.put(Table::StateMeta, key.clone(), b"v".to_vec());
    }
    engine.write(batch, Durability::Buffered).expect("write");
    let found: Vec<Vec<u8>> = scan_prefix(engine, Table::StateMeta, prefix).into_iter().map(|(key, _)| key).collect();
    let expect: Vec<Vec<u8>> = stored.iter().filter(|key| key.starts_with(prefix)).cloned().collect();
    prop_assert_eq!(found, expect, "prefix {:?}", prefix);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn memory_prefix_scans_return_exactly_the_keys_with_the_prefix(
        stored in prop::collection::btree_set(edgy_bytes(5), 0..24),
        prefix in edgy_bytes(3),
    ) {
        check_scan_prefix(&MemoryEngine::new(), &stored, &prefix)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn rocks_prefix_scans_return_exactly_the_keys_with_the_prefix(
        stored in prop::collection::btree_set(edgy_bytes(5), 0..24),
        prefix in edgy_bytes(3),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        check_scan_prefix(&RocksEngine::open(dir.path()).expect("open"), &stored, &prefix)?;
    }
}
