//! [`MemoryEvents`]: event logs inside the process, for unit tests of services. It applies the
//! cluster's rules (validation with the same words, dense offsets, timestamps that never go
//! backwards, all-or-nothing batches, de-duplication by id, consumer groups through the same
//! [`group`](super::group) rules, retention) and measures the de-duplication window and ack
//! waits on tokio's clock, so tests can use `tokio::time::pause()` to step past them.
//! Timestamps, and so retention by age, are wall-clock time, as the cluster's.
//!
//! Differences that cannot matter to a correct client: retention applies at once rather than
//! within a second, and sizes count payload, id and metadata bytes rather than the cluster's
//! stored records. Consuming is in `memory_consume`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use super::group::{dead_letter_topic, Delivery as Claimed, GroupState, LogBounds};
use super::{
    rules, since_unix_ms, unix_ms_time, ConsumeOptions, Event, Events, GroupInfo, OutgoingEvent, Published,
    ReadOptions, Retention, Start, Subscription, TopicInfo, DEAD_LETTER_DELIVERIES_KEY, DEAD_LETTER_GROUP_KEY,
    DEAD_LETTER_OFFSET_KEY, DEAD_LETTER_TOPIC_KEY, DEDUP_IDS_MAX, DEDUP_WINDOW,
};
use crate::error::{Error, Result};

/// An in-memory [`Events`]. Cheap to clone: clones share the same topics.
#[derive(Clone, Default)]
pub struct MemoryEvents {
    shared: Arc<Shared>,
}

/// What clones and subscriptions share.
pub(super) struct Shared {
    /// std Mutex: never held across an `.await`.
    topics: Mutex<BTreeMap<String, Topic>>,
    /// Bumped after every change a consumer may wait for (an append, a settle, a retention
    /// change): subscriptions' feeders sleep on it. A watch, so no change is missed between a
    /// look at the topics and the wait.
    changes: watch::Sender<u64>,
    /// Time zero of the groups' clock (deadlines are milliseconds since): tokio's clock.
    epoch: Instant,
    /// For consumer names.
    consumers: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            topics: Mutex::default(),
            changes: watch::Sender::new(0),
            epoch: Instant::now(),
            consumers: AtomicU64::new(1),
        }
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Topic>> {
        // Every change is made whole under the lock before it is released: keep going after a
        // panic elsewhere.
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes every subscription to look again.
    pub(super) fn changed(&self) {
        self.changes.send_modify(|version| *version = version.wrapping_add(1));
    }

    pub(super) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The groups' clock: milliseconds of tokio time since this value was made.
    pub(super) fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// When the groups' clock reads `milliseconds`; `None` past what an `Instant` can hold
    /// (never, in practice).
    pub(super) fn instant(&self, milliseconds: i64) -> Option<Instant> {
        self.epoch.checked_add(Duration::from_millis(u64::try_from(milliseconds).unwrap_or(0)))
    }

    pub(super) fn new_consumer_name(&self) -> String {
        format!("memory-{}", self.consumers.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Default)]
pub(super) struct Topic {
    /// Event `first_offset + n` at index `n`.
    events: VecDeque<Stored>,
    first_offset: u64,
    /// The sizes of `events`, as [`Stored::size`] counts them.
    bytes: u64,
    last_timestamp_ms: i64,
    /// Ids published within the window, oldest first, and their index for lookups.
    recent: VecDeque<(String, Instant)>,
    by_id: HashMap<String, u64>,
    retention: Retention,
    /// By name, as the cluster lists them.
    pub(super) groups: BTreeMap<String, GroupState>,
}

struct Stored {
    id: Option<String>,
    timestamp_ms: i64,
    metadata: BTreeMap<String, String>,
    payload: Vec<u8>,
}

impl MemoryEvents {
    /// No topics.
    pub fn new() -> MemoryEvents {
        MemoryEvents::default()
    }
}

impl Stored {
    /// What retention by bytes counts: the bytes the event carries.
    fn size(&self) -> u64 {
        let metadata: usize = self.metadata.iter().map(|(key, value)| key.len() + value.len()).sum();
        (self.payload.len() + self.id.as_ref().map_or(0, String::len) + metadata) as u64
    }
}

impl Topic {
    pub(super) fn bounds(&self) -> LogBounds {
        LogBounds { first: self.first_offset, next: self.first_offset.saturating_add(self.events.len() as u64) }
    }

    pub(super) fn event(&self, topic: &str, offset: u64) -> Option<Event> {
        let index = usize::try_from(offset.checked_sub(self.first_offset)?).ok()?;
        let stored = self.events.get(index)?;
        Some(Event {
            topic: topic.to_string(),
            offset,
            id: stored.id.clone(),
            timestamp: unix_ms_time(stored.timestamp_ms),
            metadata: stored.metadata.clone(),
            payload: stored.payload.clone(),
        })
    }

    /// The first offset stamped at or after `since_ms` (the next offset if none): timestamps
    /// never go backwards within a topic, so the events are sorted by them.
    pub(super) fn first_at_or_after(&self, since_ms: i64) -> u64 {
        self.first_offset + self.events.partition_point(|stored| stored.timestamp_ms < since_ms) as u64
    }

    /// Appends `events` with one timestamp (never before the topic's last), de-duplicating by
    /// id, then applies retention.
    fn append(&mut self, events: Vec<OutgoingEvent>, now: Instant) -> Vec<Published> {
        let timestamp_ms = now_unix_ms().max(self.last_timestamp_ms);
        self.forget_ids(now);
        let mut published = Vec::with_capacity(events.len());
        for event in events {
            let id = event.id.filter(|id| !id.is_empty());
            if let Some(offset) = id.as_ref().and_then(|id| self.by_id.get(id)) {
                published.push(Published { offset: *offset, duplicate: true });
                continue;
            }
            let offset = self.bounds().next;
            if let Some(id) = &id {
                self.remember_id(id.clone(), offset, now);
            }
            let stored = Stored { id, timestamp_ms, metadata: event.metadata, payload: event.payload };
            self.bytes += stored.size();
            self.events.push_back(stored);
            published.push(Published { offset, duplicate: false });
        }
        self.last_timestamp_ms = timestamp_ms;
        self.trim(timestamp_ms);
        published
    }

    /// Removes the oldest events while any retention limit is passed, `now_ms` (Unix) deciding
    /// which are too old.
    pub(super) fn trim(&mut self, now_ms: i64) {
        let limits = self.retention;
        let oldest_kept_ms =
            limits.max_age.map(|age| now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        while let Some(oldest) = self.events.front() {
            let too_many = limits.max_events.is_some_and(|max| self.events.len() as u64 > max);
            let too_large = limits.max_bytes.is_some_and(|max| self.bytes > max);
            let too_old = oldest_kept_ms.is_some_and(|oldest_kept| oldest.timestamp_ms < oldest_kept);
            if !(too_many || too_large || too_old) {
                break;
            }
            self.bytes -= oldest.size();
            self.events.pop_front();
            self.first_offset += 1;
        }
    }

    /// Forgets ids published more than the window ago, as the cluster does before a publish.
    fn forget_ids(&mut self, now: Instant) {
        while let Some((id, at)) = self.recent.front() {
            if now.saturating_duration_since(*at) <= DEDUP_WINDOW {
                break;
            }
            self.by_id.remove(id);
            self.recent.pop_front();
        }
    }

    fn remember_id(&mut self, id: String, offset: u64, now: Instant) {
        self.by_id.insert(id.clone(), offset);
        self.recent.push_back((id, now));
        if self.recent.len() > DEDUP_IDS_MAX {
            if let Some((oldest, _)) = self.recent.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    fn info(&self, topic: &str) -> TopicInfo {
        let bounds = self.bounds();
        TopicInfo {
            topic: topic.to_string(),
            first_offset: bounds.first,
            next_offset: bounds.next,
            size_bytes: self.bytes,
            retention: self.retention,
            groups: self.groups.iter().map(|(group, state)| group_info(group, state, bounds)).collect(),
        }
    }
}

/// A group as the cluster reports it: nothing below the topic's first offset is owed.
fn group_info(group: &str, state: &GroupState, bounds: LogBounds) -> GroupInfo {
    GroupInfo {
        group: group.to_string(),
        ack_floor: state.ack_floor().max(bounds.first),
        cursor: state.cursor.max(bounds.first),
        pending: state.pending.range(bounds.first..).count() as u64,
        lag: state.lag(bounds),
        ack_wait: Duration::from_millis(state.options.ack_wait_ms),
        retry_limit: state.options.retry_limit,
        max_in_flight: state.options.max_in_flight,
    }
}

/// `topic`'s log with retention applied as of now, if it exists.
pub(super) fn log_mut<'a>(topics: &'a mut BTreeMap<String, Topic>, topic: &str) -> Option<&'a mut Topic> {
    let log = topics.get_mut(topic)?;
    log.trim(now_unix_ms());
    Some(log)
}

/// Copies the events at `dead` to `topic`'s dead-letter topic, saying where they came from, as
/// the cluster does when a claim runs out of attempts.
pub(super) fn dead_letter(topics: &mut BTreeMap<String, Topic>, topic: &str, group: &str, dead: &[Claimed]) {
    let Some(log) = topics.get(topic) else { return };
    let letters: Vec<OutgoingEvent> = dead
        .iter()
        .filter_map(|claimed| {
            let mut event = log.event(topic, claimed.offset)?;
            event.metadata.insert(DEAD_LETTER_TOPIC_KEY.into(), topic.to_string());
            event.metadata.insert(DEAD_LETTER_GROUP_KEY.into(), group.to_string());
            event.metadata.insert(DEAD_LETTER_OFFSET_KEY.into(), claimed.offset.to_string());
            event.metadata.insert(DEAD_LETTER_DELIVERIES_KEY.into(), claimed.deliveries.to_string());
            Some(OutgoingEvent { id: None, metadata: event.metadata, payload: event.payload })
        })
        .collect();
    if !letters.is_empty() {
        topics.entry(dead_letter_topic(topic)).or_default().append(letters, Instant::now());
    }
}

#[async_trait]
impl Events for MemoryEvents {
    async fn publish_batch(&self, topic: &str, events: Vec<OutgoingEvent>) -> Result<Vec<Published>> {
        rules::topic(topic)?;
        rules::batch(&events)?;
        let published = self.shared.lock().entry(topic.to_string()).or_default().append(events, Instant::now());
        self.shared.changed();
        Ok(published)
    }

    async fn read(&self, topic: &str, options: ReadOptions) -> Result<Vec<Event>> {
        rules::topic(topic)?;
        let limit = rules::limit(options.limit)?;
        let mut topics = self.shared.lock();
        let log = log_mut(&mut topics, topic).ok_or(Error::NotFound)?;
        let from = match options.start {
            Start::Earliest => log.first_offset,
            Start::Offset(offset) => offset.max(log.first_offset),
            Start::Since(time) => log.first_at_or_after(since_unix_ms(time)),
        };
        Ok((from..).take(limit as usize).map_while(|offset| log.event(topic, offset)).collect())
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        let mut topics = self.shared.lock();
        let now_ms = now_unix_ms();
        Ok(topics
            .iter_mut()
            .map(|(topic, log)| {
                log.trim(now_ms);
                log.info(topic)
            })
            .collect())
    }

    async fn consume(&self, topic: &str, options: ConsumeOptions) -> Result<Subscription> {
        super::memory_consume::consume(&self.shared, topic, options)
    }

    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        rules::topic(topic)?;
        let mut topics = self.shared.lock();
        let log = log_mut(&mut topics, topic).ok_or(Error::NotFound)?;
        Ok(log.info(topic).groups)
    }

    async fn set_retention(&self, topic: &str, retention: Retention) -> Result<()> {
        rules::topic(topic)?;
        let retention = rules::retention(retention)?;
        let mut topics = self.shared.lock();
        let log = topics.entry(topic.to_string()).or_default();
        log.retention = retention;
        log.trim(now_unix_ms());
        drop(topics);
        self.shared.changed();
        Ok(())
    }
}

/// The wall clock in Unix milliseconds, as the cluster's leader stamps events.
pub(super) fn now_unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_events_pass_the_conformance_suite_in_real_time() {
        // `client/tests/memory_events.rs` runs the suite on a paused clock; this run shows that
        // ack waits and retention do not depend on that. About ten seconds: the consuming cases
        // wait to see that nothing more arrives.
        super::super::conformance::run(Arc::new(MemoryEvents::new())).await;
    }

    fn sized(payload: &str) -> OutgoingEvent {
        OutgoingEvent::new(payload)
    }

    #[tokio::test]
    async fn retention_removes_the_oldest_events_past_any_limit() {
        let events = MemoryEvents::new();
        let batch: Vec<OutgoingEvent> = (0..10).map(|n| sized(&format!("{n:04}"))).collect();
        events.publish_batch("t", batch).await.expect("publish");
        let first_offset = |topics: Vec<TopicInfo>| topics.first().map(|info| (info.first_offset, info.size_bytes));
        assert_eq!(events.topics().await.map(first_offset), Ok(Some((0, 40))), "4 bytes an event");

        let limits = Retention { max_bytes: Some(30), ..Retention::default() };
        events.set_retention("t", limits).await.expect("set retention");
        assert_eq!(events.topics().await.map(first_offset), Ok(Some((3, 28))));
        let limits = Retention { max_events: Some(2), ..Retention::default() };
        events.set_retention("t", limits).await.expect("set retention");
        assert_eq!(events.topics().await.map(first_offset), Ok(Some((8, 8))));
        events.publish("t", b"0010".to_vec(), Default::default()).await.expect("publish");
        let read = events.read("t", ReadOptions::default()).await.expect("read");
        assert_eq!(read.iter().map(|event| event.offset).collect::<Vec<_>>(), [9, 10], "applied on publish");
        let zero = Retention { max_events: Some(0), max_age: Some(Duration::ZERO), max_bytes: Some(0) };
        events.set_retention("t", zero).await.expect("set retention");
        let topics = events.topics().await.expect("topics");
        assert!(topics[0].retention.is_unlimited(), "zero is no limit, as the cluster reads it");

        let limits = Retention { max_age: Some(Duration::from_millis(1)), ..Retention::default() };
        events.set_retention("t", limits).await.expect("set retention");
        // Real time: the limit is on the events' wall-clock timestamps.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(events.read("t", ReadOptions::default()).await, Ok(Vec::new()), "all older than 1 ms");
    }
}
