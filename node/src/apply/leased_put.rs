//! LeasedPut: the Store's TTL records, a put on a lease shared by the records of one TTL.

use crate::command::{LeasedPutRequest, LeasedPutResponse};
use crate::error::ServerError;
use crate::mvcc::{MvccError, MvccStore, OpError};

use super::{check_ttl, Apply};

impl Apply for LeasedPutRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_ttl(self.ttl_secs)
    }

    /// Puts on `reuse` if it exists, else on a new lease `grant_id` of `ttl_secs`.
    fn apply(&self, state: &mut MvccStore) -> Result<LeasedPutResponse, OpError> {
        let lease = if self.reuse != 0 && state.leases.contains(self.reuse) {
            self.reuse
        } else {
            if state.leases.contains(self.grant_id) {
                return Err(MvccError::LeaseExists.into());
            }
            state.leases.grant(self.grant_id, self.ttl_secs);
            self.grant_id
        };
        let mut txn = state.begin_write();
        let written = state.put_key(&mut txn, &self.key, self.value.clone(), lease);
        state.end_write(txn);
        written?;
        Ok(LeasedPutResponse { header_revision: state.current_revision(), lease_id: lease })
    }
}
