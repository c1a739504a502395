//! The one error type of keel-client. Each variant says what the caller can do next; none
//! carries a boxed `dyn Error`, so callers can match on it.

/// What went wrong talking to the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing is registered under the service name asked for.
    #[error("service not found: no node of it is registered")]
    NotFound,
    /// The request itself is wrong (empty service name, no node, bad endpoint URL...); retrying
    /// it unchanged fails again.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No member could serve the request: every endpoint was unreachable, had no leader or was
    /// stopping, for the whole retry budget. Registry operations are idempotent, so retrying
    /// later is safe; check that the cluster is up and the endpoints are right.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// A watcher fell behind its bounded queue and events were dropped. Its view is no longer
    /// complete: re-read with `get_service` and start a new watch.
    #[error("watch fell behind by {skipped} events; re-read the registry and watch again")]
    WatchLagged {
        /// How many events were dropped.
        skipped: u64,
    },
    /// The watcher was stopped (by `stop()` or because its registry went away).
    #[error("watch stopped")]
    WatchStopped,
    /// The cluster answered something this client does not understand (an unknown watch
    /// action, a service without a node). Usually a client/server version mismatch.
    #[error("unexpected response from the cluster: {0}")]
    InvalidResponse(String),
    /// Any other error the cluster returned, with its gRPC code name.
    #[error("cluster error ({code}): {message}")]
    Other {
        /// The gRPC status code, e.g. "Internal".
        code: String,
        /// The cluster's message.
        message: String,
    },
}

/// keel-client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
