//! Event logs in go-micro's mould: a topic is an append-only log of events (payload bytes plus
//! string metadata), each at a dense offset from 0 and stamped with the time the cluster
//! appended it. Publishers give an event an id to make a retried publish safe; readers read a
//! page from an offset or a time.
//!
//! Consumers [`Events::consume`] a topic as a [`Subscription`]: a stream of [`Delivery`]s to
//! ack or nack. In a consumer group each event goes to one consumer of the group, the group's
//! position lives in the cluster (it survives reconnects and restarts), and an event not
//! acknowledged in time is delivered again, then moved to the topic's dead-letter topic
//! ([`group`] holds those rules, shared with the cluster's state machine). Without a group a
//! subscription sees every event from where it starts. Delivery is at least once: an ack that
//! did not land means the event comes again.
//!
//! [`Events`] is the contract; [`GrpcEvents`] talks to a Keel cluster and [`MemoryEvents`]
//! keeps everything in the process for unit tests. Both pass the same [`conformance`] suite.
//! This module knows nothing of etcd's KV API: the cluster maps offsets to keys.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::names;

#[doc(hidden)]
pub mod conformance;
mod consume;
pub use keel_model::group;
mod grpc;
mod grpc_consume;
mod memory;
mod memory_consume;

pub use consume::{Delivery, Subscription};
pub use grpc::GrpcEvents;
pub use memory::MemoryEvents;

/// Events one publish may carry: the cluster appends them in one replicated command.
pub const EVENTS_PER_PUBLISH_MAX: usize = 1000;
/// The largest event payload the cluster accepts (1 MiB, as a store record's value).
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// The longest topic, group or consumer name or event id: all are segments of the cluster's
/// keys and indexes (the one rule of [`crate::names`]).
pub const NAME_BYTES_MAX: usize = crate::names::NAME_BYTES_MAX;
/// The largest publish request (etcd's `--max-request-bytes` default, 1.5 MiB): a batch of
/// events must fit one replicated command, however small each event is.
pub const REQUEST_BYTES_MAX: usize = 1_572_864;
/// Events a read returns when [`ReadOptions::limit`] is not given.
pub const READ_LIMIT_DEFAULT: u32 = 1000;
/// The most events one read may ask for.
pub const READ_LIMIT_MAX: u32 = 10_000;
pub use keel_model::events::{
    Retention, ACK_WAIT_MAX, DEAD_LETTER_DELIVERIES_KEY, DEAD_LETTER_GROUP_KEY, DEAD_LETTER_OFFSET_KEY,
    DEAD_LETTER_TOPIC_KEY, DEDUP_IDS_MAX, DEDUP_WINDOW, RETENTION_AGE_MAX,
};

const _: () = assert!(PAYLOAD_BYTES_MAX < REQUEST_BYTES_MAX);
const _: () = assert!(READ_LIMIT_DEFAULT <= READ_LIMIT_MAX);
const _: () = assert!(group::ACK_WAIT_DEFAULT.as_secs() <= ACK_WAIT_MAX.as_secs());
const _: () = assert!(group::IN_FLIGHT_DEFAULT <= group::IN_FLIGHT_MAX);

/// Offset-indexed event logs. Object-safe: hold it as `Arc<dyn Events>`.
///
/// Reads are idempotent and fail over between cluster members freely. A publish is not: it is
/// sent to another member only when the failure proves it was never proposed; otherwise it
/// fails with [`Error::MayHaveBeenApplied`]. Give events an id and a publish becomes safe to
/// repeat within [`DEDUP_WINDOW`]. A subscription fails over by itself (see [`Subscription`]).
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

    /// Every topic, by name, with its first and next offsets, size, retention and groups.
    async fn topics(&self) -> Result<Vec<TopicInfo>>;

    /// Starts consuming `topic` (which need not exist yet) and answers once the cluster has
    /// accepted the subscription: from then on every event published is seen (by this
    /// subscription, or by one consumer of its group). Read the [`Subscription`] as a stream;
    /// drop it to stop, which gives its unacknowledged deliveries back to the group at once.
    ///
    /// With [`ConsumeOptions::group`], each event goes to one consumer of the group; a new group
    /// starts at [`ConsumeOptions::start`], an existing one where it stands (and takes this
    /// consumer's ack wait, retry limit and in-flight bound). Ack each [`Delivery`] (unless
    /// [`ConsumeOptions::auto_ack`]): one not acknowledged within the ack wait, or nacked, is
    /// delivered again, and after `1 + retry_limit` deliveries it is appended to
    /// [`group::dead_letter_topic`] instead, with the `DEAD_LETTER_*_KEY` metadata.
    ///
    /// [`Error::InvalidArgument`] for a bad topic, group or consumer name, an ack wait over
    /// [`ACK_WAIT_MAX`] or an in-flight bound over [`group::IN_FLIGHT_MAX`].
    async fn consume(&self, topic: &str, options: ConsumeOptions) -> Result<Subscription>;

    /// The consumer groups of `topic`, by name. [`Error::NotFound`] when the topic does not
    /// exist.
    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>>;

    /// Replaces `topic`'s retention limits (creating the topic if it does not exist). Events
    /// past a limit are removed from the oldest on, soon after (not necessarily before this
    /// returns); consumer groups skip what was removed.
    async fn set_retention(&self, topic: &str, retention: Retention) -> Result<()>;
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
    /// The stored size of the events kept, as [`Retention::max_bytes`] counts it. The cluster
    /// counts each event's stored record (payload, metadata and envelope); [`MemoryEvents`]
    /// counts payload, id and metadata bytes, a little less.
    pub size_bytes: u64,
    pub retention: Retention,
    /// By name.
    pub groups: Vec<GroupInfo>,
}

/// Where [`Events::consume`] starts: a new group, or a subscription without group. An existing
/// group ignores it and continues where it stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConsumeStart {
    /// The oldest event kept.
    #[default]
    Earliest,
    /// The next event published: none of those already there.
    Latest,
    /// This offset (the oldest kept if that one is gone).
    Offset(u64),
    /// The first event stamped at or after this time (whole milliseconds, as [`Start::Since`]).
    Since(SystemTime),
}

/// Options of [`Events::consume`]. The default: every event from the earliest, no group, acked
/// one by one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumeOptions {
    /// Share the topic with the other consumers of this group: each event goes to one of them,
    /// and the group's position is kept by the cluster. `None` (or empty): this subscription
    /// alone sees every event, and acks change nothing.
    pub group: Option<String>,
    pub start: ConsumeStart,
    /// Count each delivery as acknowledged when it is handed out: at most once instead of at
    /// least once, and no acks to send.
    pub auto_ack: bool,
    /// How long a delivery waits for its ack before it is delivered again (rounded up to whole
    /// milliseconds, at most [`ACK_WAIT_MAX`]); `None` or zero: [`group::ACK_WAIT_DEFAULT`].
    pub ack_wait: Option<Duration>,
    /// Deliveries after the first before an event goes to the dead-letter topic; `None`: it is
    /// delivered until acknowledged.
    pub retry_limit: Option<u32>,
    /// Unacknowledged deliveries out at once, to this subscription and to its whole group, at
    /// most [`group::IN_FLIGHT_MAX`]; `None` or 0: [`group::IN_FLIGHT_DEFAULT`].
    pub max_in_flight: Option<u32>,
    /// A name for this consumer (the cluster records which consumer holds each pending event);
    /// `None`: one is made up.
    pub consumer: Option<String>,
}

impl ConsumeOptions {
    /// A consumer of `group`, from the earliest event when the group is new, acking each event.
    pub fn in_group(group: impl Into<String>) -> ConsumeOptions {
        ConsumeOptions { group: Some(group.into()), ..ConsumeOptions::default() }
    }

    /// The group, if any: an empty name is no group, as the cluster reads it.
    pub(crate) fn group_name(&self) -> Option<&str> {
        self.group.as_deref().filter(|group| !group.is_empty())
    }
}

/// One consumer group of a topic, as [`Events::groups`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub group: String,
    /// Every offset below is acknowledged (or dead-lettered, or removed by retention).
    pub ack_floor: u64,
    /// The next offset never handed out to the group.
    pub cursor: u64,
    /// Delivered, not yet acknowledged.
    pub pending: u64,
    /// Not yet acknowledged: pending plus never delivered.
    pub lag: u64,
    /// The options of the consumer that joined last.
    pub ack_wait: Duration,
    pub retry_limit: Option<u32>,
    pub max_in_flight: u32,
}

/// A start time as the cluster's `since_ms`: Unix milliseconds rounded up, 0 for a time at or
/// before the epoch (which reads from the first event, as `Earliest` does).
pub(crate) fn since_unix_ms(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let milliseconds = since.as_millis() + u128::from(!since.subsec_nanos().is_multiple_of(1_000_000));
    i64::try_from(milliseconds).unwrap_or(i64::MAX)
}

/// A cluster timestamp (Unix milliseconds) as a time; negative ones, never sent, as the epoch.
pub(crate) fn unix_ms_time(milliseconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(milliseconds).unwrap_or(0))
}

/// A duration as the cluster's milliseconds (`ack_wait_ms`, `max_age_ms`): rounded up, so a
/// short one never becomes 0 (which means the default, or no limit).
pub(crate) fn whole_ms_rounded_up(duration: Duration) -> u64 {
    let milliseconds = duration.as_millis() + u128::from(!duration.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(milliseconds).unwrap_or(u64::MAX)
}

/// The checks the cluster makes, with its words, for implementations that cannot ask it.
pub(crate) mod rules {
    use super::*;

    pub(crate) fn topic(topic: &str) -> Result<()> {
        if topic.is_empty() {
            return Err(Error::InvalidArgument("events: topic name is empty".into()));
        }
        Ok(names::TOPIC.check(topic)?)
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

    /// A subscription, in the order the cluster checks; answers the group options it asks for.
    pub(crate) fn subscription(topic_name: &str, options: &ConsumeOptions) -> Result<group::GroupOptions> {
        topic(topic_name)?;
        // Empty: no group, a made-up consumer name.
        if let Some(group) = options.group_name() {
            names::GROUP.check(group)?;
        }
        if let Some(consumer) = options.consumer.as_deref().filter(|consumer| !consumer.is_empty()) {
            names::CONSUMER.check(consumer)?;
        }
        let ack_wait = match options.ack_wait.unwrap_or_default() {
            ack_wait if ack_wait.is_zero() => group::ACK_WAIT_DEFAULT,
            ack_wait if ack_wait > ACK_WAIT_MAX => {
                return Err(Error::InvalidArgument("events: ack wait must be at most 24h".into()))
            }
            ack_wait => ack_wait,
        };
        let max_in_flight = match options.max_in_flight.unwrap_or(0) {
            0 => group::IN_FLIGHT_DEFAULT,
            n if n > group::IN_FLIGHT_MAX => {
                return Err(Error::InvalidArgument(format!(
                    "events: max in flight must be at most {}",
                    group::IN_FLIGHT_MAX
                )))
            }
            n => n,
        };
        Ok(group::GroupOptions {
            ack_wait_ms: whole_ms_rounded_up(ack_wait),
            retry_limit: options.retry_limit,
            max_in_flight,
        })
    }

    /// Retention limits as the cluster keeps them: whole milliseconds, and a zero limit is no
    /// limit (the protocol's 0).
    /// An age over [`RETENTION_AGE_MAX`] is refused.
    pub(crate) fn retention(retention: Retention) -> Result<Retention> {
        if retention.max_age.is_some_and(|age| age > RETENTION_AGE_MAX) {
            return Err(Error::InvalidArgument(format!(
                "events: max age must be at most {} ms",
                RETENTION_AGE_MAX.as_millis()
            )));
        }
        Ok(Retention {
            max_events: retention.max_events.filter(|max| *max > 0),
            max_age: retention
                .max_age
                .map(whole_ms_rounded_up)
                .filter(|milliseconds| *milliseconds > 0)
                .map(Duration::from_millis),
            max_bytes: retention.max_bytes.filter(|max| *max > 0),
        })
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

    #[test]
    fn ack_waits_round_up_to_whole_milliseconds() {
        let cases = [(Duration::ZERO, 0), (Duration::from_micros(1), 1), (Duration::from_millis(300), 300)];
        for (ack_wait, milliseconds) in cases {
            assert_eq!(whole_ms_rounded_up(ack_wait), milliseconds, "{ack_wait:?}");
        }
    }

    #[test]
    fn subscriptions_follow_the_cluster_rules() {
        let check = |options: ConsumeOptions| rules::subscription("orders", &options);
        let defaults = check(ConsumeOptions::default()).expect("the defaults are valid");
        assert_eq!(defaults, group::GroupOptions::default());
        let short = ConsumeOptions { ack_wait: Some(Duration::from_micros(10)), ..ConsumeOptions::default() };
        assert_eq!(check(short).map(|options| options.ack_wait_ms), Ok(1), "never rounded down to the default");
        let refused = [
            ConsumeOptions::in_group("a/b"),
            ConsumeOptions::in_group("a\0b"),
            ConsumeOptions::in_group("g".repeat(NAME_BYTES_MAX + 1)),
            ConsumeOptions { consumer: Some("c".repeat(NAME_BYTES_MAX + 1)), ..ConsumeOptions::default() },
            ConsumeOptions { ack_wait: Some(ACK_WAIT_MAX + Duration::from_millis(1)), ..ConsumeOptions::default() },
            ConsumeOptions { max_in_flight: Some(group::IN_FLIGHT_MAX + 1), ..ConsumeOptions::default() },
        ];
        for options in refused {
            assert!(matches!(check(options.clone()), Err(Error::InvalidArgument(_))), "{options:?}");
        }
        assert!(rules::subscription("", &ConsumeOptions::default()).is_err());
    }
}
