//! The events contract as one suite, run against every implementation: `MemoryEvents` in
//! keel-client's tests, `GrpcEvents` against a real cluster. It panics on the first broken
//! expectation, saying which.
//!
//! Safe on a shared cluster: it publishes only to topics named `conformance-<random>-...`.
//! Topics cannot be deleted yet, so those stay behind (about a thousand small events). It does
//! not wait out the de-duplication window (two minutes): `MemoryEvents`' own tests do, on a
//! paused clock. Consuming has its own cases, in `consume`; they take about ten seconds on a
//! real clock (waits that check nothing more arrives).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;

use super::{
    Event, Events, OutgoingEvent, PublishOptions, Published, ReadOptions, Start, EVENTS_PER_PUBLISH_MAX,
    NAME_BYTES_MAX, PAYLOAD_BYTES_MAX, READ_LIMIT_DEFAULT, READ_LIMIT_MAX,
};
use crate::error::Error;

mod consume;

/// How far a timestamp may be from the local clock around the publish: the cluster's leader
/// stamps events with its own clock.
const CLOCK_SKEW_MAX: Duration = Duration::from_secs(1);

/// Runs every case against `events`.
pub async fn run(events: Arc<dyn Events>) {
    let run = format!("conformance-{:08x}", rand::rng().random::<u32>());
    publish_assigns_dense_offsets(&*events, &run).await;
    reads_start_at_an_offset_and_are_paged(&*events, &run).await;
    reads_start_at_a_time(&*events, &run).await;
    ids_make_a_publish_safe_to_repeat(&*events, &run).await;
    topics_list_their_offsets(&*events, &run).await;
    invalid_requests_are_rejected(&*events, &run).await;
    the_largest_payload_makes_the_round_trip(&*events, &run).await;
    consume::run(&*events, &run).await;
}

fn payloads(events: &[Event]) -> Vec<&[u8]> {
    events.iter().map(|event| event.payload.as_slice()).collect()
}

fn offsets(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.offset).collect()
}

fn with_offset(offset: u64) -> Published {
    Published { offset, duplicate: false }
}

async fn publish_assigns_dense_offsets(events: &dyn Events, run: &str) {
    let topic = format!("{run}-dense");
    let before = SystemTime::now();
    let metadata = BTreeMap::from([("kind".to_string(), "created".to_string()), ("empty".into(), String::new())]);
    let options = PublishOptions { metadata: metadata.clone(), id: None };
    // Bytes that are not UTF-8, an empty payload: every field makes the round trip.
    let first = events.publish(&topic, vec![0, 159, 146, 150, 255], options).await.expect("publish");
    assert_eq!(first, with_offset(0), "the first event of a topic is at offset 0");
    let second = events.publish(&topic, Vec::new(), PublishOptions::default()).await.expect("publish");
    assert_eq!(second, with_offset(1), "offsets are dense");
    let batch = vec![OutgoingEvent::new("b0"), OutgoingEvent::with_id("batch-id", "b1"), OutgoingEvent::new("b2")];
    let published = events.publish_batch(&topic, batch).await.expect("publish a batch");
    assert_eq!(published, [with_offset(2), with_offset(3), with_offset(4)], "a batch takes consecutive offsets");
    let after = SystemTime::now();

    let read = events.read(&topic, ReadOptions::default()).await.expect("read");
    assert_eq!(offsets(&read), [0, 1, 2, 3, 4], "a read from the start gives every event");
    assert_eq!(payloads(&read), [&[0, 159, 146, 150, 255][..], b"", b"b0", b"b1", b"b2"], "payloads");
    assert!(read.iter().all(|event| event.topic == topic), "every event names its topic: {read:?}");
    assert_eq!(read[0].metadata, metadata, "metadata makes the round trip");
    assert_eq!(read[0].id, None, "an event published without id has none");
    assert_eq!(read[3].id.as_deref(), Some("batch-id"), "an event's id makes the round trip");
    for pair in read.windows(2) {
        assert!(pair[0].timestamp <= pair[1].timestamp, "timestamps never go backwards: {pair:?}");
    }
    assert_eq!(read[2].timestamp, read[4].timestamp, "a batch shares one timestamp");
    for event in &read {
        let at = event.timestamp;
        assert!(
            before - CLOCK_SKEW_MAX <= at && at <= after + CLOCK_SKEW_MAX,
            "event {} is stamped {at:?}, not between {before:?} and {after:?}",
            event.offset
        );
    }
}

async fn reads_start_at_an_offset_and_are_paged(events: &dyn Events, run: &str) {
    let topic = format!("{run}-paged");
    let missing = events.read(&topic, ReadOptions::default()).await;
    assert_eq!(missing, Err(Error::NotFound), "read of a topic never published to");

    // One more event than the default page, in two batches (a batch holds at most 1000).
    let count = READ_LIMIT_DEFAULT as usize + 1;
    let all: Vec<OutgoingEvent> = (0..count).map(|n| OutgoingEvent::new(n.to_string())).collect();
    for chunk in all.chunks(EVENTS_PER_PUBLISH_MAX) {
        events.publish_batch(&topic, chunk.to_vec()).await.expect("publish a batch");
    }
    let page = events.read(&topic, ReadOptions::default()).await.expect("read the default page");
    assert_eq!(page.len(), READ_LIMIT_DEFAULT as usize, "without a limit a read gives the default page");
    let page = events.read(&topic, ReadOptions { limit: Some(READ_LIMIT_MAX), ..ReadOptions::default() }).await;
    assert_eq!(page.map(|page| page.len()), Ok(count), "a larger limit gives every event");

    let last = count as u64 - 1;
    let cases: [(ReadOptions, &[u64]); 5] = [
        (ReadOptions { start: Start::Offset(5), limit: Some(3) }, &[5, 6, 7]),
        (ReadOptions { start: Start::Earliest, limit: Some(2) }, &[0, 1]),
        (ReadOptions { start: Start::Offset(last), limit: Some(5) }, &[last]),
        (ReadOptions { start: Start::Offset(last + 1), limit: None }, &[]),
        (ReadOptions { start: Start::Offset(last + 100), limit: None }, &[]),
    ];
    for (options, expected) in cases {
        let read = events.read(&topic, options).await.unwrap_or_else(|error| panic!("read with {options:?}: {error}"));
        assert_eq!(offsets(&read), expected, "read with {options:?}");
        let texts: Vec<String> = expected.iter().map(u64::to_string).collect();
        let texts: Vec<&[u8]> = texts.iter().map(|text| text.as_bytes()).collect();
        assert_eq!(payloads(&read), texts, "each offset holds the event published there");
    }
}

async fn reads_start_at_a_time(events: &dyn Events, run: &str) {
    let topic = format!("{run}-since");
    for round in 0..4 {
        events.publish(&topic, format!("e{round}").into_bytes(), PublishOptions::default()).await.expect("publish");
        // Real time, even under a paused tokio clock: the events should not all share a millisecond.
        std::thread::sleep(Duration::from_millis(3));
    }
    let all = events.read(&topic, ReadOptions::default()).await.expect("read");
    assert_eq!(all.len(), 4);
    let since = |time| ReadOptions { start: Start::Since(time), limit: None };
    let expected_from = |time: SystemTime| -> Vec<u64> {
        all.iter().filter(|event| event.timestamp >= time).map(|event| event.offset).collect()
    };
    let half_millisecond = Duration::from_micros(500);
    let times = [
        SystemTime::UNIX_EPOCH + Duration::from_millis(1),
        all[0].timestamp,
        all[2].timestamp,
        // Inside a millisecond: from the next whole one.
        all[1].timestamp + half_millisecond,
        all[3].timestamp,
        all[3].timestamp + Duration::from_millis(1),
    ];
    for time in times {
        let read =
            events.read(&topic, since(time)).await.unwrap_or_else(|error| panic!("read since {time:?}: {error}"));
        // Timestamps are whole milliseconds: "at or after `time`" is "at or after `time`
        // rounded up to a millisecond", as the cluster counts.
        let expected = expected_from(time);
        assert_eq!(offsets(&read), expected, "read since {time:?} (events at {:?})", timestamps(&all));
    }
    let before_all = events.read(&topic, since(SystemTime::UNIX_EPOCH)).await.expect("read since the epoch");
    assert_eq!(offsets(&before_all), [0, 1, 2, 3], "since the epoch is from the start");
    let limited = events.read(&topic, ReadOptions { start: Start::Since(all[1].timestamp), limit: Some(1) }).await;
    assert_eq!(limited.map(|read| offsets(&read)), Ok(expected_from(all[1].timestamp)[..1].to_vec()), "limit applies");
}

fn timestamps(events: &[Event]) -> Vec<SystemTime> {
    events.iter().map(|event| event.timestamp).collect()
}

async fn ids_make_a_publish_safe_to_repeat(events: &dyn Events, run: &str) {
    let topic = format!("{run}-ids");
    let with_id = |id: &str| PublishOptions { id: Some(id.to_string()), ..PublishOptions::default() };
    let first = events.publish(&topic, b"once".to_vec(), with_id("order-1")).await.expect("publish");
    assert_eq!(first, with_offset(0));
    let again = events.publish(&topic, b"twice".to_vec(), with_id("order-1")).await.expect("publish again");
    assert_eq!(again, Published { offset: 0, duplicate: true }, "a repeated id answers the first offset");
    let other = events.publish(&topic, b"other".to_vec(), with_id("order-2")).await.expect("publish another id");
    assert_eq!(other, with_offset(1), "another id is appended");

    let batch = vec![
        OutgoingEvent::with_id("order-3", "a"),
        OutgoingEvent::with_id("order-1", "b"),
        OutgoingEvent::with_id("order-3", "c"),
        OutgoingEvent::new("d"),
    ];
    let published = events.publish_batch(&topic, batch).await.expect("publish a batch with repeated ids");
    let expected = [
        with_offset(2),
        Published { offset: 0, duplicate: true },
        Published { offset: 2, duplicate: true },
        with_offset(3),
    ];
    assert_eq!(published, expected, "ids repeat against earlier publishes and within the batch");
    let empty_id = PublishOptions { id: Some(String::new()), ..PublishOptions::default() };
    for offset in [4, 5] {
        let published = events.publish(&topic, b"e".to_vec(), empty_id.clone()).await.expect("publish");
        assert_eq!(published, with_offset(offset), "an empty id is no id");
    }

    let read = events.read(&topic, ReadOptions::default()).await.expect("read");
    assert_eq!(payloads(&read), [&b"once"[..], b"other", b"a", b"d", b"e", b"e"], "duplicates were not appended");
    let elsewhere = events.publish(&format!("{run}-ids-other"), b"x".to_vec(), with_id("order-1")).await;
    assert_eq!(elsewhere, Ok(with_offset(0)), "ids are per topic");
}

async fn topics_list_their_offsets(events: &dyn Events, run: &str) {
    let topics = events.topics().await.expect("topics");
    let names: Vec<&str> = topics.iter().map(|info| info.topic.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "topics are sorted by name");
    let ours: Vec<(&str, u64, u64)> = topics
        .iter()
        .filter(|info| info.topic.starts_with(run))
        .map(|info| (&info.topic[run.len()..], info.first_offset, info.next_offset))
        .collect();
    let paged = READ_LIMIT_DEFAULT as u64 + 1;
    let expected = [("-dense", 0, 5), ("-ids", 0, 6), ("-ids-other", 0, 1), ("-paged", 0, paged), ("-since", 0, 4)];
    assert_eq!(ours, expected, "every topic published to, with its first and next offsets");
    for info in topics.iter().filter(|info| info.topic.starts_with(run)) {
        assert!(info.size_bytes > 0, "{} holds events, so it has a size", info.topic);
        assert!(info.retention.is_unlimited(), "{} keeps everything unless told otherwise", info.topic);
        assert!(info.groups.is_empty(), "{} was never consumed in a group", info.topic);
    }
}

async fn invalid_requests_are_rejected(events: &dyn Events, run: &str) {
    let topic = format!("{run}-invalid");
    let one = || vec![OutgoingEvent::new("p")];
    let long_id = "i".repeat(NAME_BYTES_MAX + 1);
    let publishes: [(&str, String, Vec<OutgoingEvent>); 9] = [
        ("an empty topic", String::new(), one()),
        ("a topic with '/'", format!("{topic}/x"), one()),
        ("a topic with NUL", format!("{topic}\0x"), one()),
        ("a topic with a control character", format!("{topic}\u{7f}"), one()),
        ("a topic over the limit", "t".repeat(NAME_BYTES_MAX + 1), one()),
        ("no events", topic.clone(), Vec::new()),
        ("too many events", topic.clone(), vec![OutgoingEvent::new("p"); EVENTS_PER_PUBLISH_MAX + 1]),
        ("a payload over the limit", topic.clone(), vec![OutgoingEvent::new(vec![b'x'; PAYLOAD_BYTES_MAX + 1])]),
        ("an id over the limit", topic.clone(), vec![OutgoingEvent::with_id(long_id, "p")]),
    ];
    for (what, topic, batch) in publishes {
        let result = events.publish_batch(&topic, batch).await;
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "publish with {what}: {result:?}");
    }
    let topics = events.topics().await.expect("topics");
    assert!(topics.iter().all(|info| !info.topic.starts_with(&topic)), "refused publishes wrote nothing: {topics:?}");

    let reads = [
        ("an empty topic", String::new(), ReadOptions::default()),
        ("a topic with '/'", format!("{run}-dense/x"), ReadOptions::default()),
        (
            "a limit over the maximum",
            format!("{run}-dense"),
            ReadOptions { limit: Some(READ_LIMIT_MAX + 1), ..ReadOptions::default() },
        ),
    ];
    for (what, topic, options) in reads {
        let result = events.read(&topic, options).await;
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "read with {what}: {result:?}");
    }
}

async fn the_largest_payload_makes_the_round_trip(events: &dyn Events, run: &str) {
    let topic = format!("{run}-large");
    let payload: Vec<u8> = (0..PAYLOAD_BYTES_MAX).map(|n| (n % 251) as u8).collect();
    let published = events.publish(&topic, payload.clone(), PublishOptions::default()).await;
    assert_eq!(published, Ok(with_offset(0)), "a payload of exactly {PAYLOAD_BYTES_MAX} bytes is accepted");
    let read = events.read(&topic, ReadOptions::default()).await.expect("read");
    assert!(read.len() == 1 && read[0].payload == payload, "the payload makes the round trip");
}
