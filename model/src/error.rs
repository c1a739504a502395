//! [`MvccError`]: etcd's rules refuse a command. Deterministic: every member applying the same
//! command to the same state refuses it the same way, so a refusal inside apply is a replicated
//! answer (`CommandResponse::Rejected`). A failure of one member's storage is never one of these
//! (the node keeps that apart, in its own type).

use serde::{Deserialize, Serialize};

use crate::auth::etcd::AuthError;

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
    /// etcd's auth store refuses: a change to users and roles, or a request by who sent it.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A NOSPACE alarm is active: a write that adds data is refused until it is disarmed.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// A CORRUPT alarm is active: every change is refused.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// An activation past the most alarms the state keeps (`ALARMS_MAX`).
    #[error("etcdserver: too many alarms")]
    TooManyAlarms,
}
