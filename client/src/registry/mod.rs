//! Service discovery in the go-micro mould: services register their nodes (with a TTL kept
//! alive by a [`Registration`]), callers look them up, watch them, or let a [`Selector`] do both.
//!
//! [`Registry`] is the contract; [`GrpcRegistry`] talks to a Keel cluster and [`MemoryRegistry`]
//! keeps everything in the process for unit tests. Both pass the same [`conformance`] suite.
//! This module knows nothing of etcd's KV API: the cluster maps registrations to keys.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[doc(hidden)]
pub mod conformance;
mod convert;
pub mod go_json;
mod grpc;
mod memory;
pub mod names;
mod registration;
mod selector;
mod stored;
mod types;

pub use grpc::GrpcRegistry;
pub use memory::{MemoryRegistry, WATCH_EVENTS_MAX};
pub use names::{NameError, NAME_BYTES_MAX};
pub use registration::{Registration, RegistrationStatus};
pub use selector::{Selector, Strategy};
#[doc(hidden)]
pub use stored::fuzz_registration;
pub use types::{group, node_key, service_prefix, Endpoint, Node, Service, Value, KEY_PREFIX};

/// A service registry. Object-safe: hold it as `Arc<dyn Registry>`.
///
/// Every operation is idempotent, so implementations may retry them on another cluster member.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Registers every node of `service` (each under its own key, replacing what was there),
    /// attached to one lease of `options.ttl` when it is non-zero: the nodes disappear when the
    /// lease is not kept alive. Prefer [`Registry::keep_registered`], which keeps it alive.
    async fn register(&self, service: &Service, options: RegisterOptions) -> Result<()>;

    /// Removes the nodes of `service` named by id (only `name` and `nodes[].id` are read).
    /// Removing a node that is not registered is not an error.
    async fn deregister(&self, service: &Service) -> Result<()>;

    /// Every version of the service `name`, each with its nodes; [`Error::NotFound`] when no
    /// node is registered.
    async fn get_service(&self, name: &str) -> Result<Vec<Service>>;

    /// Every registered service and version, with their nodes.
    async fn list_services(&self) -> Result<Vec<Service>>;

    /// Changes from now on, to one service or to all of them.
    async fn watch(&self, options: WatchOptions) -> Result<Box<dyn Watcher>>;

    /// Registers `service` and keeps it registered until the returned handle is shut down or
    /// dropped: the lease is kept alive, and the service is registered again whenever the
    /// registration is lost (lease expired or revoked, cluster member failed). See
    /// [`Registration`].
    async fn keep_registered(&self, service: &Service, options: RegisterOptions) -> Result<Registration>;
}

/// A stream of registry changes, in the order the cluster made them, without gaps or duplicates.
#[async_trait]
pub trait Watcher: Send {
    /// The next change; waits for one. After an error the watcher may still be usable (an
    /// [`Error::Unavailable`] cluster can come back); after [`Error::WatchStopped`] it is not.
    async fn next(&mut self) -> Result<WatchResult>;

    /// Stops watching: the next call to `next` returns [`Error::WatchStopped`].
    fn stop(&mut self);
}

/// Options of [`Registry::register`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterOptions {
    /// How long the registration lives without a keep-alive. Zero: until deregistered. The
    /// cluster counts whole seconds; a fraction is rounded up.
    pub ttl: Duration,
}

impl RegisterOptions {
    /// Registration that expires `ttl` after the last keep-alive.
    pub fn with_ttl(ttl: Duration) -> RegisterOptions {
        RegisterOptions { ttl }
    }
}

/// Options of [`Registry::watch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Only this service; `None` watches every service.
    pub service: Option<String>,
}

impl WatchOptions {
    /// Watches one service.
    pub fn service(name: impl Into<String>) -> WatchOptions {
        WatchOptions { service: Some(name.into()) }
    }
}

/// One change seen by a [`Watcher`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResult {
    pub action: Action,
    /// The service with the one node that changed; for a delete, as it was before.
    pub service: Service,
}

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    /// go-micro's name of the action: "create", "update" or "delete".
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(action: &str) -> Result<Action> {
        match action {
            "create" => Ok(Action::Create),
            "update" => Ok(Action::Update),
            "delete" => Ok(Action::Delete),
            other => Err(Error::InvalidResponse(format!("unknown watch action {other:?}"))),
        }
    }
}

/// The TTL as the cluster counts it: whole seconds, rounded up so a registration never lives
/// shorter than asked.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    let seconds = ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// The longest registration TTL, in seconds: etcd's MaxLeaseTTL (a registration is a lease).
pub const TTL_MAX_SECS: i64 = 9_000_000_000;

/// The cluster's words for a TTL over [`TTL_MAX_SECS`].
pub(crate) fn validate_ttl(ttl: Duration) -> Result<()> {
    if ttl_seconds(ttl) > TTL_MAX_SECS {
        return Err(Error::InvalidArgument(format!(
            "registry: ttl must be at most {TTL_MAX_SECS} seconds (etcd's MaxLeaseTTL)"
        )));
    }
    Ok(())
}

/// The checks the cluster makes before registering, so both implementations reject the same
/// input with the same words (the cluster's, see [`names`]).
pub(crate) fn validate_register(service: &Service) -> Result<()> {
    validate_written_names(service, "the service has no node to register")
}

pub(crate) fn validate_deregister(service: &Service) -> Result<()> {
    validate_written_names(service, "the service has no node to deregister")
}

/// The checks the cluster makes on a service name it looks up (get, watch).
pub(crate) fn validate_lookup(name: &str) -> Result<()> {
    names::check_looked_up(names::SERVICE_NAME, name).map_err(invalid_name)
}

fn validate_written_names(service: &Service, no_node: &str) -> Result<()> {
    names::check_written(names::SERVICE_NAME, &service.name).map_err(invalid_name)?;
    if service.nodes.is_empty() {
        return Err(Error::InvalidArgument(no_node.into()));
    }
    for node in &service.nodes {
        names::check_written(names::NODE_ID, &node.id).map_err(invalid_name)?;
    }
    Ok(())
}

/// The words the cluster uses, so an error reads the same from either implementation.
fn invalid_name(error: NameError) -> Error {
    Error::InvalidArgument(format!("registry: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        let cases = [(0, 0), (1, 1), (999, 1), (1000, 1), (1001, 2), (10_000, 10)];
        for (milliseconds, seconds) in cases {
            assert_eq!(ttl_seconds(Duration::from_millis(milliseconds)), seconds, "{milliseconds} ms");
        }
        assert_eq!(ttl_seconds(Duration::MAX), i64::MAX);
    }

    #[test]
    fn actions_parse_and_print_as_go_micro() {
        for action in [Action::Create, Action::Update, Action::Delete] {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert!("put".parse::<Action>().is_err());
    }
}
