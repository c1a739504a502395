//! The store contract as one suite, run against every implementation: `MemoryStore` in
//! keel-client's tests, `GrpcStore` against a real cluster. It panics on the first broken
//! expectation, saying which.
//!
//! Safe on a shared store: it writes only into databases named `conformance-<random>` (and one
//! random key of the default table), and deletes what it wrote. Waits use tokio's clock and a
//! deadline, so the suite is instant under `tokio::time::pause()` and takes a few seconds
//! (TTLs) against a cluster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;

use super::{
    DeleteOptions, ListOptions, Order, ReadOptions, Record, Scope, Store, WriteOptions, DEFAULT_NAME, TTL_MAX_SECS,
    VALUE_BYTES_MAX,
};
use crate::error::Error;

/// How long an expiring record may stay visible past its TTL before the suite gives up: the
/// cluster counts whole seconds.
const WAIT: Duration = Duration::from_secs(10);
/// Between two reads of a record expected to expire.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The TTL of records meant to expire during the suite.
const SHORT_TTL: Duration = Duration::from_secs(2);

/// Runs every case against `store`.
pub async fn run(store: Arc<dyn Store>) {
    let run = format!("conformance-{:08x}", rand::rng().random::<u32>());
    read_write_delete(&*store, &run).await;
    defaults_are_micro(&*store, &run).await;
    reads_filter_order_and_page(&*store, &run).await;
    list_filters_order_and_pages(&*store, &run).await;
    databases_and_tables(&*store, &run).await;
    scope_fixes_database_and_table(store.clone(), &run).await;
    invalid_requests_are_rejected(&*store, &run).await;
    ttl_records_are_never_read_after_their_expiry(&*store, &run).await;
    expiry_records_are_never_read_after_it(&*store, &run).await;
    clean_up(&*store, &run).await;
}

fn at(database: &str, table: &str) -> (String, String) {
    (database.to_string(), table.to_string())
}

fn read_options(database: &str, table: &str) -> ReadOptions {
    ReadOptions { database: database.into(), table: table.into(), ..ReadOptions::default() }
}

fn write_options(database: &str, table: &str) -> WriteOptions {
    WriteOptions { database: database.into(), table: table.into(), ..WriteOptions::default() }
}

fn delete_options(database: &str, table: &str) -> DeleteOptions {
    DeleteOptions { database: database.into(), table: table.into() }
}

fn list_options(database: &str, table: &str) -> ListOptions {
    ListOptions { database: database.into(), table: table.into(), ..ListOptions::default() }
}

fn keys(records: &[Record]) -> Vec<&str> {
    records.iter().map(|record| record.key.as_str()).collect()
}

async fn read_write_delete(store: &dyn Store, run: &str) {
    let (database, table) = at(run, "basic");
    let missing = store.read("missing", read_options(&database, &table)).await;
    assert_eq!(missing, Err(Error::NotFound), "read of a key never written");

    // Bytes that are not UTF-8, and metadata: every field makes the round trip.
    let mut record = Record::new("user/1", vec![0, 159, 146, 150, 255]);
    record.metadata = BTreeMap::from([("owner".to_string(), "keel".to_string()), ("empty".into(), String::new())]);
    store.write(&record, write_options(&database, &table)).await.expect("write");
    let read = store.read("user/1", read_options(&database, &table)).await.expect("read after write");
    assert_eq!(read, vec![record.clone()], "read gives the record written, without TTL or expiry");

    let replaced = Record::new("user/1", "second");
    store.write(&replaced, write_options(&database, &table)).await.expect("overwrite");
    let read = store.read("user/1", read_options(&database, &table)).await.expect("read after overwrite");
    assert_eq!(read, vec![replaced], "a write replaces value and metadata");

    store.delete("user/1", delete_options(&database, &table)).await.expect("delete");
    let deleted = store.read("user/1", read_options(&database, &table)).await;
    assert_eq!(deleted, Err(Error::NotFound), "read after delete");
    store.delete("user/1", delete_options(&database, &table)).await.expect("deleting a missing key is not an error");
}

async fn defaults_are_micro(store: &dyn Store, run: &str) {
    let key = format!("{run}-default");
    store.write(&Record::new(key.as_str(), "v"), WriteOptions::default()).await.expect("write to the defaults");
    let read = store.read(&key, read_options(DEFAULT_NAME, DEFAULT_NAME)).await.expect("read from micro/micro");
    assert_eq!(read[0].value, b"v", "empty database and table are {DEFAULT_NAME}");
    let databases = store.databases().await.expect("databases");
    assert!(databases.iter().any(|name| name == DEFAULT_NAME), "{DEFAULT_NAME} is listed: {databases:?}");
    let tables = store.tables("").await.expect("tables of the default database");
    assert!(tables.iter().any(|name| name == DEFAULT_NAME), "{DEFAULT_NAME} is listed: {tables:?}");
    store.delete(&key, DeleteOptions::default()).await.expect("delete from the defaults");
}

async fn write_keys(store: &dyn Store, database: &str, table: &str, keys: &[&str]) {
    for key in keys {
        let record = Record::new(*key, format!("value of {key}"));
        store.write(&record, write_options(database, table)).await.expect("write");
    }
}

async fn reads_filter_order_and_page(store: &dyn Store, run: &str) {
    let (database, table) = at(run, "reads");
    write_keys(store, &database, &table, &["a1", "a2", "a3", "b1", "b2.json", "c.json"]).await;
    let cases: [(&str, ReadOptions, &[&str]); 7] = [
        ("a", ReadOptions::prefix(), &["a1", "a2", "a3"]),
        (".json", ReadOptions { suffix: true, ..ReadOptions::default() }, &["b2.json", "c.json"]),
        ("b", ReadOptions { prefix: true, suffix: true, ..ReadOptions::default() }, &[]),
        ("a", ReadOptions { limit: Some(2), ..ReadOptions::prefix() }, &["a1", "a2"]),
        ("a", ReadOptions { offset: 1, ..ReadOptions::prefix() }, &["a2", "a3"]),
        ("a", ReadOptions { order: Order::Descending, limit: Some(2), ..ReadOptions::prefix() }, &["a3", "a2"]),
        ("z", ReadOptions::prefix(), &[]),
    ];
    for (key, options, expected) in cases {
        let described = format!("{options:?}");
        let options = ReadOptions { database: database.clone(), table: table.clone(), ..options };
        let records =
            store.read(key, options).await.unwrap_or_else(|error| panic!("read {key:?} with {described}: {error}"));
        assert_eq!(keys(&records), expected, "read {key:?} with {described}");
    }
    let records = store.read("a2", read_options(&database, &table)).await.expect("exact read");
    assert_eq!(records[0].value, b"value of a2", "an exact read gives the value");
}

async fn list_filters_order_and_pages(store: &dyn Store, run: &str) {
    let (database, table) = at(run, "lists");
    let empty = store.list(list_options(&database, &table)).await.expect("list of an empty table");
    assert!(empty.is_empty(), "an empty table lists no key: {empty:?}");
    write_keys(store, &database, &table, &["k1", "k2", "k3", "other.txt", "x.txt"]).await;
    let cases: [(ListOptions, &[&str]); 6] = [
        (ListOptions::default(), &["k1", "k2", "k3", "other.txt", "x.txt"]),
        (ListOptions { prefix: Some("k".into()), ..ListOptions::default() }, &["k1", "k2", "k3"]),
        (ListOptions { suffix: Some(".txt".into()), ..ListOptions::default() }, &["other.txt", "x.txt"]),
        (ListOptions { order: Order::Descending, limit: Some(2), ..ListOptions::default() }, &["x.txt", "other.txt"]),
        (ListOptions { prefix: Some("k".into()), offset: 1, limit: Some(1), ..ListOptions::default() }, &["k2"]),
        (ListOptions { prefix: Some("none".into()), ..ListOptions::default() }, &[]),
    ];
    for (options, expected) in cases {
        let described = format!("{options:?}");
        let options = ListOptions { database: database.clone(), table: table.clone(), ..options };
        let listed = store.list(options).await.expect("list");
        assert_eq!(listed, expected, "list with {described}");
    }
}

async fn databases_and_tables(store: &dyn Store, run: &str) {
    let database = format!("{run}-tables");
    write_keys(store, &database, "t2", &["k"]).await;
    write_keys(store, &database, "t1", &["k"]).await;
    let databases = store.databases().await.expect("databases");
    assert!(databases.contains(&database), "a database with records is listed: {databases:?}");
    let mut sorted = databases.clone();
    sorted.sort();
    assert_eq!(databases, sorted, "databases are sorted");
    assert_eq!(store.tables(&database).await, Ok(vec!["t1".to_string(), "t2".to_string()]), "tables, sorted");

    for table in ["t1", "t2"] {
        store.delete("k", delete_options(&database, table)).await.expect("delete");
    }
    assert_eq!(store.tables(&database).await, Ok(Vec::new()), "a table without records is not listed");
    let databases = store.databases().await.expect("databases");
    assert!(!databases.contains(&database), "a database without records is not listed: {databases:?}");
}

async fn scope_fixes_database_and_table(store: Arc<dyn Store>, run: &str) {
    let (database, table) = (format!("{run}-scope"), "scoped".to_string());
    let scope: Arc<dyn Store> = Arc::new(Scope::new(store.clone(), database.clone(), table.clone()));
    // Options naming another database or table are overridden by the scope.
    let elsewhere = write_options("elsewhere", "elsewhere");
    scope.write(&Record::new("k", "scoped"), elsewhere).await.expect("write through the scope");
    let read = store.read("k", read_options(&database, &table)).await.expect("read the scope's table directly");
    assert_eq!(read[0].value, b"scoped", "the scope wrote into its own table");
    assert_eq!(scope.list(ListOptions::default()).await, Ok(vec!["k".to_string()]), "list through the scope");
    assert_eq!(scope.tables("").await, Ok(vec![table.clone()]), "tables of the scope's database");
    scope.delete("k", DeleteOptions::default()).await.expect("delete through the scope");
    assert_eq!(scope.read("k", ReadOptions::default()).await, Err(Error::NotFound), "read after delete");
}

async fn invalid_requests_are_rejected(store: &dyn Store, run: &str) {
    let (database, table) = at(run, "invalid");
    let good = || write_options(&database, &table);
    let now = SystemTime::now();
    let writes = [
        ("an empty key", Record::new("", "v"), good()),
        ("a zero TTL", Record::new("k", "v"), WriteOptions { ttl: Some(Duration::ZERO), ..good() }),
        ("an expiry in the past", Record::new("k", "v"), WriteOptions { expiry: Some(now - SHORT_TTL), ..good() }),
        (
            "both TTL and expiry",
            Record::new("k", "v"),
            WriteOptions { ttl: Some(SHORT_TTL), expiry: Some(now + WAIT), ..good() },
        ),
        ("a database with '/'", Record::new("k", "v"), WriteOptions { database: "a/b".into(), ..good() }),
        ("a table with '/'", Record::new("k", "v"), WriteOptions { table: "a/b".into(), ..good() }),
        ("a database with NUL", Record::new("k", "v"), WriteOptions { database: "a\0b".into(), ..good() }),
        ("a table with a control character", Record::new("k", "v"), WriteOptions { table: "t\r".into(), ..good() }),
        (
            "a TTL over etcd's MaxLeaseTTL",
            Record::new("k", "v"),
            WriteOptions { ttl: Some(Duration::from_secs(TTL_MAX_SECS.unsigned_abs() + 1)), ..good() },
        ),
        ("the largest TTL there is", Record::new("k", "v"), WriteOptions { ttl: Some(Duration::MAX), ..good() }),
        (
            "an expiry past etcd's MaxLeaseTTL",
            Record::new("k", "v"),
            WriteOptions { expiry: Some(now + Duration::from_secs(TTL_MAX_SECS.unsigned_abs() + 60)), ..good() },
        ),
        ("a value over the limit", Record::new("k", vec![b'x'; VALUE_BYTES_MAX + 1]), good()),
    ];
    for (what, record, options) in writes {
        let result = store.write(&record, options).await;
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "write with {what}: {result:?}");
    }
    let listed = store.list(list_options(&database, &table)).await.expect("list");
    assert!(listed.is_empty(), "refused writes wrote nothing: {listed:?}");

    let read = store.read("", read_options(&database, &table)).await;
    assert!(matches!(read, Err(Error::InvalidArgument(_))), "exact read of an empty key: {read:?}");
    let delete = store.delete("", delete_options(&database, &table)).await;
    assert!(matches!(delete, Err(Error::InvalidArgument(_))), "delete of an empty key: {delete:?}");
    let list = store.list(list_options(&database, "a/b")).await;
    assert!(matches!(list, Err(Error::InvalidArgument(_))), "list of a table with '/': {list:?}");
}

/// Reads `key` until it is gone; every successful read must have started before the expiry the
/// record reports.
async fn wait_for_expiry(store: &dyn Store, key: &str, options: &ReadOptions, expiry: SystemTime) {
    let deadline = tokio::time::Instant::now() + SHORT_TTL + WAIT;
    loop {
        let asked_at = SystemTime::now();
        match store.read(key, options.clone()).await {
            Err(Error::NotFound) => return,
            Ok(_) => {
                assert!(asked_at < expiry, "{key} was still readable at {asked_at:?}, after its expiry {expiry:?}")
            }
            Err(error) => panic!("read {key} while waiting for it to expire: {error}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "{key} still readable {WAIT:?} after its TTL");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn ttl_records_are_never_read_after_their_expiry(store: &dyn Store, run: &str) {
    let (database, table) = at(run, "ttl");
    let written_at = SystemTime::now();
    let options = WriteOptions { ttl: Some(SHORT_TTL), ..write_options(&database, &table) };
    store.write(&Record::new("short", "v"), options).await.expect("write with a TTL");
    let read = read_options(&database, &table);
    let record = store.read("short", read.clone()).await.expect("read before expiry").remove(0);
    let ttl = record.ttl.expect("a record written with a TTL reports one");
    assert!(!ttl.is_zero() && ttl <= SHORT_TTL, "the TTL left is within the TTL written: {ttl:?}");
    let expiry = record.expiry.expect("a record written with a TTL reports its expiry");
    // A record lives at least its TTL; whole seconds on the cluster may add up to one more.
    let earliest = written_at + SHORT_TTL;
    let latest = SystemTime::now() + SHORT_TTL + Duration::from_secs(1);
    assert!(earliest <= expiry, "expiry {expiry:?} is before the write ({written_at:?}) plus the TTL {SHORT_TTL:?}");
    assert!(expiry <= latest, "expiry {expiry:?} is more than a second after the write plus the TTL {SHORT_TTL:?}");
    let listed = store.list(list_options(&database, &table)).await.expect("list");
    assert_eq!(listed, ["short"], "an expiring record is listed while alive");

    wait_for_expiry(store, "short", &read, expiry).await;
    let listed = store.list(list_options(&database, &table)).await.expect("list");
    assert!(listed.is_empty(), "an expired record is not listed: {listed:?}");
    let prefixed = store.read("sh", ReadOptions { prefix: true, ..read }).await.expect("prefix read");
    assert!(prefixed.is_empty(), "an expired record is not read by prefix: {prefixed:?}");
    let tables = store.tables(&database).await.expect("tables");
    assert!(!tables.contains(&table), "a table whose records all expired is not listed: {tables:?}");
}

async fn expiry_records_are_never_read_after_it(store: &dyn Store, run: &str) {
    let (database, table) = at(run, "expiry");
    let expiry = SystemTime::now() + SHORT_TTL;
    let options = WriteOptions { expiry: Some(expiry), ..write_options(&database, &table) };
    store.write(&Record::new("until", "v"), options).await.expect("write with an expiry");
    let read = read_options(&database, &table);
    let record = store.read("until", read.clone()).await.expect("read before expiry").remove(0);
    let reported = record.expiry.expect("a record written with an expiry reports it");
    let rounded_up = expiry + Duration::from_secs(1);
    assert!(expiry <= reported && reported <= rounded_up, "expiry {reported:?} is the one written, {expiry:?}");
    assert!(record.ttl.is_some_and(|ttl| !ttl.is_zero()), "a TTL is left: {:?}", record.ttl);
    wait_for_expiry(store, "until", &read, reported).await;
}

/// Deletes every record the suite may have left (from a failed earlier case, say).
async fn clean_up(store: &dyn Store, run: &str) {
    let databases = store.databases().await.expect("databases");
    for database in databases.iter().filter(|name| name.starts_with(run)) {
        for table in store.tables(database).await.expect("tables") {
            for key in store.list(list_options(database, &table)).await.expect("list") {
                store.delete(&key, delete_options(database, &table)).await.expect("delete");
            }
        }
    }
    let databases = store.databases().await.expect("databases");
    assert!(databases.iter().all(|name| !name.starts_with(run)), "everything written was deleted: {databases:?}");
}
