//! LeaseRevoke: etcd's lessor Revoke, from a client or from the leader when a lease expires.

use crate::command::{LeaseRevokeRequest, LeaseRevokeResponse};
use crate::mvcc::{KeySpan, MvccError, MvccStore, OpError};
use crate::storage::StorageError;

use super::Apply;

impl Apply for LeaseRevokeRequest {
    /// The lease's keys are deleted in key order, all at one revision, then the lease is
    /// forgotten.
    fn apply(&self, state: &mut MvccStore) -> Result<LeaseRevokeResponse, OpError> {
        let Some(lease) = state.leases.get(self.id) else {
            return Err(MvccError::LeaseNotFound.into());
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let mut txn = state.begin_write();
        let deleted = keys.iter().try_for_each(|key| -> Result<(), StorageError> {
            state.delete_span(&mut txn, KeySpan::Single(key))?;
            Ok(())
        });
        state.end_write(txn);
        deleted?;
        state.leases.forget(self.id);
        Ok(LeaseRevokeResponse { header_revision: state.current_revision() })
    }
}
