//! The client port's transport: the HTTP/2 authority shim, malformed protobuf, connection floods.

use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_tests::{Server, TestCluster, CALL_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---- the authority shim: memory per connection ----

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FLAG_END_HEADERS: u8 = 0x4;

fn frame_header(length: usize, kind: u8, flags: u8, stream_id: u32) -> Vec<u8> {
    let mut out = (length as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(payload.len(), kind, flags, stream_id);
    out.extend_from_slice(payload);
    out
}

/// The resident memory of process `pid`, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

fn address(client_url: &str) -> String {
    client_url.trim_start_matches("http://").to_string()
}

/// A put and a get through `client`, each within `CALL_TIMEOUT`: the member still serves.
async fn still_serves(client: &mut etcd_client::Client, key: &str) {
    tokio::time::timeout(CALL_TIMEOUT, client.put(key, "v", None)).await.expect("put in time").expect("put");
    let got = tokio::time::timeout(CALL_TIMEOUT, client.get(key, None)).await.expect("get in time").expect("get");
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"v"[..]));
}

/// Each connection announces one frame of 16 MiB - 1 (half DATA, half HEADERS) and then sends
/// what it can of it. A member that holds whole frames before HTTP/2 can judge them grows by
/// everything sent (the probe: +1.76 GB for 100 connections); one that streams them lets h2
/// refuse each frame from its header and close the connection.
#[tokio::test(flavor = "multi_thread")]
async fn frames_announcing_16_mib_do_not_grow_the_member() {
    const CONNECTIONS: usize = 64;
    const SENT_PER_CONNECTION: usize = 6 << 20;
    const GROWTH_MAX: u64 = 96 << 20;
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let pid = cluster.members[0].pid().expect("running");
    let mut client = cluster.client().await;
    still_serves(&mut client, "before").await;
    let before = rss_bytes(pid);

    let target = address(&cluster.members[0].client_url);
    let mut floods = Vec::new();
    for i in 0..CONNECTIONS {
        let target = target.clone();
        floods.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&target).await.expect("connect");
            let kind = if i % 2 == 0 { FRAME_DATA } else { FRAME_HEADERS };
            let mut start = PREFACE.to_vec();
            start.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
            start.extend(frame_header((1 << 24) - 1, kind, 0, 1));
            if stream.write_all(&start).await.is_err() {
                return stream;
            }
            let chunk = vec![0u8; 64 * 1024];
            let mut sent = 0;
            while sent < SENT_PER_CONNECTION {
                // A closed connection is the answer we hope for: stop sending.
                match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += chunk.len(),
                    _ => break,
                }
            }
            stream
        }));
    }
    // Keep every connection open while measuring: a member holding their bytes still holds them.
    let mut open = Vec::new();
    for flood in floods {
        open.push(flood.await.expect("flood task"));
    }
    let after = rss_bytes(pid);
    still_serves(&mut client, "during").await;
    let growth = after.saturating_sub(before);
    eprintln!("RSS {} -> {} MiB with {CONNECTIONS} connections", before >> 20, after >> 20);
    assert!(
        growth < GROWTH_MAX,
        "RSS grew by {} MiB ({} -> {} MiB) for {CONNECTIONS} connections",
        growth >> 20,
        before >> 20,
        after >> 20
    );
    drop(open);
    still_serves(&mut client, "after").await;
}

// ---- the authority shim: malformed HPACK ----

/// Header blocks HPACK cannot decode, each a COMPRESSION_ERROR. The truncated size update
/// panicked inside fluke-hpack, once per connection.
fn malformed_blocks() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("bad index", vec![0x82, 0xbf]),
        ("index 0", vec![0x80]),
        ("truncated integer", vec![0x82, 0xff]),
        ("truncated dynamic-table size update", vec![0x3f]),
        ("huge dynamic-table size update", vec![0x3f, 0xe1, 0xff, 0xff, 0x7f]),
        ("integer of too many bytes", vec![0x82, 0xff, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        ("Huffman string with EOS", vec![0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00]),
        ("Huffman string with bad padding", vec![0x00, 0x81, 0x00, 0x00]),
        ("string past the block", vec![0x00, 0x7f, 0x20, b'a']),
    ]
}

/// A first header block as etcdctl 3.4 sends it (`:authority: http://...`): the shim then
/// decodes every later block of the connection itself.
fn etcdctl_like_block() -> Vec<u8> {
    let mut block = vec![0x83, 0x86, 0x41, 0x15]; // POST, http, :authority literal of 21 bytes
    block.extend_from_slice(b"http://127.0.0.1:2379");
    block.extend_from_slice(&[0x04, 0x17]); // :path literal of 23 bytes
    block.extend_from_slice(b"/etcdserverpb.KV/Range/");
    block
}

/// Sends `blocks` as header blocks on streams 1, 3, ... and waits until the member closes
/// the connection; `Err` if it is still open after a while.
async fn send_blocks_until_closed(target: &str, blocks: &[Vec<u8>]) -> Result<(), String> {
    let mut stream = TcpStream::connect(target).await.map_err(|e| format!("connect: {e}"))?;
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    for (i, block) in blocks.iter().enumerate() {
        bytes.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1 + 2 * i as u32, block));
    }
    stream.write_all(&bytes).await.map_err(|e| format!("write: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => continue, // SETTINGS, GOAWAY...
            Err(_) => return Err("the connection stayed open".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_hpack_closes_only_that_connection_and_panics_nowhere() {
    const ROUNDS: usize = 20;
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let mut client = cluster.client().await;
    still_serves(&mut client, "before").await;
    let target = address(&cluster.members[0].client_url);

    for round in 0..ROUNDS {
        for (what, block) in malformed_blocks() {
            // As the connection's first block (h2 judges it), and after a block that makes
            // the shim decode the rest itself.
            let first = send_blocks_until_closed(&target, std::slice::from_ref(&block)).await;
            assert_eq!(first, Ok(()), "{what} as the first block");
            let later = send_blocks_until_closed(&target, &[etcdctl_like_block(), block.clone()]).await;
            assert_eq!(later, Ok(()), "{what} after an etcdctl-like block");
        }
        if round == 0 {
            still_serves(&mut client, "between").await;
        }
    }
    still_serves(&mut client, "after").await;
    let mut fresh = cluster.member_client(0).await;
    still_serves(&mut fresh, "fresh").await;
    let logs = cluster.members[0].logs();
    let panics: Vec<&str> = logs.lines().filter(|line| line.contains("panicked")).collect();
    assert!(panics.is_empty(), "{} panics reached the member's log, the first: {}", panics.len(), panics[0]);
}

// ---- the accept loop under EMFILE ----

/// The CPU time process `pid` has used (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // /proc counts in USER_HZ, which Linux fixes at 100 per second for user space.
    Duration::from_millis(ticks * 10)
}

/// The member runs out of file descriptors while connections keep arriving: its accept loop
/// must back off rather than spin, and keep serving the connections it has.
#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_file_descriptors_neither_spins_nor_stops_service() {
    const HEADROOM_FDS: usize = 16;
    /// Past the headroom, but within the listener's backlog (128): the kernel completes every
    /// handshake, so the flood is connections the member cannot accept, not refused ones.
    const FLOOD: usize = 100;
    const MEASURE: Duration = Duration::from_secs(2);
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let pid = cluster.members[0].pid().expect("running");
    let mut client = cluster.member_client(0).await;
    still_serves(&mut client, "before").await;

    // Leave the member a few descriptors beyond those it holds now.
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("list fds").count();
    let limit = open_fds + HEADROOM_FDS;
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit failed");

    // Flood: the kernel completes these handshakes; the member can accept only a few.
    let target = address(&cluster.members[0].client_url);
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(&target).await.expect("the kernel accepts into the backlog"));
    }
    // Every descriptor is taken once the member's fd count reaches its limit.
    keel_tests::wait_for(Duration::from_secs(10), "the member to run out of descriptors", || async {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| fds.count() >= limit)
    })
    .await
    .expect("descriptors exhausted");

    // Over a couple of seconds: little CPU, and the open client gets answers.
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < MEASURE {
        let got = tokio::time::timeout(CALL_TIMEOUT, client.get("before", None)).await;
        assert!(matches!(got, Ok(Ok(_))), "the open client got no answer: {got:?}");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let used = cpu_time(pid).saturating_sub(cpu_before);
    let elapsed = started.elapsed();
    eprintln!("out of descriptors: {used:?} of CPU in {elapsed:?}, {answered} reads answered");
    assert!(
        used < elapsed / 4,
        "the member used {used:?} of CPU in {elapsed:?} while out of descriptors ({answered} reads answered)"
    );

    // The flood ends: new connections work again.
    drop(flood);
    let mut fresh = cluster.member_client(0).await;
    still_serves(&mut fresh, "after").await;
}

// ---- protocol errors: etcd's codes ----

/// Sends raw bytes as gRPC messages and hands back raw bytes.
#[derive(Clone, Copy, Default)]
struct BytesCodec;

impl tonic::codec::Codec for BytesCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;
    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl tonic::codec::Encoder for BytesCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for BytesCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let remaining = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, remaining).to_vec()))
    }
}

/// A client whose own limits are far above the server's, so that only the server refuses.
async fn raw_grpc(url: &str) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = keel_tests::grpc_channel(url).await;
    tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20).max_decoding_message_size(64 << 20)
}

/// The status a unary call with `body` as its request ends with (`Ok` as a status too).
async fn unary_status(url: &str, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = raw_grpc(url).await;
    grpc.ready().await.expect("channel ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let call = grpc.unary(tonic::Request::new(body), path, BytesCodec);
    match tokio::time::timeout(CALL_TIMEOUT, call).await.expect("an answer in time") {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

/// The status a bidirectional stream ends with after its client sent `messages` and then
/// kept its side open.
async fn stream_status(url: &str, path: &'static str, messages: Vec<Vec<u8>>) -> tonic::Status {
    let mut grpc = raw_grpc(url).await;
    grpc.ready().await.expect("channel ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let requests = futures::stream::iter(messages).chain(futures::stream::pending());
    let ended = async {
        let mut responses = match grpc.streaming(tonic::Request::new(requests), path, BytesCodec).await {
            Ok(response) => response.into_inner(),
            Err(status) => return status,
        };
        loop {
            match responses.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return tonic::Status::ok("stream ended"),
                Err(status) => return status,
            }
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, ended).await.unwrap_or_else(|_| tonic::Status::ok("no end in time"))
}

fn varint(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A field of wire type 2 (bytes or an embedded message).
fn length_delimited(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2];
    out.extend(varint(bytes.len()));
    out.extend_from_slice(bytes);
    out
}

/// A TxnRequest whose success branch holds a TxnRequest, `depth` levels deep.
fn nested_txn(depth: usize) -> Vec<u8> {
    let mut txn = Vec::new();
    for _ in 0..depth {
        let op = length_delimited(4, &txn); // RequestOp.request_txn
        txn = length_delimited(2, &op); // TxnRequest.success
    }
    txn
}

/// Bytes that are no protobuf message: a field number 0 of the unused wire type 7.
const NOT_PROTOBUF: [u8; 5] = [0xff, 0xff, 0xff, 0x0f, 0x12];

/// etcd's text with Go's protobuf detail cut off (`proto: ...`): the part Keel can match.
fn before_detail(message: &str) -> &str {
    message.split("proto:").next().unwrap_or(message).trim_end()
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_errors_get_etcds_codes() {
    let etcd = TestCluster::start(Server::Etcd, 1).await;
    let keel = TestCluster::start(Server::Keel, 1).await;
    // Over --max-request-bytes + gRPC's overhead (2 MiB by default, on both).
    let oversized = length_delimited(1, &vec![b'k'; 3 << 20]);
    let unary: Vec<(&str, &'static str, Vec<u8>)> = vec![
        ("not protobuf", "/etcdserverpb.KV/Range", NOT_PROTOBUF.to_vec()),
        ("not protobuf", "/etcdserverpb.KV/Put", NOT_PROTOBUF.to_vec()),
        ("txn nested 200 deep", "/etcdserverpb.KV/Txn", nested_txn(200)),
        ("txn nested 1000 deep", "/etcdserverpb.KV/Txn", nested_txn(1000)),
        ("over the size limit", "/etcdserverpb.KV/Put", oversized.clone()),
    ];
    let mut answers = Vec::new();
    for (what, path, body) in unary {
        let expected = unary_status(&etcd.members[0].client_url, path, body.clone()).await;
        let actual = unary_status(&keel.members[0].client_url, path, body).await;
        answers.push((what, path, expected, actual));
    }
    let streams: Vec<(&str, &'static str, Vec<u8>)> = vec![
        ("not protobuf", "/etcdserverpb.Watch/Watch", NOT_PROTOBUF.to_vec()),
        ("over the size limit", "/etcdserverpb.Watch/Watch", oversized),
        ("not protobuf", "/etcdserverpb.Lease/LeaseKeepAlive", NOT_PROTOBUF.to_vec()),
    ];
    for (what, path, message) in streams {
        let expected = stream_status(&etcd.members[0].client_url, path, vec![message.clone()]).await;
        let actual = stream_status(&keel.members[0].client_url, path, vec![message]).await;
        answers.push((what, path, expected, actual));
    }
    // Every difference at once: the code, and the text up to Go's protobuf detail.
    let differences: Vec<String> = answers
        .iter()
        .filter(|(_, _, expected, actual)| {
            actual.code() != expected.code() || before_detail(actual.message()) != before_detail(expected.message())
        })
        .map(|(what, path, expected, actual)| {
            format!(
                "{what} on {path}:\n  etcd {:?} {:?}\n  keel {:?} {:?}",
                expected.code(),
                expected.message(),
                actual.code(),
                actual.message()
            )
        })
        .collect();
    assert!(differences.is_empty(), "Keel answers differently from etcd:\n{}", differences.join("\n"));
}

/// A Watch stream still open when the member stops must not hold its shutdown up: the session
/// ends, and the client's half of the stream is let go with it. (Before, the task reading the
/// client's requests kept it, the connection stayed open, and SIGTERM waited for ever.)
#[tokio::test(flavor = "multi_thread")]
async fn an_open_watch_does_not_hold_up_shutdown() {
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let mut client = cluster.client().await;
    let mut stream = client.watch("k", None).await.expect("watch");
    client.put("k", "v", None).await.expect("put");
    let event = tokio::time::timeout(CALL_TIMEOUT, stream.message()).await.expect("an event in time");
    assert!(matches!(event, Ok(Some(_))), "{event:?}");
    let stopped = cluster.terminate_within(0, Duration::from_secs(20)).await.expect("stops in time");
    assert!(stopped.success(), "exit after SIGTERM: {stopped:?}");
}
