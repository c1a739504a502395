//! First put figures: starts a fresh 3-member Keel cluster and a fresh 3-member etcd 3.4
//! cluster on loopback (same flags, same filesystem), drives each with closed-loop put clients
//! (256-byte values over 10,000 keys) and prints throughput and p50/p99 latency side by side.
//! The full instrument is `keel-bench` (benches/); this is the stop-gap until it lands.
//!
//! `KEEL_BIN=target/release/keel cargo run --release -p keel-tests --example compare_put -- 1 64`
//! (`MEMBERS=1` for single-member clusters, `LEADER_ONLY=1` to send every client to the leader.)

use std::time::{Duration, Instant};

use keel_tests::{connect, Server, TestCluster};

const DURATION: Duration = Duration::from_secs(10);
const VALUE_BYTES: usize = 256;
const KEYS: usize = 10_000;

struct Figures {
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn drive(cluster: &TestCluster, clients: usize) -> Figures {
    let mut endpoints = cluster.endpoints();
    if std::env::var("LEADER_ONLY").is_ok() {
        endpoints = vec![endpoints[cluster.leader().await].clone()];
    }
    let mut tasks = Vec::new();
    let deadline = Instant::now() + DURATION;
    for c in 0..clients {
        // Every client on its own connection, spread over the members as etcd clients are.
        let mut client = connect(&[endpoints[c % endpoints.len()].clone()]).await;
        tasks.push(tokio::spawn(async move {
            let value = vec![b'v'; VALUE_BYTES];
            let mut latencies = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let started = Instant::now();
                if client.put(format!("key-{:05}", i % KEYS), value.clone(), None).await.is_ok() {
                    latencies.push(started.elapsed());
                }
                i += clients;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Figures {
        ops_per_s: latencies.len() as f64 / DURATION.as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    }
}

#[tokio::main]
async fn main() {
    let client_counts: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let client_counts = if client_counts.is_empty() { vec![1, 64] } else { client_counts };
    println!("{:<6} {:>8} {:>12} {:>9} {:>9}", "system", "clients", "puts/s", "p50 ms", "p99 ms");
    for clients in client_counts {
        for server in [Server::Etcd, Server::Keel] {
            let members = std::env::var("MEMBERS").ok().and_then(|m| m.parse().ok()).unwrap_or(3);
            let cluster = TestCluster::start(server, members).await;
            let figures = drive(&cluster, clients).await;
            println!(
                "{:<6} {:>8} {:>12.0} {:>9.2} {:>9.2}",
                format!("{server:?}").to_lowercase(),
                clients,
                figures.ops_per_s,
                figures.p50_ms,
                figures.p99_ms
            );
        }
    }
}
