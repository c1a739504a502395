//! Publish: events appended to a topic at its next dense offsets, all at one revision, with
//! ids seen within the de-duplication window answered with their first offset instead.

use crate::command::{NewEvent, PublishRequest, PublishResponse, Published};
use crate::error::ServerError;
use crate::mvcc::events::{event_key, RememberedId, StoredEvent, TopicState};
use crate::mvcc::{MvccStore, OpError, WriteTxn};
use crate::storage::StorageError;

use super::{check_topic, Apply};

impl Apply for PublishRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_topic(&self.topic)
    }

    /// Time comes from the command (stamped by the leader) and never goes backwards per topic.
    fn apply(&self, state: &mut MvccStore) -> Result<PublishResponse, OpError> {
        let mut topic = state.topics.get(&self.topic).cloned().unwrap_or_default();
        let timestamp_ms = self.timestamp_ms.max(topic.last_timestamp_ms);
        state.topics.forget_ids(&self.topic, timestamp_ms);
        let results = append(state, &self.topic, &mut topic, &self.events, timestamp_ms)?;
        state.topics.save(&self.topic, topic)?;
        Ok(PublishResponse { header_revision: state.current_revision(), timestamp_ms, results })
    }
}

/// Appends `events` to `topic` at its next offsets (ids seen within the window excepted), in
/// one write transaction, advancing `topic_state`, which the caller saves. Also used for dead
/// letters.
pub(super) fn append(
    state: &mut MvccStore,
    topic: &str,
    topic_state: &mut TopicState,
    events: &[NewEvent],
    timestamp_ms: i64,
) -> Result<Vec<Published>, StorageError> {
    let mut txn = state.begin_write();
    let results = append_in(state, &mut txn, topic, topic_state, events, timestamp_ms);
    state.end_write(txn);
    results
}

fn append_in(
    state: &mut MvccStore,
    txn: &mut WriteTxn,
    topic: &str,
    topic_state: &mut TopicState,
    events: &[NewEvent],
    timestamp_ms: i64,
) -> Result<Vec<Published>, StorageError> {
    use base64::Engine as _;
    let mut results = Vec::with_capacity(events.len());
    for event in events {
        if !event.id.is_empty() {
            if let Some(offset) = state.topics.offset_of_id(topic, &event.id) {
                results.push(Published { offset, duplicate: true });
                continue;
            }
        }
        let offset = topic_state.next_offset;
        topic_state.next_offset = offset.saturating_add(1);
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
        topic_state.bytes = topic_state.bytes.saturating_add(value.len() as u64);
        state.put_key(txn, &event_key(topic, offset), value, 0)?;
        if !event.id.is_empty() {
            let id = event.id.clone();
            state.topics.remember_id(RememberedId { topic: topic.to_string(), id, offset, timestamp_ms })?;
        }
        results.push(Published { offset, duplicate: false });
    }
    topic_state.last_timestamp_ms = timestamp_ms;
    Ok(results)
}
