//! Issue-3 figures, side by side on a fresh 3-member etcd 3.4 cluster and a fresh 3-member Keel
//! cluster on loopback:
//!
//! - `keepalive`: 10,000 registrations (a TTL-10 s lease + a go-micro-layout key each), kept
//!   alive every TTL/3 over 100 connections with one LeaseKeepAlive stream each, as 100 service
//!   processes would; reports the CPU the three members use per second of keep-alives
//!   (from /proc, user + system), and how many keep-alives came back with TTL 0 (must be 0).
//! - `fanout`: 1,000 watchers on one prefix (20 connections, members in turn), then 200 puts
//!   one every 20 ms; reports p50/p99 from put to event over every delivery.
//!
//! `KEEL_BIN=$CARGO_TARGET_DIR/release/keel cargo run --release -p keel-tests --example lease_watch_figures -- keepalive fanout`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{PutOptions, WatchOptions};
use keel_proto::etcd::{PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse};
use keel_tests::{connect, Server, TestCluster};
use tokio_stream::StreamExt;

const REGISTRATIONS: usize = 10_000;
const LEASE_TTL_SECS: i64 = 10;
const KEEPALIVE_CONNECTIONS: usize = 100;
const CPU_WINDOW: Duration = Duration::from_secs(30);
const WATCHERS: usize = 1_000;
const WATCH_CONNECTIONS: usize = 20;
const FANOUT_PUTS: usize = 200;

#[tokio::main]
async fn main() {
    let figures: Vec<String> = std::env::args().skip(1).collect();
    for figure in figures {
        for server in [Server::Etcd, Server::Keel] {
            let cluster = TestCluster::start(server, 3).await;
            let name = format!("{server:?}").to_lowercase();
            match figure.as_str() {
                "keepalive" => keepalive(&cluster, &name).await,
                "fanout" => fanout(&cluster, &name).await,
                other => panic!("unknown figure {other:?} (keepalive, fanout)"),
            }
        }
    }
}

async fn keepalive(cluster: &TestCluster, name: &str) {
    let endpoints = cluster.endpoints();
    let leases = register_all(&endpoints).await;
    let lost = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (c, chunk) in leases.chunks(REGISTRATIONS / KEEPALIVE_CONNECTIONS).enumerate() {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let (chunk, lost, sent) = (chunk.to_vec(), lost.clone(), sent.clone());
        tasks.push(tokio::spawn(async move { keep_alive_loop(endpoint, chunk, lost, sent).await }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pids: Vec<u32> = cluster.members.iter().filter_map(|m| m.pid()).collect();
    let (cpu_before, sent_before) = (cpu_secs(&pids), sent.load(Ordering::Relaxed));
    tokio::time::sleep(CPU_WINDOW).await;
    let (cpu_after, sent_after) = (cpu_secs(&pids), sent.load(Ordering::Relaxed));
    for task in tasks {
        task.abort();
    }
    let cpu_percent = (cpu_after - cpu_before) / CPU_WINDOW.as_secs_f64() * 100.0;
    let rate = (sent_after - sent_before) as f64 / CPU_WINDOW.as_secs_f64();
    println!(
        "{name:<5} keepalive: {REGISTRATIONS} leases ttl {LEASE_TTL_SECS}s, {rate:.0} keep-alives/s, cluster CPU {cpu_percent:.1}% of one core (3 members), TTL-0 answers {}",
        lost.load(Ordering::Relaxed)
    );
}

/// Grants every lease and puts its registration key, 64 at a time.
async fn register_all(endpoints: &[String]) -> Vec<i64> {
    let mut tasks = Vec::new();
    for t in 0..64 {
        let client = connect(&[endpoints[t % endpoints.len()].clone()]).await;
        tasks.push(tokio::spawn(async move {
            let mut client = client;
            let mut leases = Vec::new();
            for i in (t..REGISTRATIONS).step_by(64) {
                let lease = client.lease_grant(LEASE_TTL_SECS, None).await.expect("grant").id();
                let key = format!("/micro/registry/svc-{}/node-{i}", i % 100);
                let value = format!(r#"{{"name":"svc-{}","version":"1","metadata":null,"endpoints":null,"nodes":[{{"id":"node-{i}","address":"127.0.0.1:1","metadata":null}}]}}"#, i % 100);
                client.put(key, value, Some(PutOptions::new().with_lease(lease))).await.expect("put");
                leases.push(lease);
            }
            leases
        }));
    }
    let mut leases = Vec::new();
    for task in tasks {
        leases.extend(task.await.expect("register task"));
    }
    leases
}

/// One LeaseKeepAlive stream renewing `leases`, each every TTL/3, spread evenly.
async fn keep_alive_loop(endpoint: String, leases: Vec<i64>, lost: Arc<AtomicU64>, sent: Arc<AtomicU64>) {
    let channel = tonic::transport::Endpoint::from_shared(endpoint).expect("url").connect().await.expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let (sender, receiver) = tokio::sync::mpsc::channel::<PbLeaseKeepAliveRequest>(1024);
    // Requests start flowing before the call returns: grpc-go (etcd) sends the response
    // headers only with its first answer.
    tokio::spawn(async move {
        let period = Duration::from_secs_f64(LEASE_TTL_SECS as f64 / 3.0);
        let pause = period / leases.len() as u32;
        loop {
            for id in &leases {
                if sender.send(PbLeaseKeepAliveRequest { id: *id }).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
            }
        }
    });
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
    let codec = tonic_prost::ProstCodec::<PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse>::default();
    let requests = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut responses = grpc.streaming(tonic::Request::new(requests), path, codec).await.expect("stream").into_inner();
    while let Some(Ok(response)) = responses.next().await {
        if response.ttl == 0 {
            lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// User + system CPU seconds of the processes so far (/proc/<pid>/stat, fields 14 and 15).
fn cpu_secs(pids: &[u32]) -> f64 {
    let ticks_per_sec = 100.0; // USER_HZ, fixed at 100 on Linux.
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // The command name may hold spaces; fields are counted after its closing ')'.
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / ticks_per_sec
        })
        .sum()
}

async fn fanout(cluster: &TestCluster, name: &str) {
    let endpoints = cluster.endpoints();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(WATCHERS);
    // Room for every delivery the run can produce: watchers never wait on the queue, which is
    // only drained once the puts are done.
    let (latency_tx, mut latency_rx) = tokio::sync::mpsc::channel::<Duration>(WATCHERS * FANOUT_PUTS);
    for c in 0..WATCH_CONNECTIONS {
        let mut client = connect(&[endpoints[c % endpoints.len()].clone()]).await;
        for _ in 0..WATCHERS / WATCH_CONNECTIONS {
            let mut stream = client.watch("/fanout/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
            let (ready_tx, latency_tx) = (ready_tx.clone(), latency_tx.clone());
            tokio::spawn(async move {
                let _ = ready_tx.send(()).await;
                while let Some(Ok(response)) = stream.next().await {
                    let now = unix_nanos();
                    for event in response.events() {
                        let sent: u128 = event.kv().and_then(|kv| kv.value_str().ok()?.parse().ok()).unwrap_or(now);
                        let _ = latency_tx.send(Duration::from_nanos((now.saturating_sub(sent)) as u64)).await;
                    }
                }
            });
        }
    }
    for _ in 0..WATCHERS {
        ready_rx.recv().await.expect("watcher ready");
    }
    let mut writer = connect(&endpoints).await;
    for i in 0..FANOUT_PUTS {
        writer.put(format!("/fanout/{}", i % 10), unix_nanos().to_string(), None).await.expect("put");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected = WATCHERS * FANOUT_PUTS;
    let mut latencies = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.len() < expected && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), latency_rx.recv()).await {
            Ok(Some(latency)) => latencies.push(latency),
            _ => continue,
        }
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{name:<5} fanout: {WATCHERS} watchers, {FANOUT_PUTS} puts, {} of {expected} events delivered, put→event p50 {:.2} ms p99 {:.2} ms",
        latencies.len(),
        percentile(0.50),
        percentile(0.99)
    );
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
