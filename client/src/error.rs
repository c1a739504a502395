//! The one error type of keel-client. Each variant says what the caller can do next; none
//! carries a boxed `dyn Error`, so callers can match on it.

/// What went wrong talking to the cluster (or to an in-memory implementation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing is there: no node of the service is registered, no store record has the key,
    /// no configuration is at the path, nothing was ever published to the topic.
    #[error("not found: no such service, store record, configuration path or event topic")]
    NotFound,
    /// The request itself is wrong (empty service name or store key, a TTL of zero, a bad
    /// config path, bad endpoint URL...); retrying it unchanged fails again.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No member could serve the request: every endpoint was unreachable, had no leader or was
    /// stopping, for the whole retry budget. Nothing was applied, so retrying later is safe;
    /// check that the cluster is up and the endpoints are right.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// A write that must not be applied twice (an event publish) failed after a member may
    /// have proposed it: it may or may not have been applied, and no one can tell from here.
    /// Read to find out, or publish again with the same event id: an id published within the
    /// de-duplication window is not appended again.
    #[error("outcome unknown, the request may have been applied: {0}; retry only with event ids, which make a publish safe to repeat")]
    MayHaveBeenApplied(String),
    /// A watcher fell behind its bounded queue and events were dropped. Its view is no longer
    /// complete: read again (`get_service`, `Config::get`) and start a new watch.
    #[error("watch fell behind by {skipped} events; read the current state again and start a new watch")]
    WatchLagged {
        /// How many events were dropped.
        skipped: u64,
    },
    /// The watcher was stopped (by `stop()` or because its registry or config went away).
    #[error("watch stopped")]
    WatchStopped,
    /// An ack settled nothing: the event was not pending in the group any more (acknowledged
    /// already, moved to the dead-letter topic, removed by retention) or was never delivered to
    /// it. Nothing to retry: this ack changed nothing, and the event comes again only if it is
    /// still owed to the group.
    #[error("events: the ack of offset {offset} settled nothing: the event was not pending in the group (acknowledged already, dead-lettered, removed by retention, or never delivered)")]
    NotPending {
        /// The offset acked.
        offset: u64,
    },
    /// Who is calling could not be established: no token, a token that is forged, expired or
    /// revoked (its account deleted, its secret changed), or a wrong id or secret. Sign in again
    /// (`Auth::token`) and retry with the new token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller is known but no rule lets it reach the resource; retrying changes nothing
    /// until a rule does.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A configuration value does not decode into the type asked for (`Value::scan`): fix the
    /// type or the configuration.
    #[error("the configuration value does not fit the type: {0}")]
    Decode(String),
    /// The cluster answered something this client does not understand (an unknown watch
    /// action, a service without a node, config text that is not JSON). Usually a client/server version mismatch.
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
