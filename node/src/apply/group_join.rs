//! GroupJoin: a consumer group on a topic is created at its start offset, or its options are
//! updated.

use keel_model::group::GroupState;

use crate::command::{GroupJoinRequest, GroupJoinResponse};
use crate::error::ServerError;
use crate::mvcc::{MvccStore, OpError};

use super::{check_group, Apply};

impl Apply for GroupJoinRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_group(&self.topic, &self.group)
    }

    fn apply(&self, state: &mut MvccStore) -> Result<GroupJoinResponse, OpError> {
        let topic = state.topics.get(&self.topic).cloned().unwrap_or_default();
        if state.topics.get(&self.topic).is_none() {
            state.topics.save(&self.topic, topic.clone())?;
        }
        let mut group = match state.groups.get(&self.topic, &self.group) {
            Some(existing) => GroupState { options: self.options.clone(), ..existing.clone() },
            None => GroupState::new(self.start.clamp(topic.first_offset, topic.next_offset), self.options.clone()),
        };
        group.forget_trimmed(topic.first_offset);
        let response = GroupJoinResponse {
            header_revision: state.current_revision(),
            ack_floor: group.ack_floor(),
            cursor: group.cursor,
        };
        state.groups.save(&self.topic, &self.group, group)?;
        Ok(response)
    }
}
