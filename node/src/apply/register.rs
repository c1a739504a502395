//! Register: a service registration, every key of it on one lease.

use std::collections::BTreeSet;

use crate::command::{KeyValuePair, RegisterRequest, RegisterResponse};
use crate::error::ServerError;
use crate::mvcc::{KeySpan, MvccError, MvccStore, OpError};
use crate::storage::StorageError;

use super::{check_ttl, Apply};

impl Apply for RegisterRequest {
    fn check(&self) -> Result<(), ServerError> {
        check_ttl(self.ttl_secs)
    }

    /// Puts every key on one lease, reusing the lease the keys already share when it has the
    /// same TTL, otherwise granting `lease_id`. A reused lease with unchanged values writes
    /// nothing. A lease left with no key by the move is forgotten.
    fn apply(&self, state: &mut MvccStore) -> Result<RegisterResponse, OpError> {
        let reusable = reusable_lease(state, self);
        let lease = match (self.ttl_secs, reusable) {
            (0, _) => 0,
            (_, Some(lease)) => lease,
            (ttl_secs, None) => {
                if state.leases.contains(self.lease_id) {
                    return Err(MvccError::LeaseExists.into());
                }
                state.leases.grant(self.lease_id, ttl_secs);
                self.lease_id
            }
        };
        let unchanged = reusable.is_some() && values_equal(state, &self.puts)?;
        let previous_leases: BTreeSet<i64> =
            self.puts.iter().filter_map(|(key, _)| state.leases.lease_of(key)).collect();
        if !unchanged {
            let mut txn = state.begin_write();
            let written =
                self.puts.iter().try_for_each(|(key, value)| state.put_key(&mut txn, key, value.clone(), lease));
            state.end_write(txn);
            written?;
        }
        for previous in previous_leases {
            if previous != lease && state.leases.get(previous).is_some_and(|l| l.keys.is_empty()) {
                state.leases.forget(previous);
            }
        }
        Ok(RegisterResponse { header_revision: state.current_revision(), lease_id: lease, reused: reusable.is_some() })
    }
}

/// The lease every key of the registration holds now, if they share one that has the
/// registration's TTL.
fn reusable_lease(state: &MvccStore, request: &RegisterRequest) -> Option<i64> {
    if request.ttl_secs == 0 {
        return None;
    }
    let mut leases = request.puts.iter().map(|(key, _)| state.leases.lease_of(key));
    let first = leases.next()??;
    let shared = leases.all(|lease| lease == Some(first));
    let same_ttl = state.leases.get(first).is_some_and(|lease| lease.ttl_secs == request.ttl_secs);
    (shared && same_ttl).then_some(first)
}

fn values_equal(state: &MvccStore, puts: &[KeyValuePair]) -> Result<bool, StorageError> {
    for (key, value) in puts {
        let current = state.kvs_at(KeySpan::Single(key), state.current_revision())?;
        if current.first().is_none_or(|kv| &kv.value != value) {
            return Ok(false);
        }
    }
    Ok(true)
}
