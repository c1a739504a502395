//! What the keyspace answers when etcd's rules refuse a request.

use serde::{Deserialize, Serialize};

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
    /// The engine failed while serving a read (`MvccStore::range` only; `apply` reports engine
    /// failures as `StorageError` and never rejects with this).
    #[error("storage: {0}")]
    Storage(String),
}
