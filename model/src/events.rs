//! Topics' shared rules: retention limits, the de-duplication window, and what the cluster
//! adds to a dead letter. The client checks requests against them; the node's state machine
//! applies them.

use std::time::Duration;

/// A publish whose event id was published to the same topic within this long is answered with
/// the first offset, marked `Published::duplicate`, instead of appending again (NATS
/// JetStream's default duplicate window).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// Event ids remembered per topic at most, whatever the window: bounds memory under id floods.
pub const DEDUP_IDS_MAX: usize = 100_000;
/// The longest ack wait a consumer may ask for: a day is already far past any sensible
/// processing time, and bounds how long a lost consumer's events stay claimed.
pub const ACK_WAIT_MAX: Duration = Duration::from_secs(24 * 3600);
/// The longest [`Retention::max_age`]: a century is "keep everything" for any event log, and
/// keeps `now - max_age` in Unix milliseconds far from `i64`'s ends (an age that wrapped to a
/// negative number would make every event too old and empty the topic).
pub const RETENTION_AGE_MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Metadata the cluster adds to an event it moves to the dead-letter topic
/// ([`crate::group::dead_letter_topic`]), beside the event's own: the topic it came from...
pub const DEAD_LETTER_TOPIC_KEY: &str = "dead-letter-topic";
/// ...the group that gave up on it...
pub const DEAD_LETTER_GROUP_KEY: &str = "dead-letter-group";
/// ...its offset there...
pub const DEAD_LETTER_OFFSET_KEY: &str = "dead-letter-offset";
/// ...and how many times it was delivered.
pub const DEAD_LETTER_DELIVERIES_KEY: &str = "dead-letter-deliveries";

/// How much of a topic the cluster keeps: once any limit is passed, the oldest events are
/// removed (by the leader, through the log, within about a second). `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    pub max_events: Option<u64>,
    /// Events older than this (by their timestamp) go.
    pub max_age: Option<Duration>,
    /// The stored size of the topic's events (payload, metadata and envelope).
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// No limit at all.
    pub fn is_unlimited(&self) -> bool {
        self.max_events.is_none() && self.max_age.is_none() && self.max_bytes.is_none()
    }
}
