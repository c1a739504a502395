//! Keel's Jepsen-style harness: record what concurrent clients saw, then decide whether a
//! linearizable register could have produced it.
//!
//! # Layout
//!
//! | module | what | must not |
//! |---|---|---|
//! | [`history`] | [`Operation`]: one client call with its real-time window and outcome; JSON-lines I/O | know how histories are checked |
//! | [`checker`] | [`check`]: Wing & Gong / Lowe linearizability search per key, memoised, bounded by a [`CheckBudget`] | touch a cluster, a clock other than its own budget, or the network |
//! | [`proxy`] | [`proxy::Proxy`]: a TCP proxy in front of a member's peer port, cut with `block()`, restored with `heal()` | look at the bytes it copies |
//! | [`cluster`] | [`cluster::Cluster`]: real `keel` processes on 127.0.0.1; kill -9, restart, SIGSTOP/SIGCONT, inbound isolation | decide when to inject a fault |
//! | [`nemesis`] | a fault schedule that is a pure function of the seed; its execution with the times each fault was in force | know how a fault is injected |
//! | [`clock`] | [`clock::RunClock`]: nanoseconds since the run started, shared by operations and faults | |
//! | [`workload`] | the register workload: concurrent etcd clients recording [`Operation`]s; error → [`Outcome`] | judge the history or touch processes |
//! | [`run`] | [`run::run`]: the phases of one test and the run directory | inject faults or issue requests itself |
//!
//! The binary `keel-jepsen` (`src/main.rs`) only parses flags into a [`run::RunConfig`].

pub mod checker;
pub mod clock;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod run;
pub mod workload;

pub use checker::{check, CheckBudget, Counterexample, Verdict, Violation};
pub use history::{OpKind, Operation, Outcome};
