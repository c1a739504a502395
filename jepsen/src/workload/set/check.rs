//! The set workload's history and its checker. Pure: no I/O, no clock.
//!
//! Every element is added once, by one Put of its own key. A read is a linearizable range read
//! of the whole prefix. The checker asks of every successful read R:
//! - `lost` / `stale-read`: an element whose add was acknowledged, or that an earlier read
//!   returned, before R was called is missing from R. In the final read (after every fault is
//!   healed) that is `lost`; in a read during the run whose element the final read still has,
//!   `stale-read`.
//! - `unexpected`: R holds an element nobody added, whose add definitely failed, or whose add
//!   was called only after R returned.
//!
//! An indeterminate add may or may not be in any read, until one read shows it: from then on
//! it must stay.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::Outcome;
use crate::verdict::{CheckReport, Findings};
use crate::workload::Workload;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetHistory {
    pub operations: Vec<SetOperation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOperation {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: Option<u64>,
    pub op: SetOp,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SetOp {
    Add {
        element: u64,
    },
    /// `elements` ascending; empty unless the read is `Ok`. `final_read`: after the faults
    /// were healed, the read every acknowledged element must be in.
    Read {
        elements: Vec<u64>,
        final_read: bool,
    },
}

impl SetHistory {
    /// (call, return, outcome) of every operation, for the plots.
    pub fn calls(&self) -> impl Iterator<Item = (u64, Option<u64>, Outcome)> + '_ {
        self.operations.iter().map(|operation| (operation.call_ns, operation.return_ns, operation.outcome))
    }
}

/// Checks `history` as the module doc says.
pub fn check(history: &SetHistory) -> CheckReport {
    let mut findings = Findings::new(Workload::Set, history.operations.len());
    let mut adds: HashMap<u64, &SetOperation> = HashMap::new();
    let mut reads: Vec<(&SetOperation, &[u64], bool)> = Vec::new();
    for operation in &history.operations {
        match &operation.op {
            SetOp::Add { element } => {
                adds.insert(*element, operation);
            }
            SetOp::Read { elements, final_read }
                if operation.outcome == Outcome::Ok && operation.return_ns.is_some() =>
            {
                reads.push((operation, elements, *final_read));
            }
            SetOp::Read { .. } => {}
        }
    }
    reads.sort_by_key(|(operation, _, _)| operation.call_ns);
    let final_read = reads.iter().rev().find(|(_, _, final_read)| *final_read).map(|(_, elements, _)| *elements);
    findings.stat("elements-added", adds.len() as u64);
    findings.stat(
        "elements-acknowledged",
        adds.values().filter(|operation| operation.outcome == Outcome::Ok).count() as u64,
    );
    findings.stat("reads", reads.len() as u64);
    match final_read {
        Some(elements) => findings.stat("final-read-elements", elements.len() as u64),
        None => findings
            .unknown("no final read: the healed cluster never answered one, so lost elements cannot be ruled out"),
    }

    // Since when each element must be in every read: its add's acknowledgement, or the return
    // of the first read that showed it, whichever came first.
    let mut must_since: HashMap<u64, (u64, Reason)> = HashMap::new();
    for (element, add) in &adds {
        if let (Outcome::Ok, Some(return_ns)) = (add.outcome, add.return_ns) {
            must_since.insert(*element, (return_ns, Reason::Acknowledged));
        }
    }
    for (index, (read, elements, _)) in reads.iter().enumerate() {
        let return_ns = read.return_ns.unwrap_or(u64::MAX);
        for element in *elements {
            let entry = must_since.entry(*element).or_insert((u64::MAX, Reason::Acknowledged));
            if return_ns < entry.0 {
                *entry = (return_ns, Reason::Observed(index));
            }
        }
    }
    let mut required: Vec<(u64, u64, Reason)> =
        must_since.into_iter().map(|(element, (since, reason))| (since, element, reason)).collect();
    required.sort_unstable();

    for (read, elements, is_final) in &reads {
        for &(since, element, reason) in required.iter().take_while(|(since, _, _)| *since < read.call_ns) {
            if elements.binary_search(&element).is_ok() {
                continue;
            }
            let still_there = final_read.is_some_and(|final_elements| final_elements.binary_search(&element).is_ok());
            let name = if *is_final || !still_there { "lost" } else { "stale-read" };
            findings.anomaly(name, || {
                let mut text =
                    format!("element {} missing from {}\n", describe(element), describe_read(read, elements));
                match reason {
                    Reason::Acknowledged => {
                        let _ = writeln!(text, "  its add was acknowledged at {}", seconds(since));
                    }
                    Reason::Observed(index) => {
                        let _ = writeln!(text, "  {} had returned it", describe_read(reads[index].0, reads[index].1));
                    }
                }
                if let Some(add) = adds.get(&element) {
                    let _ = writeln!(text, "  add: {}", describe_operation(add));
                }
                text
            });
        }
        for &element in *elements {
            let problem = match adds.get(&element) {
                None => Some("nobody added it".to_string()),
                Some(add) if add.outcome == Outcome::Fail => {
                    Some(format!("its add definitely failed: {}", describe_operation(add)))
                }
                Some(add) if add.call_ns > read.return_ns.unwrap_or(u64::MAX) => {
                    Some(format!("its add was called only after the read returned: {}", describe_operation(add)))
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                findings.anomaly("unexpected", || {
                    format!("element {} in {}: {problem}\n", describe(element), describe_read(read, elements))
                });
            }
        }
    }
    findings.report()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    Acknowledged,
    /// The index of the read that showed it first.
    Observed(usize),
}

/// `12884901893 (client 3, #5)`: elements are `client << 32 | sequence`.
fn describe(element: u64) -> String {
    format!("{element} (client {}, #{})", element >> 32, element & 0xFFFF_FFFF)
}

fn describe_read(read: &SetOperation, elements: &[u64]) -> String {
    let final_read = if matches!(read.op, SetOp::Read { final_read: true, .. }) { "final " } else { "" };
    format!(
        "the {final_read}read [{}, {}] ({} elements)",
        seconds(read.call_ns),
        read.return_ns.map_or("∞".to_string(), seconds),
        elements.len()
    )
}

fn describe_operation(operation: &SetOperation) -> String {
    format!(
        "p{} [{}, {}] {}",
        operation.process,
        seconds(operation.call_ns),
        operation.return_ns.map_or("∞".to_string(), seconds),
        operation.outcome
    )
}

pub(crate) fn seconds(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Validity;

    fn add(element: u64, call_ns: u64, return_ns: u64, outcome: Outcome) -> SetOperation {
        SetOperation { process: 0, call_ns, return_ns: Some(return_ns), op: SetOp::Add { element }, outcome }
    }

    fn read(elements: &[u64], call_ns: u64, return_ns: u64, final_read: bool) -> SetOperation {
        SetOperation {
            process: 9,
            call_ns,
            return_ns: Some(return_ns),
            op: SetOp::Read { elements: elements.to_vec(), final_read },
            outcome: Outcome::Ok,
        }
    }

    fn anomalies(operations: Vec<SetOperation>) -> Vec<String> {
        let report = check(&SetHistory { operations });
        report.anomalies.iter().map(|anomaly| anomaly.name.clone()).collect()
    }

    #[test]
    fn acknowledged_and_indeterminate_elements_are_valid() {
        let report = check(&SetHistory {
            operations: vec![
                add(1, 0, 10, Outcome::Ok),
                add(2, 5, 50, Outcome::Indeterminate),
                add(3, 6, 7, Outcome::Fail),
                // Concurrent with the add of 2: may or may not see it.
                read(&[1], 20, 30, false),
                read(&[1, 2], 60, 70, true),
            ],
        });
        assert_eq!(report.validity, Validity::Valid, "{report}");
    }

    #[test]
    fn a_lost_acknowledged_element_is_named() {
        let found = anomalies(vec![add(1, 0, 10, Outcome::Ok), add(2, 0, 10, Outcome::Ok), read(&[2], 20, 30, true)]);
        assert_eq!(found, ["lost"]);
    }

    #[test]
    fn a_read_missing_an_element_the_end_still_has_is_stale() {
        let found = anomalies(vec![add(1, 0, 10, Outcome::Ok), read(&[], 20, 30, false), read(&[1], 40, 50, true)]);
        assert_eq!(found, ["stale-read"]);
    }

    #[test]
    fn an_observed_indeterminate_element_must_stay() {
        let found =
            anomalies(vec![add(1, 0, 100, Outcome::Indeterminate), read(&[1], 20, 30, false), read(&[], 40, 50, true)]);
        assert_eq!(found, ["lost"]);
    }

    #[test]
    fn invented_failed_and_future_elements_are_unexpected() {
        assert_eq!(anomalies(vec![read(&[7], 0, 10, true)]), ["unexpected"]);
        assert_eq!(anomalies(vec![add(1, 0, 10, Outcome::Fail), read(&[1], 20, 30, true)]), ["unexpected"]);
        assert_eq!(
            anomalies(vec![read(&[1], 0, 10, false), add(1, 20, 30, Outcome::Ok), read(&[1], 40, 50, true)]),
            ["unexpected"]
        );
    }

    #[test]
    fn no_final_read_is_unknown() {
        let report = check(&SetHistory { operations: vec![add(1, 0, 10, Outcome::Ok)] });
        assert_eq!(report.validity, Validity::Unknown);
    }
}
