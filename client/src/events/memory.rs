//! [`MemoryEvents`]: event logs inside the process, for unit tests of services. It applies the
//! cluster's rules (validation with the same words, dense offsets, timestamps that never go
//! backwards, all-or-nothing batches, de-duplication by id) and measures the de-duplication
//! window on tokio's clock, so tests can use `tokio::time::pause()` to step past it.
//! Timestamps are wall-clock time, as the cluster's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    rules, since_unix_ms, unix_ms_time, Event, Events, OutgoingEvent, Published, ReadOptions, Start, TopicInfo,
    DEDUP_IDS_MAX, DEDUP_WINDOW,
};
use crate::error::{Error, Result};

/// An in-memory [`Events`]. Cheap to clone: clones share the same topics.
#[derive(Clone, Default)]
pub struct MemoryEvents {
    /// std Mutex: never held across an `.await`.
    topics: Arc<Mutex<BTreeMap<String, Topic>>>,
}

#[derive(Default)]
struct Topic {
    /// Event `n` at index `n`: nothing is ever removed yet, so the first offset is 0.
    events: Vec<Stored>,
    last_timestamp_ms: i64,
    /// Ids published within the window, oldest first, and their index for lookups.
    recent: VecDeque<(String, Instant)>,
    by_id: HashMap<String, u64>,
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

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Topic>> {
        // Every change is made whole under the lock before it is released: keep going after a
        // panic elsewhere.
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Topic {
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

    fn event(&self, topic: &str, offset: u64) -> Option<Event> {
        let stored = self.events.get(usize::try_from(offset).ok()?)?;
        Some(Event {
            topic: topic.to_string(),
            offset,
            id: stored.id.clone(),
            timestamp: unix_ms_time(stored.timestamp_ms),
            metadata: stored.metadata.clone(),
            payload: stored.payload.clone(),
        })
    }
}

#[async_trait]
impl Events for MemoryEvents {
    async fn publish_batch(&self, topic: &str, events: Vec<OutgoingEvent>) -> Result<Vec<Published>> {
        rules::topic(topic)?;
        rules::batch(&events)?;
        let now = Instant::now();
        let mut topics = self.lock();
        let log = topics.entry(topic.to_string()).or_default();
        // One timestamp for the batch, never before the topic's last one.
        let timestamp_ms = now_unix_ms().max(log.last_timestamp_ms);
        log.forget_ids(now);
        let mut published = Vec::with_capacity(events.len());
        for event in events {
            let id = event.id.filter(|id| !id.is_empty());
            if let Some(offset) = id.as_ref().and_then(|id| log.by_id.get(id)) {
                published.push(Published { offset: *offset, duplicate: true });
                continue;
            }
            let offset = log.events.len() as u64;
            if let Some(id) = &id {
                log.remember_id(id.clone(), offset, now);
            }
            log.events.push(Stored { id, timestamp_ms, metadata: event.metadata, payload: event.payload });
            published.push(Published { offset, duplicate: false });
        }
        log.last_timestamp_ms = timestamp_ms;
        Ok(published)
    }

    async fn read(&self, topic: &str, options: ReadOptions) -> Result<Vec<Event>> {
        rules::topic(topic)?;
        let limit = rules::limit(options.limit)?;
        let topics = self.lock();
        let log = topics.get(topic).ok_or(Error::NotFound)?;
        let from = match options.start {
            Start::Earliest => 0,
            Start::Offset(offset) => offset,
            Start::Since(time) => {
                let since_ms = since_unix_ms(time);
                // Timestamps never go backwards within a topic: the events are sorted by them.
                log.events.partition_point(|stored| stored.timestamp_ms < since_ms) as u64
            }
        };
        Ok((from..).take(limit as usize).map_while(|offset| log.event(topic, offset)).collect())
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        let topics = self.lock();
        Ok(topics
            .iter()
            .map(|(topic, log)| TopicInfo {
                topic: topic.clone(),
                first_offset: 0,
                next_offset: log.events.len() as u64,
            })
            .collect())
    }
}

/// The wall clock in Unix milliseconds, as the cluster's leader stamps events.
fn now_unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
