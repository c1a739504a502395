//! Native event logs (`keel.v1.Events`) over a real cluster, their etcd face: events are etcd
//! keys under `/micro/events/<topic>/<20-digit offset>` that etcd tools and watches see, bad
//! input is refused and changes nothing, and writes through the etcd API under
//! `/micro/events/` are refused: they would desynchronise the topics' offsets. The log's own
//! guarantees: `events.rs`.

use std::collections::BTreeSet;
use std::time::Instant;

use etcd_client::{Compare, CompareOp, DeleteOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use keel_proto::v1::{PublishRequest, ReadEventsRequest};
use keel_tests::{etcdctl, Server, TestCluster, READY_TIMEOUT};

#[path = "support/events.rs"]
mod support;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn events_are_etcd_keys_that_etcdctl_lists_and_etcd_watches_see() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = events(&cluster, 0);
    let mut batch = vec![new_event("a", b"first"), new_event("b", b"second"), new_event("c", b"third")];
    batch[1].metadata.insert("Content-Type".into(), "application/json".into());
    publish(&client, publish_request("shop", batch)).await;
    let read = read_all(&events(&cluster, 2), "shop", 0).await;
    let metadata: Vec<usize> = read.iter().map(|e| e.metadata.len()).collect();
    assert_eq!(metadata, [0, 1, 0], "metadata of each event: {read:?}");
    assert_eq!(read[1].metadata.get("Content-Type").map(String::as_str), Some("application/json"));
    // A look-alike topic that shares the prefix "shop" but not "shop/".
    publish(&client, publish_request("shop-eu", vec![new_event("", b"elsewhere")])).await;

    // etcdctl lists exactly the topic's keys, offsets zero-padded to 20 digits.
    let listed = tokio::task::block_in_place(|| {
        etcdctl(&cluster.endpoints_csv(), &["get", "--prefix", "/micro/events/shop/", "--keys-only"])
    });
    assert!(listed.success, "{listed:?}");
    let keys: Vec<&str> = listed.stdout.lines().filter(|line| !line.is_empty()).collect();
    let expected: Vec<String> = (0..3).map(|offset| format!("/micro/events/shop/{offset:020}")).collect();
    assert_eq!(keys, expected, "{listed:?}");
    let all =
        tokio::task::block_in_place(|| etcdctl(&cluster.endpoints_csv(), &["get", "--prefix", PREFIX, "--keys-only"]));
    let keys: BTreeSet<&str> = all.stdout.lines().filter(|line| !line.is_empty()).collect();
    let mut expected: BTreeSet<String> = expected.into_iter().collect();
    expected.insert(format!("/micro/events/shop-eu/{:020}", 0));
    assert_eq!(keys, expected.iter().map(String::as_str).collect(), "{all:?}");

    // Each value is a JSON object.
    let mut etcd = cluster.client().await;
    let stored = etcd.get("/micro/events/shop/", Some(GetOptions::new().with_prefix())).await.expect("get");
    for kv in stored.kvs() {
        let value: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_else(|e| {
            panic!("{}: the value is not JSON ({e}): {:?}", kv.key_str().unwrap_or_default(), kv.value_str())
        });
        assert!(value.is_object(), "{}: {value}", kv.key_str().unwrap_or_default());
    }

    // A watch on the topic's prefix (on member 2) sees a publish through member 1: both
    // events, put in the one revision of their one replicated command.
    let mut watcher = cluster.member_client(2).await;
    let mut stream =
        watcher.watch("/micro/events/shop/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
    // It starts where member 2 is when it creates it: publish only once it is created.
    let created = stream.message().await.expect("watch response").expect("created response");
    assert!(created.created(), "{created:?}");
    let batch = vec![new_event("d", b"fourth"), new_event("e", b"fifth")];
    let answer = publish(&events(&cluster, 1), publish_request("shop", batch)).await;
    publish(&events(&cluster, 1), publish_request("shop-eu", vec![new_event("", b"not watched")])).await;
    let mut seen: Vec<(bool, String, i64)> = Vec::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let response = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for the watch to see both events: seen {seen:?}"))
            .expect("watch stream")
            .expect("watch stream open");
        for event in response.events() {
            let kv = event.kv().expect("event kv");
            let put = event.event_type() == EventType::Put;
            seen.push((put, kv.key_str().unwrap_or_default().to_string(), kv.mod_revision()));
        }
    }
    let expected: Vec<(bool, String, i64)> =
        [3, 4].iter().map(|offset| (true, format!("/micro/events/shop/{offset:020}"), answer.revision)).collect();
    assert_eq!(seen, expected, "watch events (put, key, mod revision) for the publish {answer:?}");
}

/// A refused call and the words one of which its message must hold.
type Refusal = (&'static str, Result<(), tonic::Status>, &'static [&'static str]);

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = events(&cluster, 1);
    publish(&client, publish_request("kept", vec![new_event("k-0", b"original")])).await;
    let mut etcd = cluster.client().await;
    let revision_before = etcd.get("any", None).await.expect("get").header().expect("header").revision();
    let unchanged = || async {
        let listed = topics(&client).await;
        let read = read_all(&client, "kept", 0).await;
        (listed, read.into_iter().map(|e| (e.offset, e.id, e.payload)).collect::<Vec<_>>())
    };
    let before = unchanged().await;
    assert_eq!(before, (vec![topic_info("kept", 0, 1)], vec![(0, "k-0".to_string(), b"original".to_vec())]));

    let one = || vec![new_event("", b"x")];
    let many = |n: usize| (0..n).map(|k| new_event("", format!("{k}").as_bytes())).collect::<Vec<_>>();
    let publishes: Vec<(&str, PublishRequest, &[&str])> = vec![
        ("empty topic", publish_request("", one()), &["topic"]),
        ("'/' in the topic", publish_request("kept/sub", one()), &["topic"]),
        ("topic over 256 bytes", publish_request(&"t".repeat(TOPIC_BYTES_MAX + 1), one()), &["topic"]),
        ("no events", publish_request("kept", Vec::new()), &["event"]),
        ("over 1000 events", publish_request("kept", many(EVENTS_PER_PUBLISH_MAX + 1)), &["event", "1000"]),
        (
            "payload over 1 MiB",
            publish_request("kept", vec![new_event("", &vec![b'p'; PAYLOAD_BYTES_MAX + 1])]),
            &["payload", "large", "size", "bytes", "mib"],
        ),
        (
            "one bad payload in a good batch",
            publish_request(
                "kept",
                vec![new_event("ok-1", b"fine"), new_event("", &vec![b'p'; PAYLOAD_BYTES_MAX + 1])],
            ),
            &["payload", "large", "size", "bytes", "mib"],
        ),
    ];
    let mut refusals: Vec<Refusal> = Vec::new();
    for (what, request, words) in publishes {
        refusals.push((what, try_publish(&client, request).await.map(drop), words));
    }
    let reads: Vec<(&str, ReadEventsRequest, &[&str])> = vec![
        ("read an empty topic", read_request("", 0, 0, 0), &["topic"]),
        ("read a topic with '/'", read_request("kept/sub", 0, 0, 0), &["topic"]),
        ("read over 10000 events", read_request("kept", 0, 0, READ_LIMIT_MAX + 1), &["limit", "10000"]),
    ];
    for (what, request, words) in reads {
        refusals.push((what, try_read(&client, request).await.map(drop), words));
    }
    for (what, result, words) in refusals {
        let status = result.expect_err(what);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        let message = status.message().to_lowercase();
        assert!(words.iter().any(|w| message.contains(w)), "{what}: the message {message:?} names none of {words:?}");
        assert_eq!(unchanged().await, before, "after {what}");
    }
    // An unknown topic is not found, and reading it creates nothing.
    let missing = try_read(&client, read_request("nobody", 0, 0, 0)).await.expect_err("an unknown topic");
    assert_eq!((missing.code(), missing.message()), (tonic::Code::NotFound, "events: no such topic"), "{missing:?}");
    assert_eq!(unchanged().await, before, "after reading an unknown topic");

    // Nothing reached the keyspace.
    let after = etcd.get(PREFIX, Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    let keys: Vec<&str> = after.kvs().iter().map(|kv| kv.key_str().unwrap_or_default()).collect();
    assert_eq!(keys, [format!("/micro/events/kept/{:020}", 0)]);
    assert_eq!(after.header().expect("header").revision(), revision_before, "a refused call changed the keyspace");

    // The limits are inclusive: a 256-byte topic, 1000 events, a 1 MiB payload, a read of
    // 10000 are all accepted.
    let long_topic = "t".repeat(TOPIC_BYTES_MAX);
    publish(&client, publish_request(&long_topic, one())).await;
    let answer = publish(&client, publish_request("kept", many(EVENTS_PER_PUBLISH_MAX))).await;
    let offsets: Vec<u64> = answer.events.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (1..=EVENTS_PER_PUBLISH_MAX as u64).collect::<Vec<_>>());
    let answer = publish(&client, publish_request("kept", vec![new_event("", &vec![b'p'; PAYLOAD_BYTES_MAX])])).await;
    assert_eq!(answer.events[0].offset, EVENTS_PER_PUBLISH_MAX as u64 + 1);
    let (read, next_offset) = try_read(&client, read_request("kept", 0, 0, READ_LIMIT_MAX)).await.expect("read 10000");
    assert_eq!((read.len(), next_offset), (EVENTS_PER_PUBLISH_MAX + 2, EVENTS_PER_PUBLISH_MAX as u64 + 2));
    assert_eq!(read.last().map(|e| e.payload.len()), Some(PAYLOAD_BYTES_MAX));
    let listed = topics(&client).await;
    assert_eq!(listed, [topic_info("kept", 0, EVENTS_PER_PUBLISH_MAX as u64 + 2), topic_info(&long_topic, 0, 1)]);
}

/// What etcd clients are told when they write under the events' prefix.
const RESERVED: &str = "etcdserver: key is reserved for keel events: /micro/events/";

#[tokio::test(flavor = "multi_thread")]
async fn etcd_writes_under_the_events_prefix_are_refused_and_offsets_stay_dense() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = events(&cluster, 0);
    publish(&client, publish_request("x", vec![new_event("", b"zero"), new_event("", b"one")])).await;
    let mut etcd = cluster.client().await;
    let listed = etcd.get(PREFIX, Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    let revision_before = listed.header().expect("header").revision();

    // Phase 1: every kind of etcd write that reaches the prefix, through every member (the
    // followers check before forwarding; the leader checks what it is forwarded the same way).
    let next_key = format!("/micro/events/x/{:020}", 2);
    let first_key = format!("/micro/events/x/{:020}", 0);
    for i in 0..3 {
        let mut member = cluster.member_client(i).await;
        let nested_delete = Txn::new().and_then([TxnOp::delete("", Some(DeleteOptions::new().with_all_keys()))]);
        let attempts: Vec<(&str, Result<(), etcd_client::Error>)> = vec![
            ("put the next offset", member.put(next_key.as_str(), "forged", None).await.map(drop)),
            ("delete an event", member.delete(first_key.as_str(), None).await.map(drop)),
            (
                "delete \"\" to \"\\0\" (from-key)",
                member.delete("", Some(DeleteOptions::new().with_all_keys())).await.map(drop),
            ),
            (
                "delete --prefix /micro",
                member.delete("/micro", Some(DeleteOptions::new().with_prefix())).await.map(drop),
            ),
            (
                "a txn whose else branch puts",
                member
                    .txn(Txn::new().when([Compare::version("a", CompareOp::Equal, 7)]).or_else([TxnOp::put(
                        next_key.as_str(),
                        "forged",
                        None,
                    )]))
                    .await
                    .map(drop),
            ),
            (
                "a nested txn that deletes everything",
                member.txn(Txn::new().and_then([TxnOp::txn(nested_delete)])).await.map(drop),
            ),
        ];
        for (what, result) in attempts {
            match result {
                Err(etcd_client::Error::GRpcStatus(status)) => {
                    assert_eq!(
                        (status.code(), status.message()),
                        (tonic::Code::InvalidArgument, RESERVED),
                        "{what} on {i}"
                    );
                }
                other => panic!("{what} on member {i}: {other:?}"),
            }
        }
    }
    let refused = tokio::task::block_in_place(|| etcdctl(&cluster.endpoints_csv(), &["del", "", "--from-key"]));
    assert!(!refused.success && refused.stderr.contains(RESERVED), "etcdctl del \"\" --from-key: {refused:?}");

    // Phase 2: reads still work, and nothing changed.
    let after = etcd.get(PREFIX, Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    let keys: Vec<&str> = after.kvs().iter().map(|kv| kv.key_str().unwrap_or_default()).collect();
    let expected: Vec<String> = (0..2).map(|offset| format!("/micro/events/x/{offset:020}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(after.header().expect("header").revision(), revision_before, "a refused write changed the keyspace");

    // Phase 3: the next publish gets the next offset, and the log reads back dense.
    let answer = publish(&events(&cluster, 1), publish_request("x", vec![new_event("", b"two")])).await;
    assert_eq!(answer.events.iter().map(|p| p.offset).collect::<Vec<_>>(), [2]);
    let read = read_all(&events(&cluster, 2), "x", 0).await;
    let read: Vec<(u64, Vec<u8>)> = read.into_iter().map(|e| (e.offset, e.payload)).collect();
    assert_eq!(read, [(0, b"zero".to_vec()), (1, b"one".to_vec()), (2, b"two".to_vec())]);
    assert_eq!(topics(&client).await, [topic_info("x", 0, 3)]);

    // Phase 4: the other native prefixes, which go-micro's etcd plugins write, and ranges that
    // stop short of the events' prefix stay writable.
    etcd.put("/micro/store/micro/micro/k", "v", None).await.expect("put under the store's prefix");
    etcd.put("/micro/registry/greeter/n1", "{}", None).await.expect("put under the registry's prefix");
    etcd.put("/micro/config/micro/app", "1", None).await.expect("put under the config's prefix");
    etcd.delete("/micro/config/", Some(DeleteOptions::new().with_prefix())).await.expect("delete below the events");
    etcd.delete("/micro/eventsx", Some(DeleteOptions::new().with_from_key())).await.expect("delete past the events");
}
