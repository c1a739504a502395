//! The two ways an operation on the keyspace can fail, kept apart by their types.
//!
//! - [`MvccError`] (`keel_model`, as it is replicated): etcd's rules refuse the request. Deterministic: every member applying the
//!   same command to the same state refuses it the same way, so a refusal inside apply is a
//!   replicated answer (`CommandResponse::Rejected`).
//! - `StorageError`: this member's storage failed (the engine, or a stored record that does not
//!   decode). Only this member sees it, so inside apply it must never become an answer: the member
//!   stops instead (`MvccStore::apply` returns it, the state machine hands it to openraft).
//!
//! There is no conversion between the two, and `MvccError` has no variant that could hold a
//! storage failure: turning one into the other has to be written out, where a reviewer sees it.
//! [`ReadError`] holds either, for reads, which are this member's own answer and never replicated.

pub use keel_model::error::MvccError;

use crate::storage::StorageError;

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
