//! The lock workload's history and its checker. Pure: no I/O, no clock.
//!
//! Each fenced write puts the holder's fencing token (its lock key's create revision) under a
//! key of its own, in a txn that succeeds only while the lock key still exists with that
//! revision. The final read returns every fenced write with the revision it was applied at. The
//! checker asks:
//! - `out-of-order`: ordered by the revision they were applied at, the tokens never go down. A
//!   lower token applied after a higher one means a holder wrote after a later holder got the
//!   lock: two holders at once, which fencing exists to stop.
//! - `lost`: every acknowledged fenced write is in the final read, with its token.
//! - `unexpected`: the final read holds nothing that was never written, or whose txn definitely
//!   did not apply.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::history::Outcome;
use crate::verdict::{CheckReport, Findings};
use crate::workload::Workload;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHistory {
    pub operations: Vec<LockOperation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOperation {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: Option<u64>,
    pub op: LockOp,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencedWrite {
    pub key: String,
    pub token: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LockOp {
    Write(FencedWrite),
    /// Every fenced write with the revision it was applied at; empty unless `Ok`.
    FinalRead {
        writes: Vec<(i64, FencedWrite)>,
    },
}

impl LockHistory {
    /// (call, return, outcome) of every operation, for the plots.
    pub fn calls(&self) -> impl Iterator<Item = (u64, Option<u64>, Outcome)> + '_ {
        self.operations.iter().map(|operation| (operation.call_ns, operation.return_ns, operation.outcome))
    }
}

/// Checks `history` as the module doc says.
pub fn check(history: &LockHistory) -> CheckReport {
    let mut findings = Findings::new(Workload::Lock, history.operations.len());
    let writes: HashMap<&str, (&FencedWrite, Outcome)> = history
        .operations
        .iter()
        .filter_map(|operation| match &operation.op {
            LockOp::Write(write) => Some((write.key.as_str(), (write, operation.outcome))),
            LockOp::FinalRead { .. } => None,
        })
        .collect();
    let acknowledged = writes.values().filter(|(_, outcome)| *outcome == Outcome::Ok).count();
    findings.stat("fenced-writes-acknowledged", acknowledged as u64);
    let final_read = history.operations.iter().rev().find_map(|operation| match &operation.op {
        LockOp::FinalRead { writes } if operation.outcome == Outcome::Ok => Some(writes),
        _ => None,
    });
    let Some(final_read) = final_read else {
        findings.unknown("no final read: the healed cluster never answered one");
        return findings.report();
    };
    findings.stat("fenced-writes-read", final_read.len() as u64);
    let mut applied: Vec<&(i64, FencedWrite)> = final_read.iter().collect();
    applied.sort_by_key(|(revision, _)| *revision);
    let tokens: Vec<i64> = applied.iter().map(|(_, write)| write.token).collect();
    findings.stat("holders", {
        let mut distinct = tokens.clone();
        distinct.dedup();
        distinct.len() as u64
    });
    for pair in applied.windows(2) {
        let ((before_revision, before), (after_revision, after)) = (pair[0], pair[1]);
        if after.token < before.token {
            findings.anomaly("out-of-order", || {
                format!(
                    "{} (token {}) applied at revision {after_revision}, after {} (token {}) at revision \
                     {before_revision}: two holders of the lock wrote at once\n",
                    after.key, after.token, before.key, before.token
                )
            });
        }
    }
    let in_final: HashMap<&str, i64> = final_read.iter().map(|(_, write)| (write.key.as_str(), write.token)).collect();
    for (key, (write, outcome)) in &writes {
        if *outcome == Outcome::Ok && in_final.get(key) != Some(&write.token) {
            findings
                .anomaly("lost", || format!("acknowledged fenced write {key} (token {}) is missing\n", write.token));
        }
    }
    for (_, write) in final_read {
        match writes.get(write.key.as_str()) {
            None => findings.anomaly("unexpected", || format!("{} was never written\n", write.key)),
            Some((_, Outcome::Fail)) => {
                findings.anomaly("unexpected", || format!("{} is there though its txn did not apply\n", write.key))
            }
            Some(_) => {}
        }
    }
    findings.report()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Validity;

    fn write(key: &str, token: i64, outcome: Outcome, call_ns: u64) -> LockOperation {
        LockOperation {
            process: 0,
            call_ns,
            return_ns: Some(call_ns + 1),
            op: LockOp::Write(FencedWrite { key: key.into(), token }),
            outcome,
        }
    }

    fn final_read(writes: &[(i64, &str, i64)]) -> LockOperation {
        let writes =
            writes.iter().map(|(rev, key, token)| (*rev, FencedWrite { key: (*key).into(), token: *token })).collect();
        LockOperation {
            process: u64::MAX,
            call_ns: 100,
            return_ns: Some(101),
            op: LockOp::FinalRead { writes },
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn ordered_tokens_are_valid_and_interleaved_ones_are_caught() {
        let ok = LockHistory {
            operations: vec![
                write("k/a", 5, Outcome::Ok, 1),
                write("k/b", 5, Outcome::Ok, 2),
                write("k/c", 9, Outcome::Ok, 3),
                write("k/d", 5, Outcome::Fail, 4),
                final_read(&[(6, "k/a", 5), (7, "k/b", 5), (10, "k/c", 9)]),
            ],
        };
        assert_eq!(check(&ok).validity, Validity::Valid, "{}", check(&ok));
        let interleaved = LockHistory {
            operations: vec![
                write("k/a", 5, Outcome::Ok, 1),
                write("k/c", 9, Outcome::Ok, 2),
                write("k/b", 5, Outcome::Ok, 3),
                final_read(&[(6, "k/a", 5), (10, "k/c", 9), (11, "k/b", 5)]),
            ],
        };
        let report = check(&interleaved);
        assert_eq!(report.validity, Validity::Invalid);
        assert_eq!(report.anomalies[0].name, "out-of-order", "{report}");
    }

    #[test]
    fn lost_and_unexpected_writes_are_caught_and_no_final_read_is_unknown() {
        let history = LockHistory {
            operations: vec![
                write("k/a", 5, Outcome::Ok, 1),
                write("k/b", 5, Outcome::Fail, 2),
                final_read(&[(7, "k/b", 5)]),
            ],
        };
        let names: Vec<String> = check(&history).anomalies.into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["lost", "unexpected"]);
        let unread = LockHistory { operations: vec![write("k/a", 5, Outcome::Ok, 1)] };
        assert_eq!(check(&unread).validity, Validity::Unknown);
    }
}
