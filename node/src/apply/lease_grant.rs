//! LeaseGrant: etcd's lessor Grant. The id is chosen by the proposer, so applying is
//! deterministic.

use crate::command::{LeaseGrantRequest, LeaseGrantResponse};
use crate::error::ServerError;
use crate::mvcc::{MvccError, MvccStore, OpError};

use super::{check_ttl, Apply};

impl Apply for LeaseGrantRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_ttl(self.ttl_secs)
    }

    fn apply(&self, state: &mut MvccStore) -> Result<LeaseGrantResponse, OpError> {
        if state.leases.contains(self.id) {
            return Err(MvccError::LeaseExists.into());
        }
        state.leases.grant(self.id, self.ttl_secs);
        Ok(LeaseGrantResponse { header_revision: state.current_revision(), id: self.id, ttl_secs: self.ttl_secs })
    }
}
