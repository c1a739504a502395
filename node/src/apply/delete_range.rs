//! DeleteRange: etcd's `applierV3backend.DeleteRange`.

use crate::command::{DeleteRangeRequest, DeleteRangeResponse};
use crate::error::ServerError;
use crate::mvcc::{KeySpan, MvccStore, OpError, WriteTxn};
use crate::storage::StorageError;

use super::Apply;

impl Apply for DeleteRangeRequest {
    /// etcd's `checkDeleteRequest`.
    fn check(&self) -> Result<(), ServerError> {
        if self.key.is_empty() {
            return Err(ServerError::EmptyKey);
        }
        Ok(())
    }

    fn apply(&self, state: &mut MvccStore) -> Result<DeleteRangeResponse, OpError> {
        let mut txn = state.begin_write();
        let response = delete_range(state, &mut txn, self);
        state.end_write(txn);
        Ok(response?)
    }
}

/// etcd's `DeleteRange` within the write transaction `txn`. The header revision is the one
/// being written if this or an earlier op of the transaction changed something.
pub(super) fn delete_range(
    state: &mut MvccStore,
    txn: &mut WriteTxn,
    request: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, StorageError> {
    let span = KeySpan::new(&request.key, &request.range_end);
    let prev_kvs = if request.prev_kv { state.kvs_at(span, txn.read_revision())? } else { Vec::new() };
    let deleted = state.delete_span(txn, span)?;
    Ok(DeleteRangeResponse { header_revision: txn.read_revision(), deleted, prev_kvs })
}
