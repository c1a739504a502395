//! Put: etcd's `applierV3backend.Put`.

use crate::command::{PutRequest, PutResponse};
use crate::error::ServerError;
use crate::mvcc::{KeySpan, MvccError, MvccStore, OpError, WriteTxn};

use super::Apply;

impl Apply for PutRequest {
    /// etcd's `checkPutRequest`.
    fn check(&self) -> Result<(), ServerError> {
        if self.key.is_empty() {
            return Err(ServerError::EmptyKey);
        }
        if self.ignore_value && !self.value.is_empty() {
            return Err(ServerError::ValueProvided);
        }
        if self.ignore_lease && self.lease != 0 {
            return Err(ServerError::LeaseProvided);
        }
        Ok(())
    }

    fn apply(&self, state: &mut MvccStore) -> Result<PutResponse, OpError> {
        let mut txn = state.begin_write();
        let response = put(state, &mut txn, self, MissingPrevious::Reject);
        state.end_write(txn);
        response
    }
}

/// What a Put does when `ignore_value`/`ignore_lease` finds no previous value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MissingPrevious {
    /// A Put on its own: etcd's `ErrKeyNotFound`, nothing changed.
    Reject,
    /// Inside a Txn, where the checks before any write found the key: it was deleted by an
    /// earlier op of the same Txn. etcd panics there ("unexpected error during txn"); we keep
    /// the request's own value and lease instead, deterministically.
    UseRequest,
}

/// etcd's `Put` within the write transaction `txn` (alone, or one op of a Txn).
pub(super) fn put(
    state: &mut MvccStore,
    txn: &mut WriteTxn,
    request: &PutRequest,
    missing: MissingPrevious,
) -> Result<PutResponse, OpError> {
    let ignores_previous = request.ignore_value || request.ignore_lease;
    let previous = if ignores_previous || request.prev_kv {
        state.kvs_at(KeySpan::Single(&request.key), txn.read_revision())?.pop()
    } else {
        None
    };
    if ignores_previous && previous.is_none() && missing == MissingPrevious::Reject {
        return Err(MvccError::KeyNotFound.into());
    }
    let value = match &previous {
        Some(previous) if request.ignore_value => previous.value.clone(),
        _ => request.value.clone(),
    };
    let mut lease = match &previous {
        Some(previous) if request.ignore_lease => previous.lease,
        _ => request.lease,
    };
    if lease != 0 && !state.leases.contains(lease) {
        match missing {
            MissingPrevious::Reject => return Err(MvccError::LeaseNotFound.into()),
            // Inside a Txn every lease was checked before any write, except the request's
            // own lease of an `ignore_lease` put whose key an earlier op deleted (the case
            // etcd panics on). Failing here would leave the Txn half-applied: no lease.
            MissingPrevious::UseRequest => lease = 0,
        }
    }
    state.put_key(txn, &request.key, value, lease)?;
    let prev_kv = if request.prev_kv { previous } else { None };
    Ok(PutResponse { header_revision: txn.read_revision(), prev_kv })
}
