//! The topics sub-store. Topics are offset-indexed logs inside the keyspace: a Publish (see
//! `crate::apply::publish`) appends its events at the next
//! dense offsets of the topic, as keys `/micro/events/<topic>/<offset, 20 digits>` (so etcd
//! watches and ranges see them), all at one revision. Each topic remembers its next offset
//! and last timestamp (timestamps never go backwards), and the ids published within the
//! de-duplication window, so a retried publish is answered with its first offset instead of
//! appending again. Time comes only from the command (stamped by the leader).
//!
//! This sub-store owns the `mvcc/topic/` and `mvcc/topic-id/` records of `Table::StateMeta`
//! and stages its own changes to them; the event keys themselves are the keyspace's.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

pub use keel_model::stored::{RememberedId, StoredEvent, TopicState};

use crate::storage::{Engine, StorageError, Table, WriteBatch};

use super::keyspace::decode_record;
use super::store::MvccStore;

/// Where events live in the keyspace.
pub const EVENTS_PREFIX: &str = "/micro/events/";

/// A publish id seen within this long (by command time) is a duplicate (NATS JetStream's
/// default duplicate window).
pub const DEDUP_WINDOW_MS: i64 = keel_model::events::DEDUP_WINDOW.as_millis() as i64;

/// Ids remembered per topic at most, whatever the window: bounds memory under id floods.
pub const DEDUP_IDS_MAX: usize = keel_model::events::DEDUP_IDS_MAX;

/// `Table::StateMeta` prefixes: the topic's state, and its remembered ids.
const TOPIC_PREFIX: &[u8] = b"mvcc/topic/";
const TOPIC_ID_PREFIX: &[u8] = b"mvcc/topic-id/";

/// The key of event `offset` of `topic`.
pub fn event_key(topic: &str, offset: u64) -> Vec<u8> {
    format!("{EVENTS_PREFIX}{topic}/{offset:020}").into_bytes()
}

/// The prefix of every event of `topic`.
pub fn topic_prefix(topic: &str) -> Vec<u8> {
    format!("{EVENTS_PREFIX}{topic}/").into_bytes()
}

/// Every topic and its recent ids, in memory, and the records changed since the last commit.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    states: BTreeMap<String, TopicState>,
    /// Per topic, remembered ids oldest first, and their index for lookups.
    recent: HashMap<String, VecDeque<RememberedId>>,
    by_id: HashMap<(String, String), u64>,
    /// `StateMeta` records written (`Some`) or deleted (`None`) since the last commit.
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Topics {
    /// Loads every topic and remembered id. Only apply writes these records, so one
    /// that does not read back exactly (its key or its value) means this member's storage is
    /// damaged: the load fails rather than skip the record or read it as another.
    pub fn load(engine: &dyn Engine) -> Result<Self, StorageError> {
        let mut topics = Topics::default();
        for (key, value) in scan_meta(engine, TOPIC_PREFIX)? {
            let topic = name_in_key(&key, TOPIC_PREFIX)?;
            let state = decode_record(&value, format_args!("topic record {key:?}"))?;
            topics.states.insert(topic.to_string(), state);
        }
        let mut remembered: Vec<RememberedId> = scan_meta(engine, TOPIC_ID_PREFIX)?
            .into_iter()
            .map(|(key, value)| decode_record(&value, format_args!("topic id record {key:?}")))
            .collect::<Result<_, _>>()?;
        remembered.sort_by_key(|r| (r.timestamp_ms, r.offset));
        for entry in remembered {
            topics.by_id.insert((entry.topic.clone(), entry.id.clone()), entry.offset);
            topics.recent.entry(entry.topic.clone()).or_default().push_back(entry);
        }
        Ok(topics)
    }
}

pub(super) fn scan_meta(engine: &dyn Engine, prefix: &[u8]) -> Result<Vec<crate::command::KeyValuePair>, StorageError> {
    let mut found = Vec::new();
    engine.scan_prefix(Table::StateMeta, prefix, &mut |k, v| {
        found.push((k.to_vec(), v.to_vec()));
        true
    })?;
    Ok(found)
}

/// The name a `StateMeta` key of `prefix` stores: names are strings, so a key that is not
/// UTF-8 was never written by apply.
pub(super) fn name_in_key<'k>(key: &'k [u8], prefix: &[u8]) -> Result<&'k str, StorageError> {
    key.strip_prefix(prefix)
        .and_then(|name| std::str::from_utf8(name).ok())
        .ok_or_else(|| StorageError(format!("mvcc: corrupt key {key:?}: not a name under {prefix:?}")))
}

pub(crate) fn id_key(topic: &str, id: &str) -> Vec<u8> {
    let mut key = TOPIC_ID_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The `StateMeta` key of a topic's state.
pub(crate) fn topic_key(topic: &str) -> Vec<u8> {
    let mut key = TOPIC_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    key
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(value).map_err(|e| StorageError(format!("mvcc: cannot encode: {e}")))
}

impl Topics {
    /// The state of `topic`, if anything was ever published to it.
    pub fn get(&self, topic: &str) -> Option<&TopicState> {
        self.states.get(topic)
    }

    /// The offset `id` was published at on `topic`, if within the de-duplication window.
    pub fn offset_of_id(&self, topic: &str, id: &str) -> Option<u64> {
        self.by_id.get(&(topic.to_string(), id.to_string())).copied()
    }

    /// Stages `state` as `topic`'s and keeps it in memory.
    pub fn save(&mut self, topic: &str, state: TopicState) -> Result<(), StorageError> {
        self.staged.insert(topic_key(topic), Some(encode(&state)?));
        self.states.insert(topic.to_string(), state);
        Ok(())
    }

    /// Remembers a published id, forgetting the topic's oldest beyond [`DEDUP_IDS_MAX`].
    pub fn remember_id(&mut self, entry: RememberedId) -> Result<(), StorageError> {
        self.staged.insert(id_key(&entry.topic, &entry.id), Some(encode(&entry)?));
        self.by_id.insert((entry.topic.clone(), entry.id.clone()), entry.offset);
        let recent = self.recent.entry(entry.topic.clone()).or_default();
        recent.push_back(entry);
        if recent.len() > DEDUP_IDS_MAX {
            if let Some(oldest) = recent.pop_front() {
                self.by_id.remove(&(oldest.topic.clone(), oldest.id.clone()));
                self.staged.insert(id_key(&oldest.topic, &oldest.id), None);
            }
        }
        Ok(())
    }

    /// Forgets the ids of `topic` published more than the window before `now_ms`.
    pub fn forget_ids(&mut self, topic: &str, now_ms: i64) {
        let Some(recent) = self.recent.get_mut(topic) else { return };
        while recent.front().is_some_and(|oldest| now_ms.saturating_sub(oldest.timestamp_ms) > DEDUP_WINDOW_MS) {
            if let Some(oldest) = recent.pop_front() {
                self.by_id.remove(&(oldest.topic.clone(), oldest.id.clone()));
                self.staged.insert(id_key(&oldest.topic, &oldest.id), None);
            }
        }
    }

    /// Moves the records staged since the last call into `batch`.
    pub fn take_staged(&mut self, batch: &mut WriteBatch) {
        for (key, record) in std::mem::take(&mut self.staged) {
            match record {
                Some(value) => batch.put(Table::StateMeta, key, value),
                None => batch.delete(Table::StateMeta, key),
            }
        }
    }
}

impl MvccStore {
    /// The state of `topic`, if anything was ever published to it.
    pub fn topic(&self, topic: &str) -> Option<&TopicState> {
        self.topics.get(topic)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<(String, TopicState)> {
        self.topics.states.iter().map(|(name, state)| (name.clone(), state.clone())).collect()
    }
}
