//! keel-client: the library a service links to use Keel: service discovery
//! ([`registry::Registry`]), a key-value store ([`store::Store`]), dynamic configuration
//! ([`config::Config`]), offset-indexed event logs with consumer groups ([`events::Events`]) and
//! publish/subscribe ([`broker::Broker`]), traits in go-micro's mould, each with a gRPC
//! implementation for a Keel cluster and an in-memory one for tests (the broker has one
//! implementation, on top of any `Events`). Accounts, tokens and access rules
//! ([`auth::Auth`]): `GrpcAuth` on the cluster's `keel.v1.Auth`, and `MemoryAuth`.
//!
//! It must not depend on keel-node: services link this crate, never the server.
//!
//! # Layout
//!
//! ```text
//! error.rs                 Error: one enum, each variant says what the caller can do next
//! cluster.rs               failover across members: sticky endpoint, retry budget, status mapping
//! connect.rs               ConnectOptions and Tls: https:// endpoints, the CA, a client certificate; KEEL_ENDPOINTS
//! names.rs                 one rule for the names the native services put in keys (topics, tables...)
//! registry/mod.rs          the Registry and Watcher traits, options, WatchResult, Action
//! registry/types.rs        Service, Node, Endpoint, Value: go-micro's JSON, byte for byte
//! registry/go_json.rs      Go's json.Marshal escaping, for writing that JSON
//! registry/convert.rs      those types <-> keel.v1 protobuf
//! registry/grpc.rs         GrpcRegistry: keel.v1.Registry over gRPC, watch resume, lease keep-alive
//! registry/memory.rs       MemoryRegistry: the same semantics in-process, on tokio's clock
//! registry/registration.rs Registration: keep registered, register again when lost, deregister
//! registry/selector.rs     Selector: watch-driven node cache, round-robin or random
//! registry/conformance.rs  the contract as a test suite every implementation passes
//! store/mod.rs             the Store trait, Record, options, Scope, the cluster's rules
//! store/grpc.rs            GrpcStore: keel.v1.Store over gRPC
//! store/memory.rs          MemoryStore: the same rules in-process, expiry on tokio's clock
//! store/conformance.rs     the store contract as a test suite
//! config/mod.rs            the Config and ConfigWatcher traits, options
//! config/value.rs          Value: typed accessors (string, int, bool, duration, scan)
//! config/tree.rs           the cluster's rules: paths, merge-on-set, documents, secret masks
//! config/grpc.rs           GrpcConfig: keel.v1.Config over gRPC, watch reopened on failover
//! config/memory.rs         MemoryConfig: the same rules in-process, revisions and history
//! config/conformance.rs    the config contract as a test suite
//! events/mod.rs            the Events trait, Event, options, limits, the cluster's rules
//! events/group.rs          a consumer group's position: pure rules shared with the cluster
//! events/consume.rs        Subscription and Delivery: the inbox a feeder task fills, ack/nack
//! events/grpc.rs           GrpcEvents: keel.v1.Events over gRPC, publish never repeated blindly
//! events/grpc_consume.rs   the Consume stream's feeder: acks confirmed, failover, resume
//! events/memory.rs         MemoryEvents: the same rules in-process, de-duplication on tokio's clock
//! events/memory_consume.rs consuming in-process: group claims on tokio's clock, dead letters
//! events/conformance.rs    the events contract as a test suite (consuming in conformance/consume.rs)
//! broker/mod.rs            the Broker trait, Message, EventsBroker: pub/sub on any Events
//! auth/mod.rs              the Auth trait (micro's), accounts, tokens, rules; limits and checks
//! auth/grpc.rs             GrpcAuth: keel.v1.Auth over gRPC, changes never repeated blindly
//! auth/memory.rs           MemoryAuth: the same contract in-process, expiry on tokio's clock
//! auth/layers.rs           tower layers: TokenLayer (clients send a fresh token), VerifyLayer (servers check rules)
//! broker/conformance.rs    the broker contract as a test suite
//! ```
//!
//! # Examples
//!
//! Service discovery:
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
//!
//! A key-value store, scoped to one table, with expiring records:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use keel_client::store::{MemoryStore, ReadOptions, Record, Scope, Store, WriteOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_client::Error> {
//! // In production: `GrpcStore::connect(&["http://127.0.0.1:2379".into()]).await?`.
//! let sessions = Scope::new(Arc::new(MemoryStore::new()), "shop", "sessions");
//! let ttl = WriteOptions { ttl: Some(Duration::from_secs(60)), ..WriteOptions::default() };
//! sessions.write(&Record::new("user-1/cart", "3 items"), ttl).await?;
//!
//! let records = sessions.read("user-1/", ReadOptions::prefix()).await?;
//! assert_eq!(records[0].value, b"3 items");
//! assert_eq!(records[0].ttl, Some(Duration::from_secs(60)));
//! # Ok(())
//! # }
//! ```
//!
//! Dynamic configuration, read typed and watched for changes:
//!
//! ```
//! use std::time::Duration;
//!
//! use keel_client::config::{Config, MemoryConfig, SetOptions, WatchOptions};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_client::Error> {
//! // In production: `GrpcConfig::connect(&["http://127.0.0.1:2379".into()]).await?`.
//! let config = MemoryConfig::new();
//! config.set("app.db", json!({"host": "db1", "timeout": "5s"}), SetOptions::default()).await?;
//! config.set("app.db.password", json!("hunter2"), SetOptions { secret: true, ..SetOptions::default() }).await?;
//!
//! let db = config.get("app.db").await?;
//! assert_eq!(db.get("host").string("localhost"), "db1");
//! assert_eq!(db.get("timeout").duration(Duration::from_secs(1)), Duration::from_secs(5));
//! assert_eq!(db.get("password").string(""), "[secret]");
//!
//! let mut watcher = config.watch("app.db.host", WatchOptions::default()).await?;
//! assert_eq!(watcher.next().await?.string(""), "db1");
//! config.set("app.db.host", json!("db2"), SetOptions::default()).await?;
//! assert_eq!(watcher.next().await?.string(""), "db2");
//! # Ok(())
//! # }
//! ```
//!
//! Event logs, published with an id so a retry is safe, read back from an offset:
//!
//! ```
//! use keel_client::events::{Events, MemoryEvents, PublishOptions, ReadOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_client::Error> {
//! // In production: `GrpcEvents::connect(&["http://127.0.0.1:2379".into()]).await?`.
//! let events = MemoryEvents::new();
//! let options = PublishOptions { id: Some("order-42".into()), ..PublishOptions::default() };
//! let published = events.publish("orders", b"created".to_vec(), options.clone()).await?;
//! assert_eq!(published.offset, 0);
//! // Unsure whether it went through (`Error::MayHaveBeenApplied`)? Publishing the same id
//! // again appends nothing and answers the first offset.
//! let again = events.publish("orders", b"created".to_vec(), options).await?;
//! assert!(again.duplicate && again.offset == 0);
//!
//! let read = events.read("orders", ReadOptions::from_offset(0)).await?;
//! assert_eq!(read[0].payload, b"created");
//! # Ok(())
//! # }
//! ```
//!
//! A consumer group: each event to one consumer of the group, acknowledged once processed:
//!
//! ```
//! use futures::StreamExt;
//! use keel_client::events::{ConsumeOptions, Events, MemoryEvents, PublishOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_client::Error> {
//! let events = MemoryEvents::new();
//! events.publish("orders", b"created".to_vec(), PublishOptions::default()).await?;
//!
//! let mut billing = events.consume("orders", ConsumeOptions::in_group("billing")).await?;
//! if let Some(delivery) = billing.next().await {
//!     let delivery = delivery?;
//!     assert_eq!((delivery.event.offset, delivery.deliveries), (0, 1));
//!     // Not acknowledged within the ack wait (or nacked): delivered again.
//!     delivery.ack().await?;
//! }
//! assert_eq!(events.groups("orders").await?[0].ack_floor, 1);
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod broker;
mod cluster;
pub mod config;
mod connect;
mod error;
pub mod events;
mod lease;
pub mod limiter;
pub mod lock;
pub mod names;
pub mod registry;
pub mod store;

pub use connect::{endpoints_from_env, ConnectOptions, Tls, DEFAULT_ENDPOINT, ENDPOINTS_ENV};
pub use error::{Error, Result};
