//! Consuming event logs on a real 3-member cluster: keelctl publishers and consumer groups
//! across kill -9 of every member, a three-consumer group across kill -9 of the leader
//! (at least once, nothing acknowledged redelivered), retention, and the client's conformance
//! and Broker suites over gRPC.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_client::events::{ConsumeOptions, ConsumeStart, Events, GrpcEvents, OutgoingEvent};
use keel_tests::{keelctl, wait_for, Server, TestCluster, READY_TIMEOUT};
use serde_json::Value;

/// Publishers in the keelctl test, and events each publishes (one keelctl run per event).
const PUBLISHERS: usize = 4;
const EVENTS_PER_PUBLISHER: usize = 150;
/// How long the tests wait for a consumer to have seen what it should.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);

/// `keelctl -o json events read` of the whole topic: offset → payload.
fn read_all(cluster: &TestCluster, topic: &str) -> BTreeMap<u64, String> {
    let out = keelctl(cluster, &["-o", "json", "events", "read", topic, "--limit", "10000"]);
    assert_eq!(out.exited, Some(true), "events read: {}", out.stderr);
    json_lines(&out.stdout).map(|event| (offset(&event), event["payload"].as_str().unwrap_or("").to_string())).collect()
}

fn json_lines(stdout: &str) -> impl Iterator<Item = Value> + '_ {
    stdout.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
}

fn offset(event: &Value) -> u64 {
    event["offset"].as_u64().unwrap_or_else(|| panic!("no offset in {event}"))
}

/// `keelctl events consume` until `count` events, as (offset, payload) in delivery order.
fn consume(cluster: &TestCluster, topic: &str, group: &str, start: &str, count: usize) -> Vec<(u64, String)> {
    let count = count.to_string();
    let args = ["-o", "json", "events", "consume", topic, "--group", group, "--start", start, "--count", &count];
    let out = keelctl(cluster, &args);
    assert_eq!(out.exited, Some(true), "events consume: {}", out.stderr);
    json_lines(&out.stdout).map(|event| (offset(&event), event["payload"].as_str().unwrap_or("").to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keelctl_publishers_and_consumer_groups_survive_kill9_of_every_member() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let cluster_ref = &cluster;

    // Phase 1: four publishers at once, each event one `keelctl events publish`.
    let acked: BTreeMap<u64, String> = std::thread::scope(|scope| {
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                scope.spawn(move || {
                    (0..EVENTS_PER_PUBLISHER)
                        .map(|k| {
                            let payload = format!("p{p}-{k:03}");
                            let out = keelctl(cluster_ref, &["events", "publish", "orders", &payload]);
                            assert_eq!(out.exited, Some(true), "publish {payload}: {}", out.stderr);
                            let offset: u64 = out.stdout.trim().parse().expect("an offset");
                            (offset, payload)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut acked = BTreeMap::new();
        for publisher in publishers {
            for (offset, payload) in publisher.join().expect("publisher thread") {
                assert!(acked.insert(offset, payload).is_none(), "offset {offset} acknowledged twice");
            }
        }
        acked
    });
    let total = PUBLISHERS * EVENTS_PER_PUBLISHER;
    assert_eq!(acked.keys().copied().collect::<Vec<_>>(), (0..total as u64).collect::<Vec<_>>(), "offsets not dense");
    assert_eq!(read_all(&cluster, "orders"), acked, "what is read is what was acknowledged");

    // Phase 2: a group consumes everything (each event acknowledged before the next is counted).
    let consumed: BTreeSet<u64> =
        consume(&cluster, "orders", "billing", "earliest", total).into_iter().map(|(o, _)| o).collect();
    assert_eq!(consumed.len(), total, "the group saw every event once");

    // Phase 3: kill -9 of every member; everything acknowledged is still there.
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_ready().await;
    assert_eq!(read_all(&cluster, "orders"), acked, "after kill -9 of every member");

    // Phase 4: the group resumes at the first new event; a new group replays everything.
    let out = keelctl(&cluster, &["events", "publish", "orders", "after the crash"]);
    assert_eq!(out.stdout.trim(), total.to_string(), "the log goes on where it stopped: {}", out.stderr);
    assert_eq!(consume(&cluster, "orders", "billing", "earliest", 1), [(total as u64, "after the crash".to_string())]);
    let replay = consume(&cluster, "orders", "audit", "earliest", total + 1);
    assert_eq!(replay.iter().map(|(o, _)| *o).collect::<Vec<_>>(), (0..=total as u64).collect::<Vec<_>>());
    assert_eq!(replay[7].1, acked[&7], "a replayed payload");

    // Phase 5: group info tells where each group is.
    let out = keelctl(&cluster, &["-o", "json", "events", "groups", "orders"]);
    let groups: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    for group in groups.as_array().expect("an array") {
        assert_eq!(group["ack_floor"], total as u64 + 1, "{group}");
        assert_eq!(group["lag"], 0, "{group}");
    }
}

/// What one consumer of the group saw.
#[derive(Default)]
struct Seen {
    /// Every delivery received, in order: (offset, delivery count).
    deliveries: Vec<(u64, u32)>,
    /// Offsets whose ack the cluster confirmed.
    acked: BTreeSet<u64>,
    /// Deliveries of an offset after this same consumer's ack of it was confirmed.
    after_own_ack: Vec<u64>,
}

/// A consumer of group `workers` that acks everything, recording what it sees.
fn spawn_consumer(endpoints: Vec<String>, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let events = GrpcEvents::connect(&endpoints).await.expect("client");
        let options = ConsumeOptions {
            group: Some("workers".into()),
            start: ConsumeStart::Earliest,
            ack_wait: Some(Duration::from_secs(3)),
            max_in_flight: Some(20),
            ..ConsumeOptions::default()
        };
        let mut subscription = events.consume("jobs", options).await.expect("subscribe");
        while let Some(delivery) = subscription.next().await {
            let Ok(delivery) = delivery else { continue };
            let offset = delivery.event.offset;
            {
                let mut seen = seen.lock().expect("seen");
                if seen.acked.contains(&offset) {
                    seen.after_own_ack.push(offset);
                }
                seen.deliveries.push((offset, delivery.deliveries));
            }
            if delivery.ack().await.is_ok() {
                seen.lock().expect("seen").acked.insert(offset);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_consumer_group_gets_every_event_across_kill9_of_the_leader_and_no_acked_one_again() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let publisher = GrpcEvents::connect(&cluster.endpoints()).await.expect("client");
    let total: u64 = 600;
    let publish = |from: u64, to: u64| {
        let publisher = publisher.clone();
        async move {
            for chunk in (from..to).collect::<Vec<_>>().chunks(10) {
                let batch =
                    chunk.iter().map(|n| OutgoingEvent::with_id(format!("job-{n}"), format!("job-{n}"))).collect();
                retry(|| publisher.publish_batch("jobs", Vec::clone(&batch))).await;
            }
        }
    };
    publish(0, total / 2).await;

    // Three consumers, each starting on a different member.
    let seen: Vec<Arc<Mutex<Seen>>> = (0..3).map(|_| Arc::default()).collect();
    let consumers: Vec<_> = (0..3)
        .map(|i| {
            let mut endpoints = cluster.endpoints();
            endpoints.rotate_left(i);
            spawn_consumer(endpoints, seen[i].clone())
        })
        .collect();
    let acked_count = || seen.iter().map(|s| s.lock().expect("seen").acked.len()).sum::<usize>();
    wait_for(CONSUME_TIMEOUT, "a third of the events acknowledged", || async { acked_count() as u64 >= total / 3 })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));

    // Kill -9 of the leader mid-consumption, and more events while it is down and after.
    let leader = cluster.leader().await;
    cluster.kill9(leader);
    publish(total / 2, total).await;
    cluster.start_member(leader);

    // Done when the group has acknowledged everything (an ack whose confirmation was lost with
    // a member is acknowledged without the consumer knowing) and every event was delivered.
    let delivered_offsets = || -> BTreeSet<u64> {
        seen.iter()
            .flat_map(|s| s.lock().expect("seen").deliveries.iter().map(|(o, _)| *o).collect::<Vec<_>>())
            .collect()
    };
    let done = wait_for(CONSUME_TIMEOUT, "every event delivered and acknowledged by the group", || async {
        let groups = publisher.groups("jobs").await.unwrap_or_default();
        let floor = groups.iter().find(|g| g.group == "workers").map(|g| g.ack_floor);
        floor == Some(total) && delivered_offsets().len() as u64 == total
    })
    .await;
    if let Err(e) = done {
        let groups = publisher.groups("jobs").await;
        let (acked, delivered) = (acked_count(), delivered_offsets().len());
        panic!("{e}: {acked} acked, {delivered} delivered, group {groups:?}\n{}", cluster.all_logs());
    }

    // Quiet for longer than the ack wait: nothing acknowledged comes back.
    let quiet_from: Vec<usize> = seen.iter().map(|s| s.lock().expect("seen").deliveries.len()).collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for consumer in consumers {
        consumer.abort();
    }
    let mut delivered: BTreeMap<u64, u32> = BTreeMap::new();
    for (i, seen) in seen.iter().enumerate() {
        let seen = seen.lock().expect("seen");
        assert!(seen.after_own_ack.is_empty(), "consumer {i} got {:?} again after acking them", seen.after_own_ack);
        assert_eq!(seen.deliveries.len(), quiet_from[i], "consumer {i}: deliveries after everything was acknowledged");
        for (offset, _) in &seen.deliveries {
            *delivered.entry(*offset).or_default() += 1;
        }
    }
    assert_eq!(delivered.keys().copied().collect::<Vec<_>>(), (0..total).collect::<Vec<_>>(), "every event delivered");
    let redelivered = delivered.values().filter(|n| **n > 1).count();
    eprintln!("{total} events, {redelivered} delivered more than once (the killed member's unacknowledged ones)");
}

/// Retries `call` until it succeeds (a publish with ids is safe to repeat), up to the ready timeout.
async fn retry<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = keel_client::Result<T>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match call().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("gave up: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_trims_the_oldest_events_and_groups_skip_them() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    for n in 0..20 {
        let out = keelctl(&cluster, &["events", "publish", "metrics", &format!("m{n}")]);
        assert_eq!(out.exited, Some(true), "{}", out.stderr);
    }
    let out = keelctl(&cluster, &["events", "retention", "metrics", "--max-events", "5"]);
    assert_eq!(out.exited, Some(true), "{}", out.stderr);
    wait_for(Duration::from_secs(10), "the topic trimmed to 5 events", || async {
        read_all(&cluster, "metrics").keys().copied().collect::<Vec<_>>() == (15..20).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", read_all(&cluster, "metrics")));
    let out = keelctl(&cluster, &["-o", "json", "events", "topics"]);
    let topics: Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(topics[0]["first_offset"], 15, "{topics}");
    // A new group from the earliest event starts at the first one kept.
    let consumed = consume(&cluster, "metrics", "late", "earliest", 5);
    assert_eq!(consumed.first(), Some(&(15, "m15".to_string())));
    let out = keelctl(&cluster, &["events", "retention", "metrics", "--max-events", "-1"]);
    assert_eq!(out.exited, Some(false), "a negative limit is refused: {out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_events_pass_the_conformance_suite() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let events = GrpcEvents::connect(&cluster.endpoints()).await.expect("client");
    keel_client::events::conformance::run(Arc::new(events)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_over_grpc_events_passes_the_broker_suite() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let events = GrpcEvents::connect(&cluster.endpoints()).await.expect("client");
    let broker = keel_client::broker::EventsBroker::new(Arc::new(events));
    keel_client::broker::conformance::run(Arc::new(broker)).await;
}
