//! The native services and leases: huge TTLs and limits, deep config paths, bad names, retention overflow, unknown acks.
//!
//! Each test is one attack from issue 12 on a single member, then what must hold afterwards:
//! leases keep expiring, the member keeps answering (also after a restart on the same data),
//! topics keep their events, and the answers say what was refused.

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use keel_client::registry::{Node, Service};
use keel_proto::v1 as pb;
use keel_proto::v1::config_client::ConfigClient;
use keel_proto::v1::events_client::EventsClient;
use keel_proto::v1::registry_client::RegistryClient;
use keel_proto::v1::store_client::StoreClient;
use keel_tests::{grpc_channel, keelctl, retry_unavailable, wait_for, Server, TestCluster};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

/// etcd's MaxLeaseTTL, the longest lease any path may make.
const LEASE_TTL_MAX_SECS: i64 = 9_000_000_000;
/// How long a lease of 1 s may take to be revoked: its TTL, the leader's 500 ms checks, a
/// proposal, and a loaded machine.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one stream message may take.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A deep config key written through the etcd API: the probe's 10,000 segments.
const DEEP_KEY_SEGMENTS: usize = 10_000;

/// One unary call (or the opening of a stream), retried while the member is unavailable.
macro_rules! call {
    ($client:ident, $channel:expr, $method:ident, $request:expr) => {{
        let (channel, request) = (&$channel, &$request);
        retry_unavailable(|| {
            let (mut client, request) = ($client::new(Channel::clone(channel)), request.clone());
            async move { client.$method(request).await }
        })
        .await
    }};
}

async fn channel(cluster: &TestCluster) -> Channel {
    grpc_channel(&cluster.members[0].client_url).await
}

fn code<T: std::fmt::Debug>(answer: &Result<T, tonic::Status>) -> Option<Code> {
    answer.as_ref().err().map(tonic::Status::code)
}

/// Grants a lease of 1 s with a key on it and waits until the key is gone: proof that the
/// leader's expiry task is alive.
async fn a_short_lease_expires(client: &mut Client, key: &str) {
    let lease = client.lease_grant(1, None).await.expect("grant a short lease").id();
    let options = etcd_client::PutOptions::new().with_lease(lease);
    client.put(key, "short", Some(options)).await.expect("put on the short lease");
    wait_for(EXPIRY_TIMEOUT, &format!("{key} removed with its 1 s lease"), || {
        let mut client = client.clone();
        async move { client.get(key, None).await.is_ok_and(|answer| answer.kvs().is_empty()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: the leader no longer expires leases"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_ttls_past_etcds_maximum_are_refused_and_leases_keep_expiring() {
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let mut client = cluster.client().await;
    let channel = channel(&cluster).await;

    // The attack: a registration with ttl_seconds = i64::MAX once overflowed the leader's
    // deadline arithmetic and killed its expiry task, so no lease expired again.
    let node = Node::new("pay-1", "127.0.0.1:8080");
    let huge = pb::RegisterRequest {
        service: Some((&Service::with_node("pay", "1.0.0", node.clone())).into()),
        ttl_seconds: i64::MAX,
    };
    let registered = call!(RegistryClient, channel, register, huge);
    a_short_lease_expires(&mut client, "after-huge-register").await;
    assert_eq!(code(&registered), Some(Code::InvalidArgument), "a TTL past MaxLeaseTTL: {registered:?}");

    // Every other path that makes a lease: etcd's LeaseGrant, the Store's TTL and expiry.
    let grant = client.lease_grant(LEASE_TTL_MAX_SECS + 1, None).await;
    assert!(grant.as_ref().is_err_and(|e| e.to_string().contains("too large lease TTL")), "{grant:?}");
    let record = || Some(pb::Record { key: "k".into(), value: b"v".to_vec(), ..pb::Record::default() });
    let store_writes = [
        pb::WriteRequest { record: record(), ttl_seconds: Some(i64::MAX), ..pb::WriteRequest::default() },
        pb::WriteRequest { record: record(), ttl_seconds: Some(LEASE_TTL_MAX_SECS), ..pb::WriteRequest::default() },
        pb::WriteRequest { record: record(), expiry: Some(i64::MAX), ..pb::WriteRequest::default() },
    ];
    for write in store_writes {
        let answer = call!(StoreClient, channel, write, write);
        assert_eq!(code(&answer), Some(Code::InvalidArgument), "{write:?}: {answer:?}");
    }

    // Large but legal: the longest lease etcd grants, a registration and a record near it.
    let longest = client.lease_grant(LEASE_TTL_MAX_SECS, None).await.expect("grant MaxLeaseTTL").id();
    let legal = pb::RegisterRequest { ttl_seconds: LEASE_TTL_MAX_SECS, ..huge.clone() };
    call!(RegistryClient, channel, register, legal).expect("register");
    let stored = pb::WriteRequest {
        record: record(),
        ttl_seconds: Some(keel_client::store::TTL_MAX_SECS),
        ..pb::WriteRequest::default()
    };
    call!(StoreClient, channel, write, stored).expect("store write");
    for lease in client.leases().await.expect("leases").leases() {
        let granted = client.lease_time_to_live(lease.id(), None).await.expect("time to live").granted_ttl();
        assert!(granted <= LEASE_TTL_MAX_SECS, "lease {:x} granted {granted} s", lease.id());
    }
    a_short_lease_expires(&mut client, "beside-the-longest").await;

    // The same data dir after a restart: the long leases are loaded, expiry still runs.
    cluster.terminate(0);
    cluster.start_member(0);
    cluster.wait_ready().await;
    let mut client = cluster.client().await;
    a_short_lease_expires(&mut client, "after-restart").await;
    let remaining = client.lease_time_to_live(longest, None).await.expect("time to live").ttl();
    assert!(remaining > LEASE_TTL_MAX_SECS - 3600, "the longest lease lives on: {remaining} s");
}

/// An etcd key `/micro/config/micro/s/s/.../s` with `segments` segments.
fn deep_config_key(segments: usize) -> String {
    format!("/micro/config/micro/{}", vec!["s"; segments].join("/"))
}

async fn config_get(channel: &Channel, path: &str) -> Result<Value, tonic::Status> {
    let request = pb::GetRequest { path: path.into(), ..pb::GetRequest::default() };
    let response = call!(ConfigClient, channel, get, request)?;
    Ok(serde_json::from_str(&response.value).expect("a Get answers JSON"))
}

async fn next_document(watch: &mut tonic::Streaming<pb::WatchConfigResponse>, what: &str) -> Value {
    let message = tokio::time::timeout(MESSAGE_TIMEOUT, watch.message()).await;
    let response = message.unwrap_or_else(|_| panic!("{what}: no answer")).unwrap_or_else(|s| panic!("{what}: {s:?}"));
    let response = response.unwrap_or_else(|| panic!("{what}: the watch ended"));
    serde_json::from_str(&response.value).expect("a watch answers JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_config_keys_and_paths_never_crash_a_member() {
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let mut client = cluster.client().await;
    let channel = channel(&cluster).await;
    client.put("/micro/config/micro/app/name", "\"shop\"", None).await.expect("put a leaf");
    let request = pb::WatchConfigRequest::default();
    let mut watch = call!(ConfigClient, channel, watch, request).expect("watch the namespace");
    assert_eq!(next_document(&mut watch, "first value").await, json!({"app": {"name": "shop"}}));

    // The attack: a key 10,000 segments deep through the etcd API, which takes any shape. Every
    // Get and every watcher of the namespace once overflowed the stack and aborted the member,
    // again on each restart.
    client.put(deep_config_key(DEEP_KEY_SEGMENTS), "1", None).await.expect("put the deep key");
    client.put("/micro/config/micro/app/deep", format!("{}1{}", "[".repeat(120), "]".repeat(120)), None).await.ok();
    assert_eq!(config_get(&channel, "").await.expect("get"), json!({"app": {"name": "shop"}}), "left out");
    assert_eq!(config_get(&channel, "s.s").await.map_err(|s| s.code()), Err(Code::NotFound));
    let set = pb::SetRequest { path: "app.name".into(), value: "\"books\"".into(), ..pb::SetRequest::default() };
    call!(ConfigClient, channel, set, set).expect("set");
    // Each change under the namespace is one document; the deep keys' are without them.
    let deadline = Instant::now() + MESSAGE_TIMEOUT;
    loop {
        let document = next_document(&mut watch, "after the set").await;
        assert_eq!(document["s"], Value::Null, "a deep key never reaches a document: {document:.200}");
        if document["app"]["name"] == "books" {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher never saw the set: {document}");
    }

    // Native paths: deep or long ones are refused before any work (20,000 segments once took
    // 6 s and 1.3 GB); the deepest allowed works.
    let deepest_path = vec!["d"; keel_client::config::DEPTH_MAX].join(".");
    let refused = [
        pb::SetRequest { path: vec!["x"; 20_000].join("."), value: "1".into(), ..pb::SetRequest::default() },
        pb::SetRequest { path: format!("{deepest_path}.d"), value: "1".into(), ..pb::SetRequest::default() },
        pb::SetRequest { path: "app".into(), value: "[".repeat(100) + &"]".repeat(100), ..pb::SetRequest::default() },
        pb::SetRequest { path: "a\0b".into(), value: "1".into(), ..pb::SetRequest::default() },
        pb::SetRequest {
            namespace: "n\u{1b}".into(),
            path: "a".into(),
            value: "1".into(),
            ..pb::SetRequest::default()
        },
    ];
    for set in refused {
        let started = Instant::now();
        let answer = call!(ConfigClient, channel, set, set);
        assert_eq!(code(&answer), Some(Code::InvalidArgument), "{:.60}: {answer:?}", set.path);
        assert!(started.elapsed() < Duration::from_secs(5), "refused at once: {:?}", started.elapsed());
    }
    let deepest = pb::SetRequest { path: deepest_path.clone(), value: "1".into(), ..pb::SetRequest::default() };
    call!(ConfigClient, channel, set, deepest).expect("the deepest path");
    assert_eq!(config_get(&channel, &deepest_path).await.expect("get the deepest"), json!(1));

    // The same data dir after a restart: the deep key is still there, and still harmless.
    drop(watch);
    cluster.terminate(0);
    cluster.start_member(0);
    cluster.wait_ready().await;
    let channel = grpc_channel(&cluster.members[0].client_url).await;
    assert_eq!(config_get(&channel, "app").await.expect("get after a restart"), json!({"name": "books"}));
    let mut client = cluster.client().await;
    let deep = client.get(deep_config_key(DEEP_KEY_SEGMENTS), Some(GetOptions::new().with_count_only())).await;
    assert_eq!(deep.expect("etcd get").count(), 1, "etcd reads keep seeing every key");
}

async fn publish(channel: &Channel, topic: &str, count: usize) -> Result<pb::PublishResponse, tonic::Status> {
    let events = (0..count).map(|n| pb::NewEvent { payload: format!("e{n}").into_bytes(), ..Default::default() });
    let request = pb::PublishRequest { topic: topic.into(), events: events.collect() };
    call!(EventsClient, channel, publish, request)
}

async fn first_offset(channel: &Channel, topic: &str) -> Option<u64> {
    let request = pb::GroupsRequest { topic: topic.into() };
    let groups = call!(EventsClient, channel, groups, request).ok()?;
    Some(groups.first_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_age_that_overflows_is_refused_and_the_topic_keeps_its_events() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let channel = channel(&cluster).await;
    publish(&channel, "a-kept", 3).await.expect("publish");

    // The attack, twice: 2^64-1 ms through the API, and 9.3e15 s through keelctl, both once
    // wrapped to an age of -1 ms, so every event was too old and the topic was emptied.
    let limits = pb::Retention { max_age_ms: u64::MAX, ..pb::Retention::default() };
    let request = pb::SetRetentionRequest { topic: "a-kept".into(), retention: Some(limits) };
    let answer = call!(EventsClient, channel, set_retention, request);
    let out = keelctl(&cluster, &["events", "retention", "a-kept", "--max-age", "9300000000000000"]);

    // A topic with a real limit set after: once the leader has trimmed it, it has looked at
    // "a-kept" too (every topic in one pass, in name order).
    publish(&channel, "b-trimmed", 3).await.expect("publish");
    let limits = pb::Retention { max_events: 1, ..pb::Retention::default() };
    let request = pb::SetRetentionRequest { topic: "b-trimmed".into(), retention: Some(limits) };
    call!(EventsClient, channel, set_retention, request).expect("retention");
    wait_for(EXPIRY_TIMEOUT, "b-trimmed cut to its last event", || async {
        first_offset(&channel, "b-trimmed").await == Some(2)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first_offset(&channel, "a-kept").await, Some(0), "a-kept lost events");
    assert_eq!(code(&answer), Some(Code::InvalidArgument), "an age of 2^64-1 ms: {answer:?}");
    assert_eq!(out.exited, Some(false), "keelctl with an age past a century: {}", out.stdout);
    assert!(out.stderr.contains("max age"), "keelctl says why: {}", out.stderr);
}

async fn open_consume(
    channel: &Channel,
    subscribe: pb::Subscribe,
) -> (mpsc::Sender<pb::ConsumeRequest>, tonic::Streaming<pb::ConsumeResponse>) {
    let (requests, outbound) = mpsc::channel(4);
    let first = pb::ConsumeRequest { request: Some(pb::consume_request::Request::Subscribe(subscribe)) };
    requests.send(first).await.expect("queue the subscribe");
    let responses = EventsClient::new(channel.clone())
        .consume(ReceiverStream::new(outbound))
        .await
        .expect("open a consume stream")
        .into_inner();
    (requests, responses)
}

async fn next_response(responses: &mut tonic::Streaming<pb::ConsumeResponse>, what: &str) -> pb::ConsumeResponse {
    let message = tokio::time::timeout(MESSAGE_TIMEOUT, responses.message()).await;
    let message = message.unwrap_or_else(|_| panic!("{what}: no answer")).unwrap_or_else(|s| panic!("{what}: {s:?}"));
    message.unwrap_or_else(|| panic!("{what}: the stream ended"))
}

/// The next response that acknowledges or refuses acks (deliveries and the first answer
/// skipped).
async fn next_settled(responses: &mut tonic::Streaming<pb::ConsumeResponse>, what: &str) -> (Vec<u64>, Vec<u64>) {
    loop {
        let response = next_response(responses, what).await;
        if !response.acked.is_empty() || !response.not_pending.is_empty() {
            return (response.acked, response.not_pending);
        }
    }
}

fn settle(acks: &[u64]) -> pb::ConsumeRequest {
    let settle = pb::Settle { acks: acks.to_vec(), nacks: Vec::new() };
    pb::ConsumeRequest { request: Some(pb::consume_request::Request::Settle(settle)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_of_offsets_not_pending_are_never_reported_acknowledged() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let channel = channel(&cluster).await;
    publish(&channel, "orders", 1).await.expect("publish");
    let subscribe = pb::Subscribe { topic: "orders".into(), group: "billing".into(), ..pb::Subscribe::default() };
    let (requests, mut responses) = open_consume(&channel, subscribe).await;
    let delivered = loop {
        let response = next_response(&mut responses, "the delivery").await;
        if let Some(delivery) = response.deliveries.first() {
            break delivery.event.as_ref().map(|event| event.offset);
        }
    };
    assert_eq!(delivered, Some(0));

    // The attack: acks of offsets never delivered were echoed back as acknowledged.
    requests.send(settle(&[0, 999, u64::MAX])).await.expect("send acks");
    let (acked, not_pending) = next_settled(&mut responses, "the first acks").await;
    assert_eq!((acked, not_pending), (vec![0], vec![999, u64::MAX]), "only offset 0 was pending");
    requests.send(settle(&[0])).await.expect("send the ack again");
    let (acked, not_pending) = next_settled(&mut responses, "the ack again").await;
    assert_eq!((acked, not_pending), (Vec::new(), vec![0]), "acknowledged already");

    // A stream without group holds nothing pending: no ack of it is acknowledged.
    let private = pb::Subscribe { topic: "orders".into(), ..pb::Subscribe::default() };
    let (requests, mut responses) = open_consume(&channel, private).await;
    requests.send(settle(&[0])).await.expect("send an ack");
    assert_eq!(next_settled(&mut responses, "a private ack").await, (Vec::new(), vec![0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_nul_controls_or_separators_are_refused_everywhere() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let channel = channel(&cluster).await;

    // The attack: a topic with NUL. Groups are keyed `topic\0group`, so its groups vanished on
    // restart and acknowledged events were delivered again.
    for topic in ["orders\0x", "orders\u{1b}[2J", "orders\n", "a/b"] {
        let answer = publish(&channel, topic, 1).await;
        assert_eq!(code(&answer), Some(Code::InvalidArgument), "publish to {topic:?}: {answer:?}");
    }
    let bad_subscriptions = [
        pb::Subscribe { topic: "t\0".into(), group: "g".into(), ..pb::Subscribe::default() },
        pb::Subscribe { topic: "t".into(), group: "g\0h".into(), ..pb::Subscribe::default() },
        pb::Subscribe { topic: "t".into(), group: "g\r".into(), ..pb::Subscribe::default() },
        pb::Subscribe { topic: "t".into(), group: "g".into(), consumer: "c\u{7f}".into(), ..pb::Subscribe::default() },
    ];
    for subscribe in bad_subscriptions {
        let (_requests, mut responses) = open_consume(&channel, subscribe.clone()).await;
        let answer = tokio::time::timeout(MESSAGE_TIMEOUT, responses.message()).await.expect("an answer");
        assert_eq!(code(&answer), Some(Code::InvalidArgument), "{subscribe:?}: {answer:?}");
    }
    let request = pb::SetRetentionRequest { topic: "t\0".into(), retention: None };
    let answer = call!(EventsClient, channel, set_retention, request);
    assert_eq!(code(&answer), Some(Code::InvalidArgument), "{answer:?}");

    // Store databases and tables, config namespaces: the same rule, the field named.
    let record = Some(pb::Record { key: "k".into(), value: b"v".to_vec(), ..pb::Record::default() });
    let writes =
        [("database", "d\0b", "t"), ("table", "d", "t\0b"), ("table", "d", "t\u{1}"), ("database", "a/b", "t")];
    for (field, database, table) in writes {
        let request = pb::WriteRequest {
            database: database.into(),
            table: table.into(),
            record: record.clone(),
            ..pb::WriteRequest::default()
        };
        let answer = call!(StoreClient, channel, write, request);
        let status = answer.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{database:?}/{table:?}: {status:?}");
        assert!(status.message().contains(field), "the message names the {field}: {}", status.message());
    }
    let get = pb::GetRequest { namespace: "ns\0".into(), path: "a".into(), ..pb::GetRequest::default() };
    let answer = call!(ConfigClient, channel, get, get);
    assert_eq!(code(&answer), Some(Code::InvalidArgument), "{answer:?}");

    // What go-micro users name things still works: dotted topics and groups, `default` tables.
    publish(&channel, "go.micro.topic.foo", 2).await.expect("a dotted topic");
    let subscribe =
        pb::Subscribe { topic: "go.micro.topic.foo".into(), group: "go.micro.srv.x".into(), ..Default::default() };
    let (_requests, mut responses) = open_consume(&channel, subscribe).await;
    let subscribed = next_response(&mut responses, "subscribe to a dotted topic").await;
    assert!(subscribed.subscribed.is_some(), "{subscribed:?}");
    let request =
        pb::WriteRequest { database: "default".into(), table: "default".into(), record, ..Default::default() };
    call!(StoreClient, channel, write, request).expect("default/default");
}
