//! The records the node's state machine stores beside the keyspace, and the events it stores in
//! it. Their encodings are the data dir's format (postcard, except `StoredEvent`, which is JSON
//! so etcd clients can read it); the node's golden-bytes tests fail on any change to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::Retention;
use crate::group::LogBounds;

/// A lease: its id and granted TTL (which keys it holds is rebuilt from the keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl_secs: i64,
}

/// What is remembered per topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub next_offset: u64,
    pub last_timestamp_ms: i64,
    /// The oldest offset kept (retention removes events below it).
    pub first_offset: u64,
    /// The stored size of the kept events (their values in the keyspace).
    pub bytes: u64,
    pub retention: Retention,
}

impl TopicState {
    pub fn bounds(&self) -> LogBounds {
        LogBounds { first: self.first_offset, next: self.next_offset }
    }
}

/// A publish id within the de-duplication window, and where it was published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedId {
    pub topic: String,
    pub id: String,
    pub offset: u64,
    pub timestamp_ms: i64,
}

/// An event as stored at its key (JSON, so etcd clients can read it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub topic: String,
    pub offset: u64,
    #[serde(default)]
    pub id: String,
    pub timestamp_ms: i64,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Base64 (JSON has no bytes).
    pub payload: String,
}
