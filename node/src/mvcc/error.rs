//! The two ways an operation on the keyspace can fail, kept apart by their types.
//!
//! - [`MvccError`]: etcd's rules refuse the request. Deterministic: every member applying the
//!   same command to the same state refuses it the same way, so a refusal inside apply is a
//!   replicated answer (`CommandResponse::Rejected`).
//! - `StorageError`: this member's storage failed (the engine, or a stored record that does not
//!   decode). Only this member sees it, so inside apply it must never become an answer: the member
//!   stops instead (`MvccStore::apply` returns it, the state machine hands it to openraft).
//!
//! There is no conversion between the two, and `MvccError` has no variant that could hold a
//! storage failure: turning one into the other has to be written out, where a reviewer sees it.
//! [`ReadError`] holds either, for reads, which are this member's own answer and never replicated.

use serde::{Deserialize, Serialize};

use crate::storage::StorageError;

/// A refusal by etcd's MVCC or apply rules. Display texts are etcd's own, since clients match on
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MvccError {
    /// The revision asked for is below the compaction point; the caller may retry at or above
    /// `compact_revision`.
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    /// The revision asked for has not happened yet.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision { current_revision: i64 },
    /// A Put with `ignore_value` or `ignore_lease` on a key that does not exist. etcd decides this
    /// at apply time (a concurrent delete may come first), so it is a replicated rejection.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A Put names a lease that does not exist (any more), or a revoke an unknown lease.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A grant asks for an id already in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
}

/// Why a read (`MvccStore::range`, `MvccStore::history`) gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Rejected(MvccError),
    /// The engine failed, or a record read does not decode: the caller's answer is an internal
    /// error, never a rule's refusal.
    #[error(transparent)]
    Storage(StorageError),
}

#[cfg(test)]
impl ReadError {
    /// The refusal, for tests that compare answers; a storage failure fails the test.
    pub fn rejected(self) -> MvccError {
        match self {
            ReadError::Rejected(error) => error,
            ReadError::Storage(error) => panic!("the read failed: {error}"),
        }
    }
}
