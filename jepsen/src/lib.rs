//! Keel's Jepsen-style harness: run real members under faults, record what concurrent clients
//! saw, then decide whether a correct Keel could have produced it. Laid out like etcd's
//! `tests/robustness`: failpoints (nemesis), traffic and models (workloads), validation
//! (checkers), report.
//!
//! # Layout
//!
//! | module | what | must not |
//! |---|---|---|
//! | [`history`] | [`Operation`]: one register call with its real-time window and outcome; JSON-lines I/O | know how histories are checked |
//! | [`checker`] | [`check`]: Wing & Gong / Lowe linearizability search per key, memoised, bounded by a [`CheckBudget`] | touch a cluster, a clock other than its own budget, or the network |
//! | [`workload`] | one module per workload (register, set, lease, watch, events): its clients (`start`, `finish`) and, in its `check` submodule, its history types and checker | judge a history in the client code; touch processes |
//! | [`verdict`] | [`verdict::CheckReport`]: one checker's answer, with named anomalies and their smallest counterexamples | decide anything |
//! | [`proxy`] | [`proxy::Proxy`]: a TCP proxy in front of a member's peer port, cut for every caller or one source address | look at the bytes it copies |
//! | [`cluster`] | [`cluster::Cluster`]: real `keel` processes on 127.0.0.1; kill -9, SIGTERM, SIGSTOP/SIGCONT, cutting directed links, asking who leads | decide when to inject a fault |
//! | [`nemesis`] | a fault schedule that is a pure function of the seed; its execution with the times each fault was in force | know how a fault is injected |
//! | [`clock`] | [`clock::RunClock`]: nanoseconds since the run started, shared by operations and faults | |
//! | [`run`] | [`run::run`]: the phases of one test | inject faults or issue requests itself |
//! | [`tls`] | a run's certificates (made at run time or given) and [`tls::Endpoints`]: the client URLs with how to reach them | |
//! | [`report`] | [`report::RunReport`]: exit code, `verdict.txt`, `summary.json`, and the SVG plots | judge anything |
//!
//! The binary `keel-jepsen` (`src/main.rs`) only parses flags into a [`run::RunConfig`].

pub mod checker;
pub mod clock;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod proxy;
pub mod replicas;
pub mod report;
pub mod run;
pub mod tls;
pub mod verdict;
pub mod workload;

pub use checker::{check, CheckBudget, Counterexample, Verdict, Violation};
pub use history::{OpKind, Operation, Outcome};
