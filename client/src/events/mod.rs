//! Event logs in go-micro's mould: a topic is an append-only log of events (payload bytes plus
//! string metadata), each at a dense offset from 0 and stamped with the time the cluster
//! appended it. Publishers give an event an id to make a retried publish safe; readers read a
//! page from an offset or a time.
//!
//! [`Events`] is the contract; [`GrpcEvents`] talks to a Keel cluster and [`MemoryEvents`]
//! keeps everything in the process for unit tests. Both pass the same [`conformance`] suite.
//! This module knows nothing of etcd's KV API: the cluster maps offsets to keys.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::error::{Error, Result};

#[doc(hidden)]
pub mod conformance;
mod grpc;
mod memory;

pub use grpc::GrpcEvents;
pub use memory::MemoryEvents;

/// Events one publish may carry: the cluster appends them in one replicated command.
pub const EVENTS_PER_PUBLISH_MAX: usize = 1000;
/// The largest event payload the cluster accepts (1 MiB, as a store record's value).
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// The longest topic name or event id: both are segments of the cluster's keys and indexes.
pub const NAME_BYTES_MAX: usize = 256;
/// The largest publish request (etcd's `--max-request-bytes` default, 1.5 MiB): a batch of
/// events must fit one replicated command, however small each event is.
pub const REQUEST_BYTES_MAX: usize = 1_572_864;
/// Events a read returns when [`ReadOptions::limit`] is not given.
pub const READ_LIMIT_DEFAULT: u32 = 1000;
/// The most events one read may ask for.
pub const READ_LIMIT_MAX: u32 = 10_000;
/// A publish whose event id was published to the same topic within this long is answered with
/// the first offset, marked [`Published::duplicate`], instead of appending again (NATS
/// JetStream's default duplicate window).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// Event ids remembered per topic at most, whatever the window: bounds memory under id floods.
pub const DEDUP_IDS_MAX: usize = 100_000;

const _: () = assert!(PAYLOAD_BYTES_MAX < REQUEST_BYTES_MAX);
const _: () = assert!(READ_LIMIT_DEFAULT <= READ_LIMIT_MAX);

/// Offset-indexed event logs. Object-safe: hold it as `Arc<dyn Events>`.
///
/// Reads are idempotent and fail over between cluster members freely. A publish is not: it is
/// sent to another member only when the failure proves it was never proposed; otherwise it
/// fails with [`Error::MayHaveBeenApplied`]. Give events an id and a publish becomes safe to
/// repeat within [`DEDUP_WINDOW`].
///
/// Consuming with groups (`consume(topic, ConsumeOptions { group, start, auto_ack, .. })`, a
/// stream of events to ack or nack, see DESIGN.md) will join this trait once the cluster serves
/// it.
#[async_trait]
pub trait Events: Send + Sync {
    /// Appends one event to `topic` (created by its first event) and answers its offset.
    async fn publish(&self, topic: &str, payload: Vec<u8>, options: PublishOptions) -> Result<Published> {
        let event = OutgoingEvent { id: options.id, metadata: options.metadata, payload };
        let mut published = self.publish_batch(topic, vec![event]).await?;
        match (published.pop(), published.is_empty()) {
            (Some(published), true) => Ok(published),
            _ => Err(Error::InvalidResponse("a publish of one event was not answered with one offset".into())),
        }
    }

    /// Appends `events` (1 to [`EVENTS_PER_PUBLISH_MAX`]) to `topic` at once, at consecutive
    /// offsets (duplicates excepted), all with the same timestamp; answers one [`Published`] per
    /// event, in order. Either every event is appended or none.
    async fn publish_batch(&self, topic: &str, events: Vec<OutgoingEvent>) -> Result<Vec<Published>>;

    /// A page of `topic`'s events in offset order, from where [`ReadOptions::start`] says, at
    /// most [`ReadOptions::limit`] of them. Continue from the last event's offset plus one.
    /// [`Error::NotFound`] when nothing was ever published to `topic`; reading past its end
    /// returns no events.
    async fn read(&self, topic: &str, options: ReadOptions) -> Result<Vec<Event>>;

    /// Every topic, by name, with its first and next offsets.
    async fn topics(&self) -> Result<Vec<TopicInfo>>;
}

/// One event as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub topic: String,
    /// Dense per topic, from 0.
    pub offset: u64,
    /// The id it was published with, if any.
    pub id: Option<String>,
    /// When the cluster appended it, to the millisecond; never earlier than the event before.
    pub timestamp: SystemTime,
    pub metadata: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// One event of [`Events::publish_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// Makes a repeated publish safe: an id published to the topic within [`DEDUP_WINDOW`] is
    /// not appended again. `None` (or an empty id): no de-duplication.
    pub id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl OutgoingEvent {
    /// An event without id or metadata.
    pub fn new(payload: impl Into<Vec<u8>>) -> OutgoingEvent {
        OutgoingEvent { payload: payload.into(), ..OutgoingEvent::default() }
    }

    /// An event with a de-duplication id and no metadata.
    pub fn with_id(id: impl Into<String>, payload: impl Into<Vec<u8>>) -> OutgoingEvent {
        OutgoingEvent { id: Some(id.into()), ..OutgoingEvent::new(payload) }
    }
}

/// Options of [`Events::publish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    pub metadata: BTreeMap<String, String>,
    /// See [`OutgoingEvent::id`].
    pub id: Option<String>,
}

/// Where one published event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub offset: u64,
    /// Its id was already published within [`DEDUP_WINDOW`]: nothing was appended and `offset`
    /// is the first event's.
    pub duplicate: bool,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Start {
    /// The oldest event kept.
    #[default]
    Earliest,
    /// This offset (past the end: no events).
    Offset(u64),
    /// The first event stamped at or after this time (the cluster counts whole milliseconds,
    /// so a time inside a millisecond starts at the next one).
    Since(SystemTime),
}

/// Options of [`Events::read`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub start: Start,
    /// At most this many events, up to [`READ_LIMIT_MAX`]; `None` or 0: [`READ_LIMIT_DEFAULT`].
    pub limit: Option<u32>,
}

impl ReadOptions {
    /// From `offset`, the default page size.
    pub fn from_offset(offset: u64) -> ReadOptions {
        ReadOptions { start: Start::Offset(offset), limit: None }
    }
}

/// One topic as [`Events::topics`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub topic: String,
    /// The offset of the oldest event kept.
    pub first_offset: u64,
    /// The offset the next event will get.
    pub next_offset: u64,
}

/// A start time as the cluster's `since_ms`: Unix milliseconds rounded up, 0 for a time at or
/// before the epoch (which reads from the first event, as `Earliest` does).
pub(crate) fn since_unix_ms(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let milliseconds = since.as_millis() + u128::from(since.subsec_nanos() % 1_000_000 > 0);
    i64::try_from(milliseconds).unwrap_or(i64::MAX)
}

/// A cluster timestamp (Unix milliseconds) as a time; negative ones, never sent, as the epoch.
pub(crate) fn unix_ms_time(milliseconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(milliseconds).unwrap_or(0))
}

/// The checks the cluster makes, with its words, for implementations that cannot ask it.
pub(crate) mod rules {
    use super::*;

    pub(crate) fn topic(topic: &str) -> Result<()> {
        if topic.is_empty() {
            return Err(Error::InvalidArgument("events: topic name is empty".into()));
        }
        if topic.contains('/') || topic.len() > NAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "events: topic {topic:?} must not contain '/' and be at most {NAME_BYTES_MAX} bytes"
            )));
        }
        Ok(())
    }

    /// A publish of `events`, in the order the cluster checks.
    pub(crate) fn batch(events: &[OutgoingEvent]) -> Result<()> {
        if events.is_empty() {
            return Err(Error::InvalidArgument("events: a publish needs at least one event".into()));
        }
        if events.len() > EVENTS_PER_PUBLISH_MAX {
            return Err(Error::InvalidArgument(format!("events: at most {EVENTS_PER_PUBLISH_MAX} events per publish")));
        }
        for event in events {
            if event.payload.len() > PAYLOAD_BYTES_MAX {
                return Err(Error::InvalidArgument(format!(
                    "events: a payload is larger than {PAYLOAD_BYTES_MAX} bytes"
                )));
            }
            if event.id.as_ref().is_some_and(|id| id.len() > NAME_BYTES_MAX) {
                return Err(Error::InvalidArgument(format!(
                    "events: an event id is longer than {NAME_BYTES_MAX} bytes"
                )));
            }
        }
        // The cluster measures the encoded command; the bytes the events carry are a close
        // lower bound of that.
        let bytes: usize = events
            .iter()
            .map(|event| {
                let metadata: usize = event.metadata.iter().map(|(key, value)| key.len() + value.len()).sum();
                event.payload.len() + event.id.as_ref().map_or(0, String::len) + metadata
            })
            .sum();
        if bytes > REQUEST_BYTES_MAX {
            return Err(Error::InvalidArgument("etcdserver: request is too large".into()));
        }
        Ok(())
    }

    /// The page size a read gets.
    pub(crate) fn limit(limit: Option<u32>) -> Result<u32> {
        match limit.unwrap_or(0) {
            0 => Ok(READ_LIMIT_DEFAULT),
            limit if limit > READ_LIMIT_MAX => {
                Err(Error::InvalidArgument(format!("events: limit must be at most {READ_LIMIT_MAX}")))
            }
            limit => Ok(limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_round_up_to_whole_milliseconds() {
        let cases = [
            (UNIX_EPOCH, 0),
            (UNIX_EPOCH + Duration::from_micros(1), 1),
            (UNIX_EPOCH + Duration::from_millis(1_500), 1_500),
            (UNIX_EPOCH + Duration::from_micros(1_500_001), 1_501),
        ];
        for (time, milliseconds) in cases {
            assert_eq!(since_unix_ms(time), milliseconds, "{time:?}");
        }
        assert_eq!(since_unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0, "before the epoch");
        assert_eq!(unix_ms_time(1_500), UNIX_EPOCH + Duration::from_millis(1_500));
    }

    #[test]
    fn limits_default_and_cap() {
        assert_eq!(rules::limit(None), Ok(READ_LIMIT_DEFAULT));
        assert_eq!(rules::limit(Some(0)), Ok(READ_LIMIT_DEFAULT));
        assert_eq!(rules::limit(Some(READ_LIMIT_MAX)), Ok(READ_LIMIT_MAX));
        assert!(rules::limit(Some(READ_LIMIT_MAX + 1)).is_err());
    }

    #[test]
    fn batches_follow_the_cluster_rules() {
        assert!(rules::batch(&[]).is_err());
        assert!(rules::batch(&[OutgoingEvent::new(vec![0; PAYLOAD_BYTES_MAX])]).is_ok());
        assert!(rules::batch(&[OutgoingEvent::new(vec![0; PAYLOAD_BYTES_MAX + 1])]).is_err());
        assert!(rules::batch(&[OutgoingEvent::with_id("x".repeat(NAME_BYTES_MAX + 1), "p")]).is_err());
        let two_large = vec![OutgoingEvent::new(vec![0; PAYLOAD_BYTES_MAX]); 2];
        assert_eq!(rules::batch(&two_large), Err(Error::InvalidArgument("etcdserver: request is too large".into())));
        assert!(rules::batch(&vec![OutgoingEvent::new("p"); EVENTS_PER_PUBLISH_MAX + 1]).is_err());
        assert!(rules::topic("orders").is_ok());
        assert!(rules::topic("").is_err());
        assert!(rules::topic("a/b").is_err());
    }
}
