//! SIGTERM always ends a member within a few seconds, whatever its clients hold open: idle
//! connections of a client's channel pool, a lease keep-alive stream, a watch, a half-sent
//! request whose body never comes. etcd exits in about 1.5 s in the same situation; before the
//! grace period a stalled request held a member up indefinitely (the test timed out at 30 s).

use std::time::{Duration, Instant};

use etcd_client::WatchOptions as EtcdWatchOptions;
use keel_client::events::{ConsumeOptions, Events, GrpcEvents, PublishOptions};
use keel_client::registry::{GrpcRegistry, Registry, WatchOptions};
use keel_tests::{Server, TestCluster};
use tokio::io::AsyncWriteExt;

/// etcd closes client connections after a short grace period; so must Keel.
const EXIT_DEADLINE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_a_member_whose_clients_hold_connections_and_streams_open() {
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut client = cluster.member_client(0).await;
        client.get("warm", None).await.expect("a first call opens the connection");
        idle.push(client);
    }
    let mut client = cluster.member_client(0).await;
    let lease = client.lease_grant(60, None).await.expect("lease").id();
    let (_keeper, _responses) = client.lease_keep_alive(lease).await.expect("a keep-alive stream");
    let _watch = client.watch("w", Some(EtcdWatchOptions::new().with_prefix())).await.expect("a watch");
    // Keel's own long-lived streams: a consumer group's delivery stream and a registry watch.
    let events = GrpcEvents::connect(&cluster.endpoints()).await.expect("valid endpoints");
    events.publish("orders", b"o1".to_vec(), PublishOptions::default()).await.expect("publish");
    let options = ConsumeOptions { group: Some("billing".into()), ..ConsumeOptions::default() };
    let _subscription = events.consume("orders", options).await.expect("a consumer");
    let registry = GrpcRegistry::connect(&cluster.endpoints()).await.expect("valid endpoints");
    let _registry_watch = registry.watch(WatchOptions::default()).await.expect("a registry watch");
    // A connection that sent half an HTTP/2 preface and then nothing.
    let address = cluster.members[0].client_url.trim_start_matches("http://").to_string();
    let mut half = tokio::net::TcpStream::connect(&address).await.expect("connect");
    half.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");

    // A request whose body never comes: its stream stays open until the member drops it.
    let mut stalled = tokio::net::TcpStream::connect(&address).await.expect("connect");
    stalled.write_all(&request_without_body("/etcdserverpb.KV/Range", &address)).await.expect("write");

    let started = Instant::now();
    let status = cluster.terminate_within(0, Duration::from_secs(30)).await;
    let took = started.elapsed();
    let status = status.unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    assert!(took < EXIT_DEADLINE, "the member took {took:?} to exit after SIGTERM\n{}", cluster.all_logs());
    drop((idle, half, stalled));
}

/// An HTTP/2 client preface, empty SETTINGS, and the HEADERS of a gRPC call to `path`
/// without END_STREAM (HPACK literals, no Huffman): the server waits for a body that never
/// comes.
fn request_without_body(path: &str, authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        block.push(u8::try_from(name.len()).expect("short name"));
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let length = u32::try_from(block.len()).expect("a small block").to_be_bytes();
    bytes.extend_from_slice(&length[1..]);
    bytes.extend_from_slice(&[0x1, 0x4, 0, 0, 0, 1]);
    bytes.extend_from_slice(&block);
    bytes
}
