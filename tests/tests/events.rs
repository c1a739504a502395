//! Native event logs (`keel.v1.Events`) over a real cluster: offsets are dense per topic and
//! survive kill -9 of every member, a publish with a known id is answered with its first
//! offset instead of being appended again, timestamps never go backwards across a failover,
//! events are etcd keys under `/micro/events/<topic>/<20-digit offset>` that etcd tools and
//! watches see, and bad input is refused and changes nothing. Writes through the etcd API under
//! `/micro/events/` are refused: they would desynchronise the topics' offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Compare, CompareOp, DeleteOptions, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use keel_proto::v1::events_client::EventsClient;
use keel_proto::v1::{EventMessage, NewEvent, PublishRequest, PublishResponse, ReadEventsRequest, TopicsRequest};
use keel_tests::{etcdctl, retry_unavailable, Server, TestCluster, CALL_TIMEOUT, READY_TIMEOUT};
use tonic::transport::{Channel, Endpoint};

/// Where every event lives in the etcd keyspace.
const PREFIX: &str = "/micro/events/";

/// The documented limits, each checked at and just past its edge.
const TOPIC_BYTES_MAX: usize = 256;
const EVENTS_PER_PUBLISH_MAX: usize = 1000;
const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
const READ_LIMIT_MAX: u32 = 10_000;

/// A client of member `i`'s Events service; connects lazily, so a dead member makes calls
/// fail instead of the constructor.
fn events(cluster: &TestCluster, i: usize) -> EventsClient<Channel> {
    let endpoint = Endpoint::from_shared(cluster.members[i].client_url.clone()).expect("url");
    let endpoint = endpoint.connect_timeout(Duration::from_secs(1)).timeout(CALL_TIMEOUT);
    // 1 MiB payloads and 10 000-event pages are bigger than tonic's 4 MiB default.
    EventsClient::new(endpoint.connect_lazy()).max_decoding_message_size(64 << 20)
}

fn new_event(id: &str, payload: &[u8]) -> NewEvent {
    NewEvent { id: id.into(), payload: payload.to_vec(), ..Default::default() }
}

fn publish_request(topic: &str, events: Vec<NewEvent>) -> PublishRequest {
    PublishRequest { topic: topic.into(), events }
}

async fn try_publish(
    client: &EventsClient<Channel>,
    request: PublishRequest,
) -> Result<PublishResponse, tonic::Status> {
    retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.publish(request).await }
    })
    .await
}

async fn publish(client: &EventsClient<Channel>, request: PublishRequest) -> PublishResponse {
    let what = format!("publish {} event(s) to {:?}", request.events.len(), request.topic);
    let response = try_publish(client, request.clone()).await.unwrap_or_else(|status| panic!("{what}: {status:?}"));
    assert_eq!(response.events.len(), request.events.len(), "{what}: one answer per event: {response:?}");
    response
}

async fn try_read(
    client: &EventsClient<Channel>,
    request: ReadEventsRequest,
) -> Result<(Vec<EventMessage>, u64), tonic::Status> {
    let read = retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.read(request).await }
    });
    read.await.map(|response| (response.events, response.next_offset))
}

fn read_request(topic: &str, offset: u64, since_ms: i64, limit: u32) -> ReadEventsRequest {
    ReadEventsRequest { topic: topic.into(), offset, since_ms, limit }
}

/// Every event of `topic` from offset 0, in pages of `page`, checking that pages join up.
async fn read_all(client: &EventsClient<Channel>, topic: &str, page: u32) -> Vec<EventMessage> {
    // 0 asks for the default page.
    let page_size = if page == 0 { 1000 } else { page as usize };
    let mut all: Vec<EventMessage> = Vec::new();
    let mut offset = 0;
    loop {
        let request = read_request(topic, offset, 0, page);
        let (events, next_offset) =
            try_read(client, request.clone()).await.unwrap_or_else(|status| panic!("{request:?}: {status:?}"));
        assert!(events.len() <= page_size, "{request:?} answered {} events", events.len());
        if let Some(last) = events.last() {
            assert_eq!(events[0].offset, offset, "{request:?} starts at its offset");
            assert_eq!(next_offset, last.offset + 1, "{request:?}: next_offset follows the last event");
        } else {
            assert_eq!(next_offset, offset, "{request:?}: an empty page stays where it is");
        }
        let done = events.len() < page_size;
        offset = next_offset;
        all.extend(events);
        if done {
            return all;
        }
    }
}

/// Every topic as (name, first offset, next offset), by name.
async fn topics(client: &EventsClient<Channel>) -> Vec<(String, u64, u64)> {
    let listed = retry_unavailable(|| {
        let mut client = client.clone();
        async move { client.topics(TopicsRequest {}).await }
    });
    let mut topics = listed.await.unwrap_or_else(|status| panic!("topics: {status:?}")).topics;
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    topics.into_iter().map(|t| (t.topic, t.first_offset, t.next_offset)).collect()
}

fn topic_info(topic: &str, first_offset: u64, next_offset: u64) -> (String, u64, u64) {
    (topic.into(), first_offset, next_offset)
}

fn unix_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(now.as_millis()).expect("milliseconds fit")
}

/// Offsets, in order, and where they are not 0, 1, 2, ...
fn gaps(offsets: &[u64]) -> Vec<(usize, u64)> {
    offsets.iter().enumerate().filter(|(i, offset)| **offset != *i as u64).map(|(i, o)| (i, *o)).take(5).collect()
}

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
