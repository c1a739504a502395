//! Keel: a Raft-replicated, etcd-compatible cluster for microservices.
//!
//! # Layout
//!
//! Requests flow top to bottom; each layer knows only the ones below it.
//!
//! - `config`: the `keel` command line (etcd's flags), validated into a `MemberConfig`.
//! - `member`: the composition root. Starts storage, Raft and the servers; `Member` proposes
//!   commands through the leader and passes linearizable read barriers.
//! - `api`: etcd's gRPC services as thin adapters: validate, call `Member`, map the error
//!   (one table, `api::status`), fill the header.
//! - `raft`: everything that names openraft: log store, state-machine adapter, peer network,
//!   peer service (Raft RPCs and forwarding), snapshots.
//! - `auth`: what a member does alone for etcd's auth: `--auth-token`, JWT signing and
//!   checking, bcrypt password hashes (who may do what: `keel_model::auth`).
//! - `registry`: the service registry as a typed view (go-micro's etcd layout and JSON).
//! - `gateway`: `keel gateway`, micro's API gateway over the registry (a separate process,
//!   not part of a member): path rules, JSON↔gRPC through reflection, node selection.
//! - `command`: the replicated command enum and its responses.
//! - `lease`: when leases expire: deadlines on the leader's clock only, reset on leader change.
//! - `mvcc`: the revisioned keyspace with etcd's semantics. Pure and synchronous.
//! - `watch`: change delivery to watchers: the hub of applied batches, per-stream sessions
//!   that catch up from history.
//! - `tls`: TLS on both ports (etcd's flags): rustls server configs, the handshake accept
//!   loop, peer client TLS, the user a client certificate names.
//! - `storage`: the engine trait (RocksDB and in-memory) everything persists through.
//! - `keys`: byte-key ranges, the one rule for where a prefix's keys end.
//! - `error`, `limits`: domain errors and every named bound.
//! - `fuzz`: one entry point per decoder of outside bytes, for the fuzzers (`node/fuzz/`).
//! - `golden` (tests only): committed samples of every format on disk, decoded and re-encoded.

pub mod api;
mod apply;
pub mod auth;
pub mod command;
pub mod config;
pub mod dynamic_config;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod gateway;
#[cfg(test)]
mod golden;
pub mod keys;
pub mod lease;
pub mod limits;
pub mod member;
pub mod mvcc;
pub mod raft;
pub mod registry;
pub mod storage;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod ui;
pub mod watch;
