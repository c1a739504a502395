//! Native event logs (`keel.v1.Events`) over a real cluster, the log's own guarantees: offsets
//! are dense per topic and survive kill -9 of every member, a publish with a known id is
//! answered with its first offset instead of being appended again, and timestamps never go
//! backwards across a failover. Events as etcd keys and bad input: `events_etcd.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_proto::v1::events_client::EventsClient;
use keel_tests::{Server, TestCluster};
use tonic::transport::Channel;

#[path = "support/events.rs"]
mod support;

use support::*;

/// Concurrent publishers in the density test, and events each publishes.
const PUBLISHERS: usize = 4;
const EVENTS_PER_PUBLISHER: usize = 150;

/// Batch sizes each publisher cycles through: single events between batches.
const BATCH_SIZES: [usize; 6] = [1, 7, 1, 1, 20, 3];

/// Publishes [`EVENTS_PER_PUBLISHER`] events, starting on member `publisher % 3`; an id per
/// event makes a retried publish safe. Answers (offset, payload) of each acknowledged event.
async fn run_publisher(clients: Vec<EventsClient<Channel>>, topic: &str, publisher: usize) -> Vec<(u64, Vec<u8>)> {
    let client = &clients[publisher % clients.len()];
    let mut acked = Vec::new();
    let mut n = 0;
    let mut batch = 0;
    while n < EVENTS_PER_PUBLISHER {
        let size = BATCH_SIZES[batch % BATCH_SIZES.len()].min(EVENTS_PER_PUBLISHER - n);
        batch += 1;
        let payloads: Vec<Vec<u8>> = (n..n + size).map(|k| format!("p{publisher}-{k:03}").into_bytes()).collect();
        let new_events = payloads.iter().map(|p| new_event(std::str::from_utf8(p).expect("ascii"), p)).collect();
        let response = publish(client, publish_request(topic, new_events)).await;
        for (published, payload) in response.events.iter().zip(payloads) {
            assert!(
                !published.duplicate,
                "publisher {publisher}: a first publish answered as a duplicate: {response:?}"
            );
            acked.push((published.offset, payload));
        }
        // One replicated command: a batch gets consecutive offsets.
        let offsets: Vec<u64> = response.events.iter().map(|p| p.offset).collect();
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "publisher {publisher}: a batch got {offsets:?}");
        n += size;
    }
    acked
}

/// Member `i` serves exactly the acknowledged events of `topic`, densely from 0.
async fn assert_serves_exactly(cluster: &TestCluster, i: usize, topic: &str, acked: &BTreeMap<u64, Vec<u8>>) {
    let client = events(cluster, i);
    // Pages of 250 do not divide 600: the last page is short.
    let read = read_all(&client, topic, 250).await;
    let offsets: Vec<u64> = read.iter().map(|e| e.offset).collect();
    assert!(
        gaps(&offsets).is_empty(),
        "member {i}: offsets not dense from 0, e.g. (index, offset) {:?}",
        gaps(&offsets)
    );
    assert_eq!(read.len(), acked.len(), "member {i}: {} events read, {} acknowledged", read.len(), acked.len());
    for event in &read {
        let expected = &acked[&event.offset];
        assert_eq!(&event.payload, expected, "member {i}: payload at offset {}", event.offset);
        assert_eq!(event.id.as_bytes(), expected.as_slice(), "member {i}: id at offset {}", event.offset);
        assert_eq!(event.topic, topic, "member {i}: topic at offset {}", event.offset);
    }
    let backwards: Vec<(u64, i64, i64)> = read
        .windows(2)
        .filter(|w| w[1].timestamp_ms < w[0].timestamp_ms)
        .map(|w| (w[1].offset, w[0].timestamp_ms, w[1].timestamp_ms))
        .collect();
    assert!(backwards.is_empty(), "member {i}: timestamps go backwards at (offset, before, after) {backwards:?}");
    let listed = topics(&client).await;
    assert_eq!(listed, [topic_info(topic, 0, acked.len() as u64)], "member {i}: topics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_get_dense_offsets_that_survive_kill9_of_every_member() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let topic = "orders";
    let clients: Vec<EventsClient<Channel>> = (0..3).map(|i| events(&cluster, i)).collect();

    // Phase 1: four publishers at once, spread over the members.
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let clients = clients.clone();
            tokio::spawn(async move { run_publisher(clients, topic, publisher).await })
        })
        .collect();
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (publisher, task) in tasks.into_iter().enumerate() {
        let answers = task.await.expect("publisher task");
        let offsets: Vec<u64> = answers.iter().map(|(offset, _)| *offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "publisher {publisher}: offsets not increasing: {offsets:?}");
        for (offset, payload) in answers {
            if let Some(other) = acked.insert(offset, payload.clone()) {
                panic!(
                    "offset {offset} acknowledged twice: {:?} and {:?}",
                    String::from_utf8_lossy(&other),
                    String::from_utf8_lossy(&payload)
                );
            }
        }
    }
    let total = PUBLISHERS * EVENTS_PER_PUBLISHER;
    let offsets: Vec<u64> = acked.keys().copied().collect();
    assert_eq!(offsets, (0..total as u64).collect::<Vec<_>>(), "acknowledged offsets are not exactly 0..{total}");

    // Phase 2: every member reads exactly what was acknowledged.
    for i in 0..3 {
        assert_serves_exactly(&cluster, i, topic, &acked).await;
    }

    // Phase 3: kill -9 of every member, then all restart on their data dirs.
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_ready().await;
    for i in 0..3 {
        assert_serves_exactly(&cluster, i, topic, &acked).await;
    }

    // Phase 4: the log goes on where it stopped: no offset reused, none skipped; and the ids
    // published before the crash are still known (well inside the de-duplication window).
    let next = publish(&events(&cluster, 1), publish_request(topic, vec![new_event("", b"after the crash")])).await;
    assert_eq!(next.events[0].offset, total as u64, "the first offset after the restart: {next:?}");
    let (offset, payload) = acked.iter().nth(total / 2).expect("an acknowledged event");
    let id = std::str::from_utf8(payload).expect("ascii ids");
    let again = publish(&events(&cluster, 2), publish_request(topic, vec![new_event(id, payload)])).await;
    assert_eq!(
        (again.events[0].offset, again.events[0].duplicate),
        (*offset, true),
        "{id} after the restart: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_published_again_is_answered_with_its_first_offset_and_not_appended() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let first = events(&cluster, 0);
    let topic = "payments";

    // Phase 1: the first publish appends; the same id again, through the same or another
    // member and with another payload, answers the same offset as a duplicate.
    let answer = publish(&first, publish_request(topic, vec![new_event("pay-1", b"original")])).await;
    assert_eq!((answer.events[0].offset, answer.events[0].duplicate), (0, false), "{answer:?}");
    for member in [0, 2, 1] {
        let again =
            publish(&events(&cluster, member), publish_request(topic, vec![new_event("pay-1", b"retry")])).await;
        assert_eq!(
            (again.events[0].offset, again.events[0].duplicate),
            (0, true),
            "through member {member}: {again:?}"
        );
    }

    // Phase 2: in a batch only the new events are appended, densely; events without an id
    // are never de-duplicated; the same id on another topic is another event.
    let batch = vec![
        new_event("pay-1", b"retry in a batch"),
        new_event("pay-2", b"second"),
        new_event("", b"anonymous"),
        new_event("", b"anonymous"),
    ];
    let answer = publish(&events(&cluster, 1), publish_request(topic, batch)).await;
    let answered: Vec<(u64, bool)> = answer.events.iter().map(|p| (p.offset, p.duplicate)).collect();
    assert_eq!(answered, [(0, true), (1, false), (2, false), (3, false)], "{answer:?}");
    let elsewhere = publish(&first, publish_request("refunds", vec![new_event("pay-1", b"a refund")])).await;
    assert_eq!((elsewhere.events[0].offset, elsewhere.events[0].duplicate), (0, false), "{elsewhere:?}");

    let read = read_all(&first, topic, 0).await;
    let stored: Vec<(u64, &str, &[u8])> =
        read.iter().map(|e| (e.offset, e.id.as_str(), e.payload.as_slice())).collect();
    assert_eq!(
        stored,
        [(0, "pay-1", &b"original"[..]), (1, "pay-2", b"second"), (2, "", b"anonymous"), (3, "", b"anonymous")]
    );
    assert_eq!(topics(&first).await, [topic_info(topic, 0, 4), topic_info("refunds", 0, 1)]);

    // Phase 3: the ids are replicated state, not the leader's memory: after a kill -9 of the
    // leader, the new leader still knows them.
    let leader = cluster.leader().await;
    cluster.kill9(leader);
    let survivor = events(&cluster, (leader + 1) % 3);
    let again = publish(&survivor, publish_request(topic, vec![new_event("pay-2", b"retry after failover")])).await;
    assert_eq!((again.events[0].offset, again.events[0].duplicate), (1, true), "after the failover: {again:?}");
    let new = publish(&survivor, publish_request(topic, vec![new_event("pay-3", b"third")])).await;
    assert_eq!((new.events[0].offset, new.events[0].duplicate), (4, false), "after the failover: {new:?}");
}

/// One acknowledged publish: its offsets and when it was sent and answered (Unix ms).
struct Acked {
    offsets: Vec<u64>,
    timestamp_ms: i64,
    sent_ms: i64,
    answered_ms: i64,
}

/// Publishes `count` events in batches of 1..=3 through `client`, ids `<label>-<n>` (so a
/// retry is safe), a few milliseconds apart so that timestamps differ.
async fn publish_timed(client: &EventsClient<Channel>, topic: &str, label: &str, count: usize) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut n = 0;
    while n < count {
        let size = (n % 3 + 1).min(count - n);
        let batch =
            (n..n + size).map(|k| new_event(&format!("{label}-{k}"), format!("{label}-{k}").as_bytes())).collect();
        let sent_ms = unix_ms();
        let response = publish(client, publish_request(topic, batch)).await;
        let answered_ms = unix_ms();
        let offsets = response.events.iter().map(|p| p.offset).collect();
        acked.push(Acked { offsets, timestamp_ms: response.timestamp_ms, sent_ms, answered_ms });
        n += size;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    acked
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_never_go_backwards_across_a_leader_kill_and_since_ms_finds_the_first_event_at_a_time() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let topic = "clicks";

    // Phase 1: publishes through the leader, which then dies; more publishes on a survivor.
    let leader = cluster.leader().await;
    let mut acked = publish_timed(&events(&cluster, leader), topic, "before", 60).await;
    cluster.kill9(leader);
    let survivor = (leader + 1) % 3;
    let client = events(&cluster, survivor);
    acked.extend(publish_timed(&client, topic, "after", 60).await);

    // Phase 2: each event carries its publish's timestamp, taken while the publish was in
    // flight (one machine, one clock), and they never go backwards by offset.
    let read = read_all(&client, topic, 0).await;
    let offsets: Vec<u64> = read.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (0..120).collect::<Vec<u64>>(), "dense offsets across the failover");
    for publish in &acked {
        for offset in &publish.offsets {
            let event = &read[*offset as usize];
            assert_eq!(
                event.timestamp_ms, publish.timestamp_ms,
                "offset {offset}: the event's and its publish's timestamp"
            );
            assert!(
                (publish.sent_ms..=publish.answered_ms).contains(&event.timestamp_ms),
                "offset {offset}: timestamp {} outside the publish's [{}, {}]",
                event.timestamp_ms,
                publish.sent_ms,
                publish.answered_ms
            );
        }
    }
    let backwards: Vec<(u64, i64, i64)> = read
        .windows(2)
        .filter(|w| w[1].timestamp_ms < w[0].timestamp_ms)
        .map(|w| (w[1].offset, w[0].timestamp_ms, w[1].timestamp_ms))
        .collect();
    assert!(backwards.is_empty(), "timestamps go backwards at (offset, before, after) {backwards:?}");

    // Phase 3: since_ms starts at the first event at or after the time; it wins over offset.
    let first_at = |since_ms: i64| read.iter().find(|e| e.timestamp_ms >= since_ms).map(|e| e.offset);
    let middle = read[70].timestamp_ms;
    let last = read[119].timestamp_ms;
    for since_ms in [1, read[0].timestamp_ms, read[0].timestamp_ms + 1, middle, middle + 1, last] {
        let expected = first_at(since_ms).expect("an event at or after a time of the log");
        let (found, next_offset) = try_read(&client, read_request(topic, 5, since_ms, 10)).await.expect("read since");
        let found: Vec<u64> = found.iter().map(|e| e.offset).collect();
        let wanted: Vec<u64> = (expected..(expected + 10).min(120)).collect();
        assert_eq!(found, wanted, "since_ms {since_ms} (offset 5, limit 10)");
        assert_eq!(next_offset, expected + found.len() as u64, "since_ms {since_ms}: next_offset");
    }
    // After the last event: nothing yet, and the next offset is where the log goes on.
    let (found, next_offset) = try_read(&client, read_request(topic, 0, last + 1, 0)).await.expect("read since");
    assert!(found.is_empty(), "since_ms after the last event: {found:?}");
    assert_eq!(next_offset, 120, "since_ms after the last event: next_offset");

    // Phase 4: the killed member comes back with the same timestamps.
    cluster.start_member(leader);
    cluster.wait_ready().await;
    let again = read_all(&events(&cluster, leader), topic, 0).await;
    assert_eq!(again, read, "the restarted member serves the same events");
}
