//! The native Store (`keel.v1.Store`) over a real cluster: records are etcd keys under
//! `/micro/store/<database>/<table>/<key>`, reads filter and page, bad input changes nothing,
//! and acknowledged records survive kill -9 of the leader. Expiry: `store_expiry.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::GetOptions;
use keel_proto::v1::store_client::StoreClient;
use keel_proto::v1::{
    DatabasesRequest, DeleteRequest, ListRequest, Order, ReadRequest, Record, TablesRequest, WriteRequest,
};
use keel_tests::{etcdctl, retry_unavailable, wait_for, Server, TestCluster};
use tonic::transport::{Channel, Endpoint};

#[path = "support/store.rs"]
mod support;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn grpc_store_passes_the_conformance_suite() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let store = keel_client::store::GrpcStore::connect(&cluster.endpoints()).await.expect("connect");
    keel_client::store::conformance::run(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_etcd_keys_under_the_store_prefix() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = store(&cluster, 2).await;
    write(&client, write_request("shop", "orders", "o-1", b"first order")).await;
    let mut leased = write_request("shop", "orders", "o-2", b"second order");
    leased.ttl_seconds = Some(60);
    leased.record.as_mut().expect("record").metadata.insert("owner".into(), "ann".into());
    write(&client, leased).await;
    write(&client, write_request("shop", "users", "u-1", b"a user")).await;
    write(&client, write_request("", "", "plain", b"in micro/micro")).await;
    // A key may hold '/': only database and table names may not.
    write(&client, write_request("files", "paths", "dir/sub/file", b"nested")).await;

    // etcdctl sees exactly the table's records under its prefix.
    let listed = tokio::task::block_in_place(|| {
        etcdctl(&cluster.endpoints_csv(), &["get", "--prefix", "/micro/store/shop/orders/", "--keys-only"])
    });
    assert!(listed.success, "{listed:?}");
    let keys: Vec<&str> = listed.stdout.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(keys, ["/micro/store/shop/orders/o-1", "/micro/store/shop/orders/o-2"], "{listed:?}");
    let all =
        tokio::task::block_in_place(|| etcdctl(&cluster.endpoints_csv(), &["get", "--prefix", PREFIX, "--keys-only"]));
    let keys: Vec<&str> = all.stdout.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(
        keys,
        [
            "/micro/store/files/paths/dir/sub/file",
            "/micro/store/micro/micro/plain",
            "/micro/store/shop/orders/o-1",
            "/micro/store/shop/orders/o-2",
            "/micro/store/shop/users/u-1"
        ],
        "{all:?}"
    );

    // The TTL record rides on a lease; the other does not. Values hold the record's bytes.
    let mut etcd = cluster.client().await;
    let stored = etcd.get("/micro/store/shop/orders/", Some(GetOptions::new().with_prefix())).await.expect("get");
    let leases: Vec<i64> = stored.kvs().iter().map(|kv| kv.lease()).collect();
    assert_eq!(leases[0], 0, "o-1 has no TTL: {leases:?}");
    assert_ne!(leases[1], 0, "o-2 has a TTL, so a lease: {leases:?}");
    let ttl = etcd.lease_time_to_live(leases[1], None).await.expect("lease ttl").ttl();
    // Records expiring close together share a lease that ends no earlier than any of them.
    assert!((59..=60 + LEASE_SHARING_SECS_MAX).contains(&ttl), "the lease of a TTL-60 record has {ttl} s left");
    let nested = ReadRequest {
        database: "files".into(),
        table: "paths".into(),
        key: "dir/".into(),
        prefix: true,
        ..Default::default()
    };
    let nested = try_read(&client, nested).await.expect("read dir/ by prefix");
    assert_eq!(nested.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["dir/sub/file"]);
    let tables = retry_unavailable(|| {
        let mut client = client.clone();
        async move { client.tables(TablesRequest { database: "files".into() }).await }
    });
    assert_eq!(tables.await.expect("tables").tables, ["paths"], "a '/' in a key is not a table");
    let read = read_one(&client, "plain").await.expect("plain");
    assert_eq!(read.value, b"in micro/micro");
    let orders =
        ReadRequest { database: "shop".into(), table: "orders".into(), key: "o-2".into(), ..Default::default() };
    let records = try_read(&client, orders).await.expect("read o-2");
    assert_eq!(records[0].metadata, HashMap::from([("owner".to_string(), "ann".to_string())]));

    // A record deleted through etcd is gone from the store, and the store's delete removes
    // the etcd key (and deleting a missing key succeeds).
    etcd.delete("/micro/store/micro/micro/plain", None).await.expect("etcd delete");
    assert!(read_one(&client, "plain").await.is_none(), "deleted through etcd");
    let delete = DeleteRequest { database: "shop".into(), table: "users".into(), key: "u-1".into() };
    for _ in 0..2 {
        let deleted = retry_unavailable(|| {
            let (mut client, delete) = (client.clone(), delete.clone());
            async move { client.delete(delete).await }
        });
        deleted.await.expect("delete (twice: idempotent)");
    }
    let left = etcd.get("/micro/store/shop/users/", Some(GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(left.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_filter_page_and_order_and_list_databases_and_tables() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = store(&cluster, 0).await;
    let keys = ["a-1", "a-10", "a-2", "b-1", "b-2", "c-2"];
    for key in keys {
        write(&client, write_request("fruit", "basket", key, format!("value of {key}").as_bytes())).await;
    }
    // Look-alikes elsewhere that no read of fruit/basket may return.
    write(&client, write_request("fruit", "crate", "a-1", b"other table")).await;
    write(&client, write_request("veg", "basket", "a-3", b"other database")).await;
    write(&client, write_request("", "", "a-4", b"default database")).await;

    let read = |key: &str, prefix: bool, suffix: bool, limit: u64, offset: u64, order: Order| ReadRequest {
        database: "fruit".into(),
        table: "basket".into(),
        key: key.into(),
        prefix,
        suffix,
        limit,
        offset,
        order: order as i32,
    };
    use Order::{Ascending as Up, Descending as Down};
    let cases: Vec<(&str, ReadRequest, Vec<String>)> = vec![
        ("exact key", read("a-1", false, false, 0, 0, Up), strings(&["a-1"])),
        ("prefix", read("a-1", true, false, 0, 0, Up), strings(&["a-1", "a-10"])),
        ("every key", read("", true, false, 0, 0, Up), strings(&keys)),
        ("prefix, descending", read("a-", true, false, 0, 0, Down), strings(&["a-2", "a-10", "a-1"])),
        ("suffix", read("-2", false, true, 0, 0, Up), strings(&["a-2", "b-2", "c-2"])),
        ("suffix, descending", read("-2", false, true, 0, 0, Down), strings(&["c-2", "b-2", "a-2"])),
        ("prefix, limit", read("a-", true, false, 2, 0, Up), strings(&["a-1", "a-10"])),
        ("prefix, limit, offset", read("a-", true, false, 2, 1, Up), strings(&["a-10", "a-2"])),
        ("suffix, limit, offset", read("-2", false, true, 1, 2, Up), strings(&["c-2"])),
        ("descending, limit, offset", read("", true, false, 2, 1, Down), strings(&["b-2", "b-1"])),
        ("offset past the end", read("a-", true, false, 0, 3, Up), Vec::new()),
        ("no match", read("z", true, false, 0, 0, Up), Vec::new()),
    ];
    for (what, request, expected) in cases {
        let found = read_keys(&client, request.clone()).await;
        assert_eq!(found, expected, "{what}: {request:?}");
    }
    // Values come back with their keys; a missing key is NOT_FOUND "store: not found".
    let records = try_read(&client, read("b-", true, false, 0, 0, Up)).await.expect("read b-");
    let values: Vec<(&str, &[u8])> = records.iter().map(|r| (r.key.as_str(), r.value.as_slice())).collect();
    assert_eq!(values, [("b-1", &b"value of b-1"[..]), ("b-2", &b"value of b-2"[..])]);
    let missing = try_read(&client, read("a-3", false, false, 0, 0, Up)).await.expect_err("a-3 is in veg only");
    assert_eq!((missing.code(), missing.message()), (tonic::Code::NotFound, "store: not found"), "{missing:?}");

    // List streams the same keys, filtered, paged and ordered alike.
    let list = |prefix: &str, suffix: &str, limit: u64, offset: u64, order: Order| ListRequest {
        database: "fruit".into(),
        table: "basket".into(),
        prefix: prefix.into(),
        suffix: suffix.into(),
        limit,
        offset,
        order: order as i32,
    };
    let cases: Vec<(&str, ListRequest, Vec<String>)> = vec![
        ("every key", list("", "", 0, 0, Up), strings(&keys)),
        ("prefix", list("a-", "", 0, 0, Up), strings(&["a-1", "a-10", "a-2"])),
        ("suffix", list("", "-2", 0, 0, Up), strings(&["a-2", "b-2", "c-2"])),
        ("prefix and suffix", list("a-", "-2", 0, 0, Up), strings(&["a-2"])),
        ("descending, limit, offset", list("", "", 3, 1, Down), strings(&["b-2", "b-1", "a-2"])),
        ("no match", list("z", "", 0, 0, Up), Vec::new()),
    ];
    for (what, request, expected) in cases {
        let found = list_keys(&client, request.clone()).await;
        assert_eq!(found, expected, "list {what}: {request:?}");
    }

    // Databases and tables are those that hold records.
    let databases = retry_unavailable(|| {
        let mut client = client.clone();
        async move { client.databases(DatabasesRequest {}).await }
    });
    let databases: BTreeSet<String> = databases.await.expect("databases").databases.into_iter().collect();
    assert_eq!(databases, BTreeSet::from(["fruit", "micro", "veg"].map(String::from)));
    for (database, expected) in [("fruit", &["basket", "crate"][..]), ("veg", &["basket"]), ("", &["micro"])] {
        let tables = retry_unavailable(|| {
            let mut client = client.clone();
            async move { client.tables(TablesRequest { database: database.into() }).await }
        });
        let tables: BTreeSet<String> = tables.await.expect("tables").tables.into_iter().collect();
        assert_eq!(tables, expected.iter().map(|t| t.to_string()).collect(), "tables of {database:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = store(&cluster, 1).await;
    write(&client, write_request("", "", "k", b"original")).await;
    let mut etcd = cluster.client().await;
    let revision_before = etcd.get("any", None).await.expect("get").header().expect("header").revision();

    let changed = |database: &str, table: &str, key: &str| write_request(database, table, key, b"changed");
    let with = |mut request: WriteRequest, ttl_seconds: Option<i64>, expiry: Option<i64>| {
        request.ttl_seconds = ttl_seconds;
        request.expiry = expiry;
        request
    };
    let now = unix_now() as i64;
    // (what, request, words one of which the message must hold)
    let cases: Vec<(&str, WriteRequest, &[&str])> = vec![
        ("empty key", changed("", "", ""), &["key"]),
        ("zero ttl", with(changed("", "", "k"), Some(0), None), &["ttl"]),
        ("negative ttl", with(changed("", "", "k"), Some(-1), None), &["ttl"]),
        ("expiry in the past", with(changed("", "", "k"), None, Some(now - 10)), &["expiry", "past"]),
        ("ttl and expiry", with(changed("", "", "k"), Some(30), Some(now + 30)), &["ttl", "expiry"]),
        ("'/' in the database", changed("a/b", "", "k"), &["database"]),
        ("'/' in the table", changed("", "a/b", "k"), &["table"]),
        ("no record", WriteRequest::default(), &["record", "key"]),
        (
            "value over 1 MiB",
            write_request("", "", "k", &vec![b'x'; VALUE_BYTES_MAX + 1]),
            &["value", "large", "size", "bytes", "mib"],
        ),
    ];
    for (what, request, words) in cases {
        let refused = retry_unavailable(|| {
            let (mut client, request) = (client.clone(), request.clone());
            async move { client.write(request).await }
        });
        let status = refused.await.expect_err(what);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        let message = status.message().to_lowercase();
        assert!(words.iter().any(|w| message.contains(w)), "{what}: the message {message:?} names none of {words:?}");
        let record = read_one(&client, "k").await.unwrap_or_else(|| panic!("{what} removed the record"));
        assert_eq!((record.value.as_slice(), record.ttl_seconds), (&b"original"[..], 0), "after {what}");
    }

    // The other calls refuse bad names and keys alike.
    let bad_table = ReadRequest { table: "a/b".into(), key: "k".into(), ..Default::default() };
    let refused = vec![
        (
            "read from a bad database",
            try_read(&client, ReadRequest { database: "a/b".into(), ..bad_table.clone() }).await.map(drop),
        ),
        ("read from a bad table", try_read(&client, bad_table).await.map(drop)),
        ("delete with an empty key", {
            let mut client = client.clone();
            client.delete(DeleteRequest::default()).await.map(drop)
        }),
        ("delete from a bad table", {
            let mut client = client.clone();
            client.delete(DeleteRequest { table: "a/b".into(), key: "k".into(), ..Default::default() }).await.map(drop)
        }),
        ("list a bad table", {
            let mut client = client.clone();
            let listed = client.list(ListRequest { table: "a/b".into(), ..Default::default() }).await;
            match listed {
                Ok(stream) => stream.into_inner().message().await.map(drop),
                Err(status) => Err(status),
            }
        }),
        ("tables of a bad database", {
            let mut client = client.clone();
            client.tables(TablesRequest { database: "a/b".into() }).await.map(drop)
        }),
    ];
    for (what, result) in refused {
        let status = result.expect_err(what);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
    }

    // Nothing reached the keyspace: same revision, same keys, no lease left behind.
    let after = etcd.get(PREFIX, Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    let keys: Vec<&str> = after.kvs().iter().map(|kv| kv.key_str().unwrap_or_default()).collect();
    assert_eq!(keys, ["/micro/store/micro/micro/k"]);
    assert_eq!(after.header().expect("header").revision(), revision_before, "a refused write changed the keyspace");
    let leases = etcd.leases().await.expect("leases");
    assert!(leases.leases().is_empty(), "a refused write left a lease: {:?}", leases.leases());

    // The limits are inclusive: a value of exactly 1 MiB is accepted.
    write(&client, write_request("", "", "largest", &vec![b'y'; VALUE_BYTES_MAX])).await;
    let largest = read_one(&client, "largest").await.expect("the 1 MiB record");
    assert_eq!(largest.value.len(), VALUE_BYTES_MAX);
}

/// Concurrent writers in the kill -9 test.
const WRITERS: usize = 6;

/// Writes unique records until `stop`, each writer starting on its own member and moving to
/// the next when one fails; records what the cluster acknowledged.
fn spawn_writers(
    urls: &[String],
    acked: &Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let channels: Vec<StoreClient<Channel>> = urls
        .iter()
        .map(|url| {
            let endpoint = Endpoint::from_shared(url.clone()).expect("url");
            let endpoint = endpoint.connect_timeout(Duration::from_secs(1)).timeout(Duration::from_secs(5));
            StoreClient::new(endpoint.connect_lazy())
        })
        .collect();
    (0..WRITERS)
        .map(|writer| {
            let (channels, acked, stop) = (channels.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut member = writer % channels.len();
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{writer}-{seq:06}");
                    let value = format!("value-{writer}-{seq}").into_bytes();
                    let mut request = write_request("durable", "records", &key, &value);
                    // Every other record on a TTL: its lease must survive the failover too.
                    request.ttl_seconds = (seq % 2 == 1).then_some(120);
                    let mut client = channels[member].clone();
                    match client.write(request).await {
                        Ok(_) => {
                            acked.lock().expect("lock").insert(key, value);
                        }
                        // May have been applied: not counted, and the key is never reused.
                        Err(_) => member = (member + 1) % channels.len(),
                    }
                    seq += 1;
                }
            })
        })
        .collect()
}

/// Every acknowledged record is readable, with its value, through member `i`.
async fn assert_all_present(cluster: &TestCluster, i: usize, acked: &BTreeMap<String, Vec<u8>>) {
    let client = store(cluster, i).await;
    let request =
        ReadRequest { database: "durable".into(), table: "records".into(), prefix: true, ..Default::default() };
    let records =
        try_read(&client, request).await.unwrap_or_else(|status| panic!("read through member {i}: {status:?}"));
    let found: BTreeMap<String, Record> = records.into_iter().map(|r| (r.key.clone(), r)).collect();
    let missing: Vec<&String> =
        acked.iter().filter(|(k, v)| found.get(*k).map(|r| &r.value) != Some(*v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty(),
        "member {i} lost {} of {} acknowledged records, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    // Odd sequence numbers were written with a TTL, which must have survived as well.
    let lost_ttl: Vec<&String> = acked
        .keys()
        .filter(|k| k.rsplit('-').next().and_then(|seq| seq.parse::<u64>().ok()).is_some_and(|seq| seq % 2 == 1))
        .filter(|k| found.get(*k).is_some_and(|r| r.ttl_seconds <= 0))
        .collect();
    assert!(lost_ttl.is_empty(), "member {i}: records lost their TTL, e.g. {:?}", &lost_ttl[..lost_ttl.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_kill9_of_the_leader() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // Phase 1: writes flow through every member, then the leader dies mid-stream.
    let writers = spawn_writers(&cluster.endpoints(), &acked, &stop);
    let count = || acked.lock().expect("lock").len();
    wait_for(Duration::from_secs(15), "some records acknowledged", || {
        let n = count();
        async move { n >= 100 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    let leader = cluster.leader().await;
    cluster.kill9(leader);

    // Phase 2: writes resume on the survivors.
    let before = count();
    wait_for(Duration::from_secs(20), "writes to resume after the kill", || {
        let n = count();
        async move { n >= before + 100 }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("writer task");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    eprintln!("records acknowledged: {}", acked.len());

    // Phase 3: every survivor has every record; the killed member restarts and has them too.
    for i in (0..3).filter(|i| *i != leader) {
        assert_all_present(&cluster, i, &acked).await;
    }
    cluster.start_member(leader);
    cluster.wait_ready().await;
    assert_all_present(&cluster, leader, &acked).await;
}
