//! Topics as offset-indexed logs inside the keyspace: a Publish appends its events at the next
//! dense offsets of the topic, as keys `/micro/events/<topic>/<offset, 20 digits>` (so etcd
//! watches and ranges see them), all at one revision. Each topic remembers its next offset
//! and last timestamp (timestamps never go backwards), and the ids published within the
//! de-duplication window, so a retried publish is answered with its first offset instead of
//! appending again. Time comes only from the command (stamped by the leader).
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use keel_client::events::group::{GroupState, LogBounds};

use crate::command::{NewEvent, PublishRequest, PublishResponse, Published, Retention};
use crate::storage::{Engine, StorageError, Table};

use super::store::{decode_record, MvccStore, OpError};

/// Where events live in the keyspace.
pub const EVENTS_PREFIX: &str = "/micro/events/";

/// A publish id seen within this long (by command time) is a duplicate (NATS JetStream's
/// default duplicate window).
pub const DEDUP_WINDOW_MS: i64 = keel_client::events::DEDUP_WINDOW.as_millis() as i64;

/// Ids remembered per topic at most, whatever the window: bounds memory under id floods.
pub const DEDUP_IDS_MAX: usize = keel_client::events::DEDUP_IDS_MAX;

/// `Table::StateMeta` prefixes: the topic's state, and its remembered ids.
const TOPIC_PREFIX: &[u8] = b"mvcc/topic/";
const TOPIC_ID_PREFIX: &[u8] = b"mvcc/topic-id/";
const GROUP_PREFIX: &[u8] = b"mvcc/group/";

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RememberedId {
    pub(crate) topic: String,
    pub(crate) id: String,
    pub(crate) offset: u64,
    pub(crate) timestamp_ms: i64,
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

/// The key of event `offset` of `topic`.
pub fn event_key(topic: &str, offset: u64) -> Vec<u8> {
    format!("{EVENTS_PREFIX}{topic}/{offset:020}").into_bytes()
}

/// The prefix of every event of `topic`.
pub fn topic_prefix(topic: &str) -> Vec<u8> {
    format!("{EVENTS_PREFIX}{topic}/").into_bytes()
}

/// Every topic and its recent ids, in memory; persisted through `staged_meta`.
#[derive(Debug, Default)]
pub(super) struct Topics {
    states: BTreeMap<String, TopicState>,
    /// Per topic, remembered ids oldest first, and their index for lookups.
    recent: HashMap<String, VecDeque<RememberedId>>,
    by_id: HashMap<(String, String), u64>,
    /// Consumer groups by (topic, group).
    pub(super) groups: BTreeMap<(String, String), GroupState>,
}

impl Topics {
    /// Loads every topic, remembered id and group. Only apply writes these records, so one
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
        for (key, value) in scan_meta(engine, GROUP_PREFIX)? {
            let name = name_in_key(&key, GROUP_PREFIX)?;
            // Groups never held NUL (always refused), topics did before names had one rule:
            // the last NUL is the separator, and `group_key` always writes one.
            let (topic, group) = name
                .rsplit_once('\0')
                .ok_or_else(|| StorageError(format!("mvcc: corrupt group key {key:?}: no topic/group separator")))?;
            let state = decode_record(&value, format_args!("group record {key:?}"))?;
            topics.groups.insert((topic.to_string(), group.to_string()), state);
        }
        remembered.sort_by_key(|r| (r.timestamp_ms, r.offset));
        for entry in remembered {
            topics.by_id.insert((entry.topic.clone(), entry.id.clone()), entry.offset);
            topics.recent.entry(entry.topic.clone()).or_default().push_back(entry);
        }
        Ok(topics)
    }
}

fn scan_meta(engine: &dyn Engine, prefix: &[u8]) -> Result<Vec<crate::command::KeyValuePair>, StorageError> {
    let mut found = Vec::new();
    engine.scan_prefix(Table::StateMeta, prefix, &mut |k, v| {
        found.push((k.to_vec(), v.to_vec()));
        true
    })?;
    Ok(found)
}

/// The name a `StateMeta` key of `prefix` stores: names are strings, so a key that is not
/// UTF-8 was never written by apply.
fn name_in_key<'k>(key: &'k [u8], prefix: &[u8]) -> Result<&'k str, StorageError> {
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

/// The `StateMeta` key of a group's state.
pub(crate) fn group_key(topic: &str, group: &str) -> Vec<u8> {
    let mut key = GROUP_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(group.as_bytes());
    key
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(value).map_err(|e| StorageError(format!("mvcc: cannot encode: {e}")))
}

impl MvccStore {
    /// The state of `topic`, if anything was ever published to it.
    pub fn topic(&self, topic: &str) -> Option<&TopicState> {
        self.topics.states.get(topic)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<(String, TopicState)> {
        self.topics.states.iter().map(|(name, state)| (name.clone(), state.clone())).collect()
    }

    pub(super) fn apply_publish(&mut self, request: &PublishRequest) -> Result<PublishResponse, OpError> {
        let mut state = self.topics.states.get(&request.topic).cloned().unwrap_or_default();
        let timestamp_ms = request.timestamp_ms.max(state.last_timestamp_ms);
        self.forget_ids(&request.topic, timestamp_ms);
        let mut txn = self.begin_write();
        let outcome = self.append_events(&mut txn, &request.topic, &mut state, &request.events, timestamp_ms);
        self.end_write(txn);
        let results = outcome?;
        self.save_topic(&request.topic, state)?;
        Ok(PublishResponse { header_revision: self.current_revision, timestamp_ms, results })
    }

    /// Appends `events` to `topic` at its next offsets (ids seen within the window excepted) in
    /// `txn`, advancing `state`, which the caller saves.
    pub(super) fn append_events(
        &mut self,
        txn: &mut super::store::WriteTxn,
        topic: &str,
        state: &mut TopicState,
        events: &[NewEvent],
        timestamp_ms: i64,
    ) -> Result<Vec<Published>, StorageError> {
        use base64::Engine as _;
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            if !event.id.is_empty() {
                if let Some(offset) = self.topics.by_id.get(&(topic.to_string(), event.id.clone())) {
                    results.push(Published { offset: *offset, duplicate: true });
                    continue;
                }
            }
            let offset = state.next_offset;
            state.next_offset = offset.saturating_add(1);
            let stored = StoredEvent {
                topic: topic.to_string(),
                offset,
                id: event.id.clone(),
                timestamp_ms,
                metadata: event.metadata.clone(),
                payload: base64::engine::general_purpose::STANDARD.encode(&event.payload),
            };
            // A struct of strings, maps and integers always serialises; were it ever not to, the
            // event must not be stored empty.
            let value = serde_json::to_vec(&stored)
                .map_err(|error| StorageError(format!("mvcc: cannot encode event {offset} of {topic:?}: {error}")))?;
            state.bytes = state.bytes.saturating_add(value.len() as u64);
            self.put_key(txn, &event_key(topic, offset), value, 0)?;
            if !event.id.is_empty() {
                let id = event.id.clone();
                self.remember_id(RememberedId { topic: topic.to_string(), id, offset, timestamp_ms })?;
            }
            results.push(Published { offset, duplicate: false });
        }
        state.last_timestamp_ms = timestamp_ms;
        Ok(results)
    }

    /// Stages `state` as `topic`'s and keeps it in memory.
    pub(super) fn save_topic(&mut self, topic: &str, state: TopicState) -> Result<(), StorageError> {
        self.stage_meta(topic_key(topic), Some(encode(&state)?));
        self.topics.states.insert(topic.to_string(), state);
        Ok(())
    }

    fn remember_id(&mut self, entry: RememberedId) -> Result<(), StorageError> {
        self.stage_meta(id_key(&entry.topic, &entry.id), Some(encode(&entry)?));
        self.topics.by_id.insert((entry.topic.clone(), entry.id.clone()), entry.offset);
        let recent = self.topics.recent.entry(entry.topic.clone()).or_default();
        recent.push_back(entry);
        if recent.len() > DEDUP_IDS_MAX {
            if let Some(oldest) = recent.pop_front() {
                self.topics.by_id.remove(&(oldest.topic.clone(), oldest.id.clone()));
                self.stage_meta(id_key(&oldest.topic, &oldest.id), None);
            }
        }
        Ok(())
    }

    /// Forgets the ids of `topic` published more than the window before `now_ms`.
    fn forget_ids(&mut self, topic: &str, now_ms: i64) {
        let mut forgotten = Vec::new();
        if let Some(recent) = self.topics.recent.get_mut(topic) {
            while recent.front().is_some_and(|oldest| now_ms.saturating_sub(oldest.timestamp_ms) > DEDUP_WINDOW_MS) {
                if let Some(oldest) = recent.pop_front() {
                    forgotten.push(oldest);
                }
            }
        }
        for oldest in forgotten {
            self.topics.by_id.remove(&(oldest.topic.clone(), oldest.id.clone()));
            self.stage_meta(id_key(&oldest.topic, &oldest.id), None);
        }
    }
}
