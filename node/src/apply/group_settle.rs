//! GroupSettle: a consumer's acks and nacks of the events it was handed.

use crate::command::{GroupSettleRequest, GroupSettleResponse};
use crate::error::ServerError;
use crate::mvcc::{MvccStore, OpError};

use super::{check_group, Apply};

impl Apply for GroupSettleRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_group(&self.topic, &self.group)
    }

    fn apply(&self, state: &mut MvccStore) -> Result<GroupSettleResponse, OpError> {
        let Some(group) = state.groups.get(&self.topic, &self.group) else {
            return Ok(GroupSettleResponse { header_revision: state.current_revision(), acked: Vec::new() });
        };
        let mut group = group.clone();
        let acked = group.settle(&self.acks, &self.nacks, self.now_ms);
        state.groups.save(&self.topic, &self.group, group)?;
        Ok(GroupSettleResponse { header_revision: state.current_revision(), acked })
    }
}
