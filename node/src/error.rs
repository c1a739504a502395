//! The member's domain errors: what a request can fail with, independent of the wire.
//! `api::status` maps each to the gRPC code and message text etcd sends for it.

use crate::mvcc::{MvccError, ReadError};
use crate::storage::StorageError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// etcd's rules refused the request: on every member alike when it was applied.
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// This member's storage failed while serving a read (the engine, or a record that does not
    /// decode). A read is this member's own answer; a write never gets this (the member stops).
    #[error("storage: {0}")]
    Storage(String),
    /// etcd's auth refuses, before anything is proposed (a token, a password, a permission on a
    /// read); refusals at apply come as `Mvcc(MvccError::Auth(..))`.
    #[error(transparent)]
    Auth(#[from] keel_model::auth::etcd::AuthError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] crate::dynamic_config::ConfigError),
    #[error(transparent)]
    Events(#[from] crate::api::EventsError),
    #[error("key is not provided")]
    EmptyKey,
    #[error("key not found")]
    KeyNotFound,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("too many operations in txn request")]
    TooManyTxnOps,
    /// A queue of this member is full (forwarded writes, read barriers): nothing was done.
    #[error("too many requests")]
    TooManyRequests,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A request names a member the cluster does not have.
    #[error("member not found")]
    MemberNotFound,
    /// A request only the leader answers reached another member (MoveLeader).
    #[error("not leader")]
    NotLeader,
    /// MoveLeader to a member that cannot lead (unknown, or a learner).
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    /// A learner answers Status, MemberList and serializable Range only.
    #[error("rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("too many learner members in cluster")]
    TooManyLearners,
    #[error("can only promote a learner member")]
    MemberNotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("unhealthy cluster")]
    UnhealthyCluster,
    /// A peer URL that is not http(s)://host:port.
    #[error("given member URLs are invalid: {0}")]
    InvalidPeerUrl(String),
    /// Raft could not make a membership change (leadership lost, a change in progress).
    #[error("membership change failed: {0}")]
    MembershipFailed(String),
    /// The leadership did not move in time.
    #[error("request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("invalid sort option")]
    InvalidSortOption,
    #[error("request is too large")]
    RequestTooLarge,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// A write through the etcd API under a prefix a native service owns (`command::reserved`).
    #[error("key is reserved for {}: {}", .0.owner, .0.prefix)]
    ReservedKey(crate::command::ReservedPrefix),
    /// A native registration's TTL over etcd's MaxLeaseTTL (the registration is a lease).
    #[error("registry: ttl must be at most {} seconds (etcd's MaxLeaseTTL)", crate::lease::LEASE_TTL_MAX_SECS)]
    RegisterTtlTooLarge,
    /// The state machine answered with a response of the wrong kind: a bug between it and
    /// the API layer, never the client's fault.
    #[error("state machine answered with the wrong response type")]
    Mismatched,
    /// No leader is known: nothing was proposed.
    #[error("no leader")]
    NoLeader,
    /// The request may or may not have been applied: the caller cannot know (a timeout, or the
    /// leader changed after proposing).
    #[error("request timed out")]
    Timeout,
    #[error("server stopped")]
    Stopped,
    #[error("{0}")]
    Unimplemented(&'static str),
    /// A command no client request makes: forged, or from a member that should not send it.
    #[error("invalid command: {0}")]
    InvalidCommand(&'static str),
    /// The leader's own checks refused a request this member forwarded (the members' limits
    /// differ): nothing changed.
    #[error("the leader refused the request: {0}")]
    LeaderRefused(String),
}

impl From<StorageError> for ServerError {
    fn from(error: StorageError) -> Self {
        ServerError::Storage(error.0)
    }
}

impl From<ReadError> for ServerError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Rejected(error) => ServerError::Mvcc(error),
            ReadError::Storage(error) => ServerError::Storage(error.0),
        }
    }
}

impl ServerError {
    /// True when the request certainly changed nothing, so a client may retry it safely.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ServerError::Timeout)
    }
}
