//! SetRetention: the limits a topic keeps (events, age, bytes); the leader trims to them.

use crate::api::EventsError;
use crate::command::{SetRetentionRequest, TopicResponse};
use crate::error::ServerError;
use crate::mvcc::{MvccStore, OpError};

use super::{check_topic, Apply};

impl Apply for SetRetentionRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_topic(&self.topic)?;
        if self.retention.max_age.is_some_and(|age| age > keel_model::events::RETENTION_AGE_MAX) {
            return Err(EventsError::MaxAgeTooLong.into());
        }
        Ok(())
    }

    fn apply(&self, state: &mut MvccStore) -> Result<TopicResponse, OpError> {
        let mut topic = state.topics.get(&self.topic).cloned().unwrap_or_default();
        topic.retention = self.retention;
        let first_offset = topic.first_offset;
        state.topics.save(&self.topic, topic)?;
        Ok(TopicResponse { header_revision: state.current_revision(), first_offset })
    }
}
