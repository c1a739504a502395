//! Keel's Jepsen-style harness: record what concurrent clients saw, then decide whether a
//! linearizable register could have produced it.
//!
//! # Layout
//!
//! | module | what | must not |
//! |---|---|---|
//! | [`history`] | [`Operation`]: one client call with its real-time window and outcome; JSON-lines I/O | know how histories are checked |
//! | [`checker`] | [`check`]: Wing & Gong / Lowe linearizability search per key, memoised, bounded by a [`CheckBudget`] | touch a cluster, a clock other than its own budget, or the network |
//!
//! The harness that starts clusters, injects faults and drives clients will record
//! [`Operation`]s and hand them to [`check`].

pub mod checker;
pub mod history;

pub use checker::{check, CheckBudget, Counterexample, Verdict, Violation};
pub use history::{OpKind, Operation, Outcome};
