//! Events figures on a fresh 3-member Keel cluster on loopback, and the same publish workload
//! on a NATS JetStream server for comparison:
//!
//! - `keel`: 1 and 64 concurrent publishers (one connection each, members in turn), 1 event
//!   per Publish and 100 events per Publish, 256-byte payloads with an id each (as go-micro
//!   publishes), 10 s each: events/s and p50/p99 per Publish call. Then replay: the largest
//!   topic read from offset 0 in pages of 1000, events/s. Then a consumer group of 1 and of 4
//!   consumers on that topic, each event acknowledged (and the ack confirmed), 10 s each.
//! - `nats1`, `nats3`: Debian's `nats-server -js` on 127.0.0.1, one server (stream replicas 1)
//!   or a 3-server cluster (replicas 3, publishers spread over the servers), the same four
//!   publish runs; a batch is 100 async publishes whose acks are all awaited (JetStream 2.9
//!   has no batch publish). JetStream's file store does not fsync each message by default
//!   (`sync_interval` 2 min), so its acks promise less than Keel's.
//!
//! `KEEL_BIN=$CARGO_TARGET_DIR/release/keel cargo run --release -p keel-tests --example events_figures -- keel nats1 nats3`

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::v1::events_client::EventsClient;
use keel_proto::v1::{NewEvent, PublishRequest, ReadEventsRequest};
use keel_tests::{ReservedPort, Server, TestCluster};
use tonic::transport::{Channel, Endpoint};

const PHASE: Duration = Duration::from_secs(10);
const PAYLOAD_BYTES: usize = 256;
const PUBLISHER_COUNTS: [usize; 2] = [1, 64];
const BATCH_SIZES: [usize; 2] = [1, 100];
const REPLAY_PAGE: u32 = 1000;
const GROUP_CONSUMERS: [usize; 2] = [1, 4];

#[tokio::main]
async fn main() {
    let mut figures: Vec<String> = std::env::args().skip(1).collect();
    if figures.is_empty() {
        figures = vec!["keel".into(), "nats1".into(), "nats3".into()];
    }
    for figure in figures {
        match figure.as_str() {
            "keel" => keel().await,
            "nats1" => nats(1).await,
            "nats3" => nats(3).await,
            other => panic!("unknown figure {other:?} (keel, nats1, nats3)"),
        }
    }
}

/// Latencies of one publisher's calls, events acknowledged, and how many calls failed.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    events: u64,
    errors: u64,
}

/// Runs `call(publisher, n)` in a loop on every publisher for [`PHASE`]; `call` answers
/// whether the batch was acknowledged.
async fn run_phase<F, Fut>(publishers: usize, batch: usize, call: F) -> (Vec<Phase>, Duration)
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (call, stop) = (call.clone(), stop.clone());
            tokio::spawn(async move {
                let mut phase = Phase::default();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    if call(p, n).await {
                        phase.latencies.push(sent.elapsed());
                        phase.events += batch as u64;
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
        phases.push(task.await.expect("publisher task"));
    }
    (phases, started.elapsed())
}

fn report(system: &str, publishers: usize, batch: usize, phases: &[Phase], elapsed: Duration) -> u64 {
    let mut latencies: Vec<Duration> = phases.iter().flat_map(|p| p.latencies.iter().copied()).collect();
    let errors: u64 = phases.iter().map(|p| p.errors).sum();
    let events: u64 = phases.iter().map(|p| p.events).sum();
    latencies.sort_unstable();
    println!(
        "{system:<5} publish {publishers:>2} publisher(s), {batch:>3} event(s)/call, {PAYLOAD_BYTES} B: {:>8.0} events/s, per call p50 {:>7.2} ms p99 {:>7.2} ms, {errors} errors",
        events as f64 / elapsed.as_secs_f64(),
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99)
    );
    events
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
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

async fn keel() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let endpoints = cluster.endpoints();
    let payload = vec![b'e'; PAYLOAD_BYTES];
    let mut largest = (String::new(), 0u64);
    for publishers in PUBLISHER_COUNTS {
        let mut clients = Vec::new();
        for p in 0..publishers {
            clients.push(EventsClient::new(channel(&endpoints[p % endpoints.len()]).await));
        }
        let clients = Arc::new(clients);
        for batch in BATCH_SIZES {
            let topic = format!("bench-{publishers}-{batch}");
            let (clients, payload, name) = (clients.clone(), payload.clone(), topic.clone());
            let (phases, elapsed) = run_phase(publishers, batch, move |p, n| {
                let mut client = clients[p].clone();
                let events = (0..batch)
                    .map(|k| NewEvent { id: format!("{p}-{n}-{k}"), payload: payload.clone(), ..Default::default() })
                    .collect();
                let request = PublishRequest { topic: name.clone(), events };
                async move { client.publish(request).await.is_ok() }
            })
            .await;
            let events = report("keel", publishers, batch, &phases, elapsed);
            if events > largest.1 {
                largest = (topic, events);
            }
        }
    }

    // Replay: the largest topic from offset 0, a page at a time, through one member.
    let (topic, _) = largest;
    let mut client = EventsClient::new(channel(&endpoints[1]).await).max_decoding_message_size(64 << 20);
    let started = Instant::now();
    let (mut offset, mut read) = (0u64, 0u64);
    loop {
        let request = ReadEventsRequest { topic: topic.clone(), offset, since_ms: 0, limit: REPLAY_PAGE };
        let page = client.read(request).await.expect("read a page").into_inner();
        read += page.events.len() as u64;
        offset = page.next_offset;
        if page.events.len() < REPLAY_PAGE as usize {
            break;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "keel  replay {read} events of {topic:?} in pages of {REPLAY_PAGE}: {:.0} events/s ({:.2} s)",
        read as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    for consumers in GROUP_CONSUMERS {
        group_consume(&endpoints, &topic, read, consumers).await;
    }
}

/// A new group of `consumers` (keel-client, one per member in turn) consumes the `total` events
/// of `topic` from the start (for at most [`PHASE`]), acknowledging each event and waiting for
/// the ack's confirmation: acknowledged events/s until the last ack.
async fn group_consume(endpoints: &[String], topic: &str, total: u64, consumers: usize) {
    use futures::StreamExt;
    use keel_client::events::{ConsumeOptions, Events, GrpcEvents};
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + PHASE;
    let group = format!("figures-{consumers}");
    let tasks: Vec<_> = (0..consumers)
        .map(|c| {
            let mut endpoints = endpoints.to_vec();
            let members = endpoints.len();
            endpoints.rotate_left(c % members);
            let (topic, group, acked) = (topic.to_string(), group.clone(), acked.clone());
            // Every consumer stops once the group has acknowledged everything.
            let all_acked = acked.clone();
            tokio::spawn(async move {
                let events = GrpcEvents::connect(&endpoints).await.expect("client");
                let options = ConsumeOptions { group: Some(group), ..ConsumeOptions::default() };
                let mut subscription = events.consume(&topic, options).await.expect("subscribe");
                // Acks run concurrently with receiving, as a consumer with parallel handlers would.
                let mut pending = futures::stream::FuturesUnordered::new();
                loop {
                    tokio::select! {
                        delivery = subscription.next() => match delivery {
                            Some(Ok(delivery)) => pending.push(async move { delivery.ack().await.is_ok() }),
                            _ => break,
                        },
                        Some(ok) = pending.next(), if !pending.is_empty() => {
                            if acked.fetch_add(u64::from(ok), Ordering::Relaxed) + u64::from(ok) >= total {
                                break;
                            }
                        }
                        _ = tokio::time::sleep_until(deadline.into()) => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {
                            if all_acked.load(Ordering::Relaxed) >= total {
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let acked = acked.load(Ordering::Relaxed);
    println!(
        "keel  group consume, {consumers} consumer(s), ack each: {acked} events in {:.1} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        acked as f64 / elapsed.as_secs_f64()
    );
}

/// `nats-server` children, killed when dropped.
struct NatsServers {
    children: Vec<Child>,
    _ports: Vec<ReservedPort>,
    _store: tempfile::TempDir,
}

impl Drop for NatsServers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `size` JetStream servers on 127.0.0.1, clustered when more than one; answers their
/// client URLs, or `None` when `nats-server` is not installed.
fn start_nats(size: usize) -> Option<(NatsServers, Vec<String>)> {
    let store = tempfile::tempdir().expect("temp dir");
    // Held as long as the servers run (nats-server's listeners set SO_REUSEADDR, as ours do).
    let reserved: Vec<ReservedPort> = (0..2 * size).map(|_| ReservedPort::new()).collect();
    let ports: Vec<(u16, u16)> = reserved.chunks(2).map(|pair| (pair[0].port(), pair[1].port())).collect();
    let routes = ports.iter().map(|(_, cluster)| format!("nats://127.0.0.1:{cluster}")).collect::<Vec<_>>().join(",");
    let mut servers = NatsServers { children: Vec::new(), _ports: reserved, _store: store };
    for (i, (client, cluster)) in ports.iter().enumerate() {
        let mut command = Command::new("nats-server");
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &client.to_string(), "-n", &format!("n{i}"), "-sd"])
            .arg(servers._store.path().join(format!("n{i}")));
        if size > 1 {
            command.args(["--cluster_name", "bench", "--cluster", &format!("nats://127.0.0.1:{cluster}")]);
            command.args(["--routes", &routes]);
        }
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
        servers.children.push(child);
    }
    let urls = ports.iter().map(|(client, _)| format!("nats://127.0.0.1:{client}")).collect();
    Some((servers, urls))
}

async fn nats_connect(url: &str) -> async_nats::Client {
    for _ in 0..100 {
        if let Ok(client) = async_nats::connect(url).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot connect to {url}");
}

/// The publish runs on `size` JetStream servers, the stream on `size` replicas.
async fn nats(size: usize) {
    let system = format!("nats{size}");
    let Some((_servers, urls)) = start_nats(size) else {
        println!("{system} skipped: nats-server is not installed (apt-get install -y nats-server)");
        return;
    };
    let jetstream = async_nats::jetstream::new(nats_connect(&urls[0]).await);
    let config = async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.>".into()],
        num_replicas: size,
        ..Default::default()
    };
    // A JetStream cluster needs its meta leader before it takes a stream.
    let mut created = Err(String::new());
    for _ in 0..150 {
        created = jetstream.get_or_create_stream(config.clone()).await.map(drop).map_err(|e| e.to_string());
        if created.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    created.unwrap_or_else(|e| panic!("{system}: create the stream: {e}"));

    let payload = bytes::Bytes::from(vec![b'e'; PAYLOAD_BYTES]);
    for publishers in PUBLISHER_COUNTS {
        // One connection per publisher, servers in turn, as for Keel.
        let mut contexts = Vec::new();
        for p in 0..publishers {
            contexts.push(async_nats::jetstream::new(nats_connect(&urls[p % urls.len()]).await));
        }
        let contexts = Arc::new(contexts);
        for batch in BATCH_SIZES {
            let subject = format!("bench.{publishers}.{batch}");
            let (contexts, payload) = (contexts.clone(), payload.clone());
            let (phases, elapsed) = run_phase(publishers, batch, move |p, _| {
                let (jetstream, payload, subject) = (contexts[p].clone(), payload.clone(), subject.clone());
                async move {
                    let mut acks = Vec::with_capacity(batch);
                    for _ in 0..batch {
                        match jetstream.publish(subject.clone(), payload.clone()).await {
                            Ok(ack) => acks.push(ack),
                            Err(_) => return false,
                        }
                    }
                    for ack in acks {
                        if ack.await.is_err() {
                            return false;
                        }
                    }
                    true
                }
            })
            .await;
            report(&system, publishers, batch, &phases, elapsed);
        }
    }
}
