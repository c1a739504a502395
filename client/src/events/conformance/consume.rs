//! The consuming half of the events contract: groups share a topic, acks are durable, nacks and
//! ack waits redeliver, attempts run out into the dead letters, streams without group see every
//! event from their start, groups resume, groups report, retention trims, refusals.
//!
//! Expected deliveries are waited for with a deadline ([`DELIVERY_TIMEOUT`]). The only fixed
//! waits check that nothing more arrives ([`QUIET`]); they outlast the ack waits used here, so
//! an ack that did not land would show as a redelivery.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::super::group::{dead_letter_topic, IN_FLIGHT_DEFAULT, IN_FLIGHT_MAX};
use super::super::{
    ConsumeOptions, ConsumeStart, Delivery, Events, GroupInfo, OutgoingEvent, PublishOptions, ReadOptions, Retention,
    Subscription, ACK_WAIT_MAX, DEAD_LETTER_DELIVERIES_KEY, DEAD_LETTER_GROUP_KEY, DEAD_LETTER_OFFSET_KEY,
    DEAD_LETTER_TOPIC_KEY, RETENTION_AGE_MAX,
};
use crate::error::Error;

/// How long an expected delivery (or a trim) may take: on a cluster each claim is a replicated
/// command, and a stream without work looks again every quarter second.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(1500);
/// The ack wait of the cases that check that acked events stay acked: shorter than [`QUIET`].
const ACK_WAIT: Duration = Duration::from_secs(1);
/// The ack wait of the case that waits it out.
const SHORT_ACK_WAIT: Duration = Duration::from_millis(300);

const _: () = assert!(ACK_WAIT.as_millis() < QUIET.as_millis());

/// Runs every consuming case, on topics named `<run>-...`.
pub(super) async fn run(events: &dyn Events, run: &str) {
    a_group_shares_each_event_once(events, run).await;
    a_nacked_event_is_delivered_again(events, run).await;
    an_ack_that_settles_nothing_says_so(events, run).await;
    an_unacked_event_comes_back_after_its_ack_wait(events, run).await;
    out_of_attempts_an_event_goes_to_the_dead_letters(events, run).await;
    a_stream_without_group_sees_every_event_from_its_start(events, run).await;
    a_group_resumes_where_it_left_off(events, run).await;
    retention_keeps_the_newest_events(events, run).await;
    invalid_subscriptions_are_rejected(events, run).await;
}

async fn next(subscription: &mut Subscription, what: &str) -> Delivery {
    match tokio::time::timeout(DELIVERY_TIMEOUT, subscription.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        Ok(Some(Err(error))) => panic!("{what}: {error}"),
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: nothing delivered within {DELIVERY_TIMEOUT:?}"),
    }
}

/// The offsets of the next `count` deliveries, each acked (with success) as it arrives.
async fn next_acked(subscription: &mut Subscription, count: usize, what: &str) -> Vec<u64> {
    let mut offsets = Vec::with_capacity(count);
    for _ in 0..count {
        let delivery = next(subscription, what).await;
        delivery.ack().await.unwrap_or_else(|error| panic!("{what}: ack of {}: {error}", delivery.event.offset));
        offsets.push(delivery.event.offset);
    }
    offsets
}

async fn nothing_more(subscription: &mut Subscription, what: &str) {
    match tokio::time::timeout(QUIET, subscription.next()).await {
        Err(_) => {}
        Ok(Some(Ok(delivery))) => {
            panic!("{what}: offset {} delivered again (delivery {})", delivery.event.offset, delivery.deliveries)
        }
        Ok(other) => panic!("{what}: {other:?}"),
    }
}

/// Publishes `e0`, `e1`, ... as one batch.
async fn publish_numbered(events: &dyn Events, topic: &str, count: usize) {
    let batch = (0..count).map(|n| OutgoingEvent::new(format!("e{n}"))).collect();
    events.publish_batch(topic, batch).await.unwrap_or_else(|error| panic!("publish to {topic}: {error}"));
}

/// Waits until `condition` holds, looking every 50 ms, for at most [`DELIVERY_TIMEOUT`].
async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within {DELIVERY_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn group(events: &dyn Events, topic: &str, name: &str) -> GroupInfo {
    let groups = events.groups(topic).await.unwrap_or_else(|error| panic!("groups of {topic}: {error}"));
    let found = groups.iter().find(|info| info.group == name).cloned();
    found.unwrap_or_else(|| panic!("group {name} of {topic} not in {groups:?}"))
}

async fn a_group_shares_each_event_once(events: &dyn Events, run: &str) {
    let topic = format!("{run}-group");
    let options = ConsumeOptions { ack_wait: Some(ACK_WAIT), ..ConsumeOptions::in_group("workers") };
    let mut consumers = [
        events.consume(&topic, options.clone()).await.expect("first consumer"),
        events.consume(&topic, options).await.expect("second consumer"),
    ];
    publish_numbered(events, &topic, 10).await;

    // Both consumers read at once, acking each event as it comes.
    let mut offsets = Vec::new();
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while offsets.len() < 10 {
        let [first, second] = &mut consumers;
        let item = tokio::select! {
            item = first.next() => item,
            item = second.next() => item,
            () = tokio::time::sleep_until(deadline) => panic!("group: only {offsets:?} delivered"),
        };
        let delivery = match item {
            Some(Ok(delivery)) => delivery,
            other => panic!("group: {other:?}"),
        };
        delivery.ack().await.unwrap_or_else(|error| panic!("group: ack of {}: {error}", delivery.event.offset));
        offsets.push(delivery.event.offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>(), "each event to one consumer of the group, once");
    let [first, second] = &mut consumers;
    tokio::join!(nothing_more(first, "group, first consumer"), nothing_more(second, "group, second consumer"));

    let info = group(events, &topic, "workers").await;
    let expected = GroupInfo {
        group: "workers".into(),
        ack_floor: 10,
        cursor: 10,
        pending: 0,
        lag: 0,
        ack_wait: ACK_WAIT,
        retry_limit: None,
        max_in_flight: IN_FLIGHT_DEFAULT,
    };
    assert_eq!(info, expected, "every event acknowledged");
}

async fn a_nacked_event_is_delivered_again(events: &dyn Events, run: &str) {
    let topic = format!("{run}-nack");
    events.publish(&topic, b"again".to_vec(), PublishOptions::default()).await.expect("publish");
    let mut subscription = events.consume(&topic, ConsumeOptions::in_group("g")).await.expect("consume");
    let first = next(&mut subscription, "nack").await;
    assert_eq!((first.event.offset, first.deliveries), (0, 1), "the first delivery");
    first.nack().await.expect("nack");
    let again = next(&mut subscription, "after a nack").await;
    assert_eq!((again.event.offset, again.deliveries, again.event.payload.as_slice()), (0, 2, &b"again"[..]));
    again.ack().await.expect("ack");
}

/// Only an ack that settled a pending delivery is acknowledged: a second ack of one delivery
/// (and an ack of anything not pending) is answered [`Error::NotPending`], never `Ok`.
async fn an_ack_that_settles_nothing_says_so(events: &dyn Events, run: &str) {
    let topic = format!("{run}-ack-twice");
    events.publish(&topic, b"once".to_vec(), PublishOptions::default()).await.expect("publish");
    let mut subscription = events.consume(&topic, ConsumeOptions::in_group("g")).await.expect("consume");
    let delivery = next(&mut subscription, "ack twice").await;
    assert_eq!(delivery.ack().await, Ok(()), "the first ack settles the delivery");
    assert_eq!(delivery.ack().await, Err(Error::NotPending { offset: 0 }), "the second settles nothing");
    let info = group(events, &topic, "g").await;
    assert_eq!((info.ack_floor, info.pending), (1, 0));
}

async fn an_unacked_event_comes_back_after_its_ack_wait(events: &dyn Events, run: &str) {
    let topic = format!("{run}-ack-wait");
    events.publish(&topic, b"slow".to_vec(), PublishOptions::default()).await.expect("publish");
    let options = ConsumeOptions { ack_wait: Some(SHORT_ACK_WAIT), ..ConsumeOptions::in_group("g") };
    let mut subscription = events.consume(&topic, options).await.expect("consume");
    let first = next(&mut subscription, "ack wait").await;
    let delivered_at = Instant::now();
    assert_eq!(first.deliveries, 1);
    let again = next(&mut subscription, "after the ack wait").await;
    assert_eq!((again.event.offset, again.deliveries), (0, 2), "delivered again, counted");
    // The cluster's clock started the wait a little before this side saw the delivery.
    assert!(delivered_at.elapsed() >= SHORT_ACK_WAIT / 2, "not before the ack wait: {:?}", delivered_at.elapsed());
    again.ack().await.expect("ack");
}

async fn out_of_attempts_an_event_goes_to_the_dead_letters(events: &dyn Events, run: &str) {
    let topic = format!("{run}-dead");
    let metadata = BTreeMap::from([("kind".to_string(), "poison".to_string())]);
    let options = PublishOptions { metadata: metadata.clone(), id: None };
    events.publish(&topic, b"poison".to_vec(), options).await.expect("publish");
    let options = ConsumeOptions { retry_limit: Some(0), ..ConsumeOptions::in_group("g") };
    let mut subscription = events.consume(&topic, options).await.expect("consume");
    let delivery = next(&mut subscription, "dead letters").await;
    assert_eq!(delivery.deliveries, 1);
    delivery.nack().await.expect("nack");

    let dead_topic = dead_letter_topic(&topic);
    let dead = || async { events.read(&dead_topic, ReadOptions::default()).await.unwrap_or_default() };
    wait_for("the event in the dead letters", || async { !dead().await.is_empty() }).await;
    let letters = dead().await;
    let mut expected = metadata;
    expected.insert(DEAD_LETTER_TOPIC_KEY.into(), topic.clone());
    expected.insert(DEAD_LETTER_GROUP_KEY.into(), "g".into());
    expected.insert(DEAD_LETTER_OFFSET_KEY.into(), "0".into());
    expected.insert(DEAD_LETTER_DELIVERIES_KEY.into(), "1".into());
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    assert_eq!((&letters[0].metadata, letters[0].payload.as_slice()), (&expected, &b"poison"[..]));
    let info = group(events, &topic, "g").await;
    assert_eq!((info.ack_floor, info.pending, info.retry_limit), (1, 0, Some(0)), "a dead letter is settled");
    assert_eq!(delivery.ack().await, Err(Error::NotPending { offset: 0 }), "too late: it is a dead letter");
}

async fn a_stream_without_group_sees_every_event_from_its_start(events: &dyn Events, run: &str) {
    let topic = format!("{run}-private");
    for n in 0..3 {
        events.publish(&topic, format!("e{n}").into_bytes(), PublishOptions::default()).await.expect("publish");
    }
    let all = events.read(&topic, ReadOptions::default()).await.expect("read");
    let since = all[1].timestamp;
    let from = |start| ConsumeOptions { start, ..ConsumeOptions::default() };
    let mut earliest = events.consume(&topic, from(ConsumeStart::Earliest)).await.expect("consume");
    let mut from_one = events.consume(&topic, from(ConsumeStart::Offset(1))).await.expect("consume");
    let mut latest = events.consume(&topic, from(ConsumeStart::Latest)).await.expect("consume");
    let mut from_time = events.consume(&topic, from(ConsumeStart::Since(since))).await.expect("consume");
    events.publish(&topic, b"e3".to_vec(), PublishOptions::default()).await.expect("publish");

    let first = next(&mut earliest, "earliest").await;
    assert_eq!((first.event.offset, first.deliveries, first.event.payload.as_slice()), (0, 1, &b"e0"[..]));
    first.nack().await.expect("a nack without group changes nothing");
    assert_eq!(next_acked(&mut earliest, 3, "earliest").await, [1, 2, 3], "every event, in order");
    assert_eq!(next_acked(&mut from_one, 3, "from offset 1").await, [1, 2, 3]);
    assert_eq!(next_acked(&mut latest, 1, "latest").await, [3], "only what was published after");
    let expected: Vec<u64> = (0..4).filter(|offset| *offset == 3 || all[*offset as usize].timestamp >= since).collect();
    assert_eq!(next_acked(&mut from_time, expected.len(), "since a time").await, expected);
    tokio::join!(
        nothing_more(&mut earliest, "earliest"),
        nothing_more(&mut from_one, "from offset 1"),
        nothing_more(&mut latest, "latest"),
        nothing_more(&mut from_time, "since a time"),
    );
}

async fn a_group_resumes_where_it_left_off(events: &dyn Events, run: &str) {
    let topic = format!("{run}-resume");
    publish_numbered(events, &topic, 5).await;
    let mut first = events.consume(&topic, ConsumeOptions::in_group("g")).await.expect("consume");
    assert_eq!(next_acked(&mut first, 3, "before leaving").await, [0, 1, 2]);
    // Leaving gives back what it held unacknowledged (possibly 3 and 4).
    drop(first);

    let options = ConsumeOptions { ack_wait: Some(Duration::from_secs(20)), ..ConsumeOptions::in_group("g") };
    let mut second = events.consume(&topic, options).await.expect("consume again");
    assert_eq!(next_acked(&mut second, 2, "after coming back").await, [3, 4], "the next unacknowledged ones");
    let info = group(events, &topic, "g").await;
    assert_eq!((info.ack_floor, info.cursor, info.pending, info.lag), (5, 5, 0, 0));
    assert_eq!(info.ack_wait, Duration::from_secs(20), "the options of the last consumer to join");
    drop(second);

    publish_numbered(events, &topic, 2).await;
    let info = group(events, &topic, "g").await;
    assert_eq!((info.ack_floor, info.lag), (5, 2), "lag counts what the group has not acknowledged");
    let topics = events.topics().await.expect("topics");
    let listed = topics.iter().find(|info| info.topic == topic).map(|info| info.groups.len());
    assert_eq!(listed, Some(1), "topics list their groups");
    assert_eq!(events.groups(&format!("{run}-never")).await, Err(Error::NotFound), "groups of no topic");
}

async fn retention_keeps_the_newest_events(events: &dyn Events, run: &str) {
    let topic = format!("{run}-retention");
    publish_numbered(events, &topic, 10).await;
    let limits = Retention { max_events: Some(3), ..Retention::default() };
    events.set_retention(&topic, limits).await.expect("set retention");
    let info = || async {
        let topics = events.topics().await.expect("topics");
        topics.into_iter().find(|info| info.topic == topic).expect("the topic is listed")
    };
    wait_for("the topic trimmed to 3 events", || async { info().await.first_offset == 7 }).await;
    let trimmed = info().await;
    assert_eq!((trimmed.next_offset, trimmed.retention), (10, limits));
    assert!(trimmed.size_bytes > 0, "three events have a size");
    let read = events.read(&topic, ReadOptions::default()).await.expect("read");
    assert_eq!(read.iter().map(|event| event.offset).collect::<Vec<_>>(), [7, 8, 9], "the newest three");
    let mut late = events.consume(&topic, ConsumeOptions::in_group("late")).await.expect("consume");
    assert_eq!(next_acked(&mut late, 1, "a new group").await, [7], "from the oldest event kept");
}

async fn invalid_subscriptions_are_rejected(events: &dyn Events, run: &str) {
    let topic = format!("{run}-refused");
    let cases = [
        ("an empty topic", String::new(), ConsumeOptions::default()),
        ("a topic with '/'", format!("{topic}/x"), ConsumeOptions::default()),
        ("a group with '/'", topic.clone(), ConsumeOptions::in_group("a/b")),
        ("a topic with NUL", format!("{topic}\0x"), ConsumeOptions::in_group("g")),
        ("a topic with a control character", format!("{topic}\u{1b}[2J"), ConsumeOptions::default()),
        ("a group with NUL", topic.clone(), ConsumeOptions::in_group("a\0b")),
        ("a group with a newline", topic.clone(), ConsumeOptions::in_group("a\nb")),
        (
            "a consumer with a control character",
            topic.clone(),
            ConsumeOptions { consumer: Some("c\u{7}".into()), ..ConsumeOptions::in_group("g") },
        ),
        (
            "an ack wait over the limit",
            topic.clone(),
            ConsumeOptions { ack_wait: Some(ACK_WAIT_MAX + Duration::from_secs(1)), ..ConsumeOptions::default() },
        ),
        (
            "an in-flight bound over the limit",
            topic.clone(),
            ConsumeOptions { max_in_flight: Some(IN_FLIGHT_MAX + 1), ..ConsumeOptions::in_group("g") },
        ),
    ];
    for (what, topic, options) in cases {
        let result = events.consume(&topic, options).await;
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "consume with {what}: {result:?}");
    }
    let groups = events.groups("").await;
    assert!(matches!(groups, Err(Error::InvalidArgument(_))), "groups of an empty topic: {groups:?}");
    let retention = events.set_retention("", Retention::default()).await;
    assert!(matches!(retention, Err(Error::InvalidArgument(_))), "retention of an empty topic: {retention:?}");
    let retention = events.set_retention(&format!("{topic}\0x"), Retention::default()).await;
    assert!(matches!(retention, Err(Error::InvalidArgument(_))), "retention of a NUL topic: {retention:?}");
    // An age that wrapped to -1 in milliseconds once emptied the topic: refused, and the topic
    // keeps its events.
    let dotted = format!("{run}.go.micro.topic.foo");
    publish_numbered(events, &dotted, 2).await;
    let forever = Retention { max_age: Some(RETENTION_AGE_MAX + Duration::from_millis(1)), ..Retention::default() };
    let retention = events.set_retention(&dotted, forever).await;
    assert!(matches!(retention, Err(Error::InvalidArgument(_))), "an age over the maximum: {retention:?}");
    let longest = Retention { max_age: Some(RETENTION_AGE_MAX), ..Retention::default() };
    events.set_retention(&dotted, longest).await.expect("the longest age, on a dotted topic as go-micro names them");
    let mut subscription = events.consume(&dotted, ConsumeOptions::in_group("go.micro.group")).await.expect("consume");
    assert_eq!(next_acked(&mut subscription, 2, "a century's retention keeps them").await, [0, 1]);
}
