//! keel-client: the library a service links to use Keel. Today that is service discovery — the
//! [`registry::Registry`] trait in go-micro's mould, with a gRPC implementation for a Keel
//! cluster and an in-memory one for tests. Store, Config, Events and Broker follow the same
//! pattern (see DESIGN.md, "The client crate").
//!
//! It must not depend on keel-node: services link this crate, never the server.
//!
//! # Layout
//!
//! ```text
//! error.rs                 Error: one enum, each variant says what the caller can do next
//! cluster.rs               failover across members: sticky endpoint, retry budget, status mapping
//! registry/mod.rs          the Registry and Watcher traits, options, WatchResult, Action
//! registry/types.rs        Service, Node, Endpoint, Value: go-micro's JSON, byte for byte
//! registry/go_json.rs      Go's json.Marshal escaping, for writing that JSON
//! registry/convert.rs      those types <-> keel.v1 protobuf
//! registry/grpc.rs         GrpcRegistry: keel.v1.Registry over gRPC, watch resume, lease keep-alive
//! registry/memory.rs       MemoryRegistry: the same semantics in-process, on tokio's clock
//! registry/registration.rs Registration: keep registered, register again when lost, deregister
//! registry/selector.rs     Selector: watch-driven node cache, round-robin or random
//! registry/conformance.rs  the contract as a test suite every implementation passes
//! ```
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use keel_client::registry::{MemoryRegistry, Node, RegisterOptions, Registry, Selector, Service, Strategy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_client::Error> {
//! // In production: `GrpcRegistry::connect(&["http://127.0.0.1:2379".into()]).await?`.
//! let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
//!
//! // A service registers itself and stays registered until `shutdown` (or drop).
//! let greeter = Service::with_node("greeter", "1.0.0", Node::new("greeter-1", "127.0.0.1:8080"));
//! let registration = registry.keep_registered(&greeter, RegisterOptions::with_ttl(Duration::from_secs(10))).await?;
//!
//! // A caller finds it.
//! let selector = Selector::new(registry.clone(), Strategy::RoundRobin);
//! assert_eq!(selector.select("greeter").await?.address, "127.0.0.1:8080");
//!
//! registration.shutdown().await?;
//! assert_eq!(registry.get_service("greeter").await, Err(keel_client::Error::NotFound));
//! # Ok(())
//! # }
//! ```

mod cluster;
mod error;
pub mod registry;

pub use error::{Error, Result};
