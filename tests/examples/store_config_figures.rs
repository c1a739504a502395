//! Store and Config figures on a fresh 3-member Keel cluster on loopback (Store and Config are
//! Keel's own API, so there is no etcd column):
//!
//! - `store`: 32 clients (one connection each, members in turn) write 256-byte records for
//!   10 s, then read them back at random for 10 s; reports ops/s and p50/p99 latency of each.
//! - `watch`: a Config watch on one path (on one member) while another member takes 200 sets of
//!   that path, one every 20 ms; reports p50/p99 from the set being sent to the watch event.
//!
//! `KEEL_BIN=$CARGO_TARGET_DIR/release/keel cargo run --release -p keel-tests --example store_config_figures -- store watch`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel_proto::v1::config_client::ConfigClient;
use keel_proto::v1::store_client::StoreClient;
use keel_proto::v1::{ReadRequest, Record, SetRequest, WatchConfigRequest, WriteRequest};
use keel_tests::{Server, TestCluster};
use tonic::transport::{Channel, Endpoint};

const CLIENTS: usize = 32;
const PHASE: Duration = Duration::from_secs(10);
const VALUE_BYTES: usize = 256;
const WATCH_SETS: usize = 200;
const WATCH_SET_INTERVAL: Duration = Duration::from_millis(20);

#[tokio::main]
async fn main() {
    let mut figures: Vec<String> = std::env::args().skip(1).collect();
    if figures.is_empty() {
        figures = vec!["store".into(), "watch".into()];
    }
    for figure in figures {
        let cluster = TestCluster::start(Server::Keel, 3).await;
        match figure.as_str() {
            "store" => store(&cluster).await,
            "watch" => watch(&cluster).await,
            other => panic!("unknown figure {other:?} (store, watch)"),
        }
    }
}

async fn channel(url: &str) -> Channel {
    let endpoint = Endpoint::from_shared(url.to_string()).expect("url").timeout(Duration::from_secs(10));
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {url}");
}

/// Latencies of one phase, and how many calls failed.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    errors: u64,
}

async fn store(cluster: &TestCluster) {
    let endpoints = cluster.endpoints();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        clients.push(StoreClient::new(channel(&endpoints[c % endpoints.len()]).await));
    }
    let value = vec![b'v'; VALUE_BYTES];

    // Writes: each client its own keys, as fast as they are acknowledged.
    let (written, elapsed) = run_phase(&clients, move |mut client, c, n| {
        let request = WriteRequest {
            database: "bench".into(),
            table: "records".into(),
            record: Some(Record { key: format!("c{c:02}-{n:08}"), value: value.clone(), ..Default::default() }),
            ..Default::default()
        };
        async move { client.write(request).await.is_ok() }
    })
    .await;
    let per_client: Vec<u64> = written.iter().map(|p| p.latencies.len() as u64).collect();
    report("write", &written, elapsed);

    // Reads: each client reads back the keys it wrote, in a scrambled order.
    let per_client = Arc::new(per_client);
    let (read, elapsed) = run_phase(&clients, move |mut client, c, n| {
        let count = per_client[c].max(1);
        // A multiplicative step coprime with most counts visits keys out of order.
        let key = format!("c{c:02}-{:08}", (n.wrapping_mul(2_654_435_761)) % count);
        let request = ReadRequest { database: "bench".into(), table: "records".into(), key, ..Default::default() };
        async move { client.read(request).await.is_ok() }
    })
    .await;
    report("read", &read, elapsed);
}

/// Runs `call` in a loop on every client for [`PHASE`]; returns each client's figures and the
/// wall time.
async fn run_phase<F, Fut>(clients: &[StoreClient<Channel>], call: F) -> (Vec<Phase>, Duration)
where
    F: Fn(StoreClient<Channel>, usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let (client, call, stop) = (client.clone(), call.clone(), stop.clone());
            tokio::spawn(async move {
                let mut phase = Phase::default();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    if call(client.clone(), c, n).await {
                        phase.latencies.push(sent.elapsed());
                    } else {
                        phase.errors += 1;
                    }
                    n += 1;
                }
                phase
            })
        })
        .collect();
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    let mut phases = Vec::new();
    for task in tasks {
        phases.push(task.await.expect("client task"));
    }
    (phases, started.elapsed())
}

fn report(name: &str, phases: &[Phase], elapsed: Duration) {
    let mut latencies: Vec<Duration> = phases.iter().flat_map(|p| p.latencies.iter().copied()).collect();
    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    latencies.sort_unstable();
    println!(
        "keel  store {name}: {CLIENTS} clients, {VALUE_BYTES}-byte values, {:.0} ops/s, p50 {:.2} ms p99 {:.2} ms, {errors} errors",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99)
    );
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn watch(cluster: &TestCluster) {
    let endpoints = cluster.endpoints();
    let mut setter = ConfigClient::new(channel(&endpoints[0]).await);
    let mut watcher = ConfigClient::new(channel(&endpoints[1]).await);
    let path = "bench.watched";
    let request = WatchConfigRequest { path: path.into(), ..Default::default() };
    let mut stream = watcher.watch(request).await.expect("watch").into_inner();
    // The first response is the current value: the watch is in place.
    stream.message().await.expect("watch stream").expect("first response");
    // Room for one latency per set (and the odd repeat): the watcher never waits on the queue.
    let (latency_tx, mut latency_rx) = tokio::sync::mpsc::channel::<Duration>(2 * WATCH_SETS);
    tokio::spawn(async move {
        while let Ok(Some(response)) = stream.message().await {
            let now = unix_nanos();
            // The value is the JSON string of the send time in nanoseconds.
            let sent = serde_json::from_str::<String>(&response.value).ok().and_then(|s| s.parse::<u128>().ok());
            if let Some(sent) = sent {
                let _ = latency_tx.send(Duration::from_nanos(now.saturating_sub(sent) as u64)).await;
            }
        }
    });
    for _ in 0..WATCH_SETS {
        let value = serde_json::Value::String(unix_nanos().to_string()).to_string();
        setter.set(SetRequest { path: path.into(), value, ..Default::default() }).await.expect("set");
        tokio::time::sleep(WATCH_SET_INTERVAL).await;
    }
    let mut latencies = Vec::with_capacity(WATCH_SETS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while latencies.len() < WATCH_SETS && Instant::now() < deadline {
        if let Ok(Some(latency)) = tokio::time::timeout(Duration::from_secs(1), latency_rx.recv()).await {
            latencies.push(latency);
        }
    }
    latencies.sort_unstable();
    println!(
        "keel  config watch: {WATCH_SETS} sets {} ms apart, {} of {WATCH_SETS} events, set→event p50 {:.2} ms p99 {:.2} ms",
        WATCH_SET_INTERVAL.as_millis(),
        latencies.len(),
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99)
    );
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
