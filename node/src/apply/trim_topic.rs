//! TrimTopic: the leader's retention decision (`MvccStore::retention_cut`), applied
//! deterministically. Only the leader proposes it (`command::validate`).

use crate::command::{TopicResponse, TrimTopicRequest};
use crate::mvcc::events::event_key;
use crate::mvcc::{KeySpan, MvccStore, OpError, TRIM_STEP_MAX};

use super::Apply;

impl Apply for TrimTopicRequest {
    /// Deletes the topic's events below `before` (never past its end, at most
    /// [`TRIM_STEP_MAX`]), each deletion a watch event, and moves its first offset there.
    fn apply(&self, state: &mut MvccStore) -> Result<TopicResponse, OpError> {
        let Some(mut topic) = state.topics.get(&self.topic).cloned() else {
            return Ok(TopicResponse { header_revision: state.current_revision(), first_offset: 0 });
        };
        let before = self.before.min(topic.next_offset).min(topic.first_offset.saturating_add(TRIM_STEP_MAX));
        if before <= topic.first_offset {
            return Ok(TopicResponse { header_revision: state.current_revision(), first_offset: topic.first_offset });
        }
        let (from, to) = (event_key(&self.topic, topic.first_offset), event_key(&self.topic, before));
        let freed: u64 = state.event_values(&from, &to)?.iter().map(|value| value.len() as u64).sum();
        let mut txn = state.begin_write();
        let outcome = state.delete_span(&mut txn, KeySpan::Range { from: &from, to: Some(&to) });
        state.end_write(txn);
        outcome?;
        topic.first_offset = before;
        topic.bytes = topic.bytes.saturating_sub(freed);
        state.topics.save(&self.topic, topic)?;
        Ok(TopicResponse { header_revision: state.current_revision(), first_offset: before })
    }
}
