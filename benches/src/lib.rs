//! keel-bench: a closed-loop load generator over the etcd v3 gRPC API, so that one binary
//! drives etcd and Keel alike, and `compare`, which starts a fresh 3-member cluster of each on
//! this machine and measures them alternately.
//!
//! It knows nothing of Keel's internals: everything goes through `etcd-client`, the way a user's
//! service would talk to either system.
//!
//! # Layout
//!
//! - `cli` — the command line (`run`, `compare`) and its limits. Parsing only.
//! - `workload/` — the closed-loop workloads: `mod.rs` names them and runs one (connect, prepare,
//!   drive clients through a measurement window); `kv.rs` put, range and txn; `watch.rs` watchers
//!   on a prefix; `lease.rs` lease keep-alives.
//! - `pool` — the gRPC connections that clients share round-robin.
//! - `stats` — latency histograms and their summaries, medians, ratios. Pure.
//! - `cluster` — starting, stopping and restarting a local etcd or Keel cluster with etcd's flags.
//! - `resources` — RSS per member, data-dir size, restart-to-healthy time.
//! - `cpu` — the members' CPU time during a run's measurement window, from `/proc`.
//! - `compare` — the `compare` subcommand: clusters, alternation, output.
//! - `gateway` — the `gateway` subcommand: the greeter example direct, through `keel proxy`,
//!   nginx's `grpc_pass` and `keel gateway`.
//! - `report` — result rows, JSON, text and markdown tables. Pure apart from writing files.
//! - `plot` — the SVG comparison plot.
//! - `progress` — the progress line on stderr.
//! - `machine` — what this machine is, and the date, for the report header.

pub mod cli;
pub mod cluster;
pub mod compare;
pub mod cpu;
pub mod gateway;
pub mod machine;
pub mod plot;
pub mod pool;
pub mod progress;
pub mod report;
pub mod resources;
pub mod stats;
pub mod workload;

pub use cli::Cli;
