//! Topic retention: where the leader would cut a topic now under its limits (events, age,
//! bytes). The cut depends on the clock, so the leader computes it ([`MvccStore::retention_cut`])
//! and proposes `TrimTopic` with the offset (`crate::apply::trim_topic`): applying a trim is
//! deterministic.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use crate::keys::prefix_range_end;
use crate::storage::StorageError;

use super::events::{event_key, topic_prefix, StoredEvent};
use super::range::KeySpan;
use super::store::MvccStore;

/// Events one trim removes at most (the leader trims a long backlog in steps): bounds the
/// memory and the size of one command's changes.
pub const TRIM_STEP_MAX: u64 = 10_000;

impl MvccStore {
    /// The offset the topic should be trimmed to now under its retention, if that is past its
    /// first offset. Only the leader asks, and only it acts on the answer (by proposing a trim).
    pub fn retention_cut(&self, topic: &str, now_ms: i64) -> Result<Option<u64>, StorageError> {
        let Some(state) = self.topic(topic) else { return Ok(None) };
        let limits = state.retention;
        let mut cut = state.first_offset;
        if let Some(max_events) = limits.max_events {
            cut = cut.max(state.next_offset.saturating_sub(max_events));
        }
        let needs_scan = limits.max_age.is_some() || limits.max_bytes.is_some_and(|max| state.bytes > max);
        if needs_scan {
            // Checked: a stored age too large for i64 (the API refuses them now; older data
            // may hold one) keeps everything rather than wrapping to "all too old".
            let oldest_kept_ms =
                limits.max_age.map(|age| now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
            let mut excess = limits.max_bytes.map_or(0, |max| state.bytes.saturating_sub(max));
            let prefix = topic_prefix(topic);
            for value in self.event_values(&event_key(topic, cut), &prefix_range_end(&prefix))? {
                let Ok(event) = serde_json::from_slice::<StoredEvent>(&value) else { break };
                let too_old = oldest_kept_ms.is_some_and(|oldest| event.timestamp_ms < oldest);
                if !too_old && excess == 0 {
                    break;
                }
                excess = excess.saturating_sub(value.len() as u64);
                cut = cut.max(event.offset.saturating_add(1));
            }
        }
        let cut = cut.min(state.first_offset.saturating_add(TRIM_STEP_MAX));
        Ok((cut > state.first_offset).then_some(cut))
    }

    /// The current values of the event keys in [from, to), in offset order, at most
    /// [`TRIM_STEP_MAX`] of them. Reading the newest revision has no rule that can refuse it: an
    /// error is this member's storage failing.
    pub(crate) fn event_values(&self, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        let span = KeySpan::new(from, to);
        let kvs = self.keyspace.kvs_at_most(span, self.current_revision(), TRIM_STEP_MAX as usize)?;
        Ok(kvs.into_iter().map(|kv| kv.value).collect())
    }
}
