//! What a checker answers, in one shape for every workload: valid, invalid with named
//! anomalies (each with a count and its smallest counterexample), or unknown with a reason.
//!
//! Plain data for the report; it decides nothing about a history itself.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::workload::Workload;

/// The counterexample text kept per anomaly, at most: a window of operations, not a history.
pub const COUNTEREXAMPLE_BYTES_MAX: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validity {
    Valid,
    /// At least one anomaly: exit code 1.
    Invalid,
    /// No anomaly found, but the checker could not decide (budget, a cluster that never
    /// recovered for the final reads): exit code 2.
    Unknown,
}

/// One kind of violation a checker found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// Stable and greppable, e.g. `lost`, `watch-gap`, `not-linearizable`.
    pub name: String,
    /// How many instances the checker found.
    pub count: usize,
    /// The smallest instance: the one that shows up in the shortest prefix of the history.
    pub counterexample: String,
}

/// One checker's answer.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub workload: Workload,
    pub validity: Validity,
    /// By name.
    pub anomalies: Vec<Anomaly>,
    /// Why the answer is [`Validity::Unknown`] (also kept when anomalies were found).
    pub unknown: Vec<String>,
    /// Client calls the checker looked at.
    pub operations: usize,
    /// What the checker counted on the way (elements, events, watchers...).
    pub stats: BTreeMap<String, u64>,
    pub check_time_ms: u64,
}

/// Collects a checker's findings; [`Findings::report`] turns them into a [`CheckReport`].
#[derive(Debug)]
pub struct Findings {
    workload: Workload,
    operations: usize,
    anomalies: BTreeMap<String, Anomaly>,
    unknown: Vec<String>,
    stats: BTreeMap<String, u64>,
}

impl Findings {
    pub fn new(workload: Workload, operations: usize) -> Findings {
        Findings { workload, operations, anomalies: BTreeMap::new(), unknown: Vec::new(), stats: BTreeMap::new() }
    }

    /// Counts one instance of anomaly `name`. Call in the order the instances appear in the
    /// history: the first one's counterexample is kept, and `counterexample` is only
    /// evaluated for it.
    pub fn anomaly(&mut self, name: &str, counterexample: impl FnOnce() -> String) {
        match self.anomalies.get_mut(name) {
            Some(anomaly) => anomaly.count += 1,
            None => {
                let mut counterexample = counterexample();
                truncate(&mut counterexample);
                self.anomalies.insert(name.to_string(), Anomaly { name: name.to_string(), count: 1, counterexample });
            }
        }
    }

    pub fn unknown(&mut self, reason: impl Into<String>) {
        self.unknown.push(reason.into());
    }

    pub fn stat(&mut self, name: &str, value: u64) {
        self.stats.insert(name.to_string(), value);
    }

    pub fn has_anomalies(&self) -> bool {
        !self.anomalies.is_empty()
    }

    pub fn report(self) -> CheckReport {
        let validity = if !self.anomalies.is_empty() {
            Validity::Invalid
        } else if !self.unknown.is_empty() {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        CheckReport {
            workload: self.workload,
            validity,
            anomalies: self.anomalies.into_values().collect(),
            unknown: self.unknown,
            operations: self.operations,
            stats: self.stats,
            check_time_ms: 0,
        }
    }
}

fn truncate(text: &mut String) {
    if text.len() > COUNTEREXAMPLE_BYTES_MAX {
        let mut end = COUNTEREXAMPLE_BYTES_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n…(truncated)\n");
    }
}

/// `register: valid (1234 operations)`, or the anomalies with their counterexamples.
impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let validity = match self.validity {
            Validity::Valid => "valid",
            Validity::Invalid => "INVALID",
            Validity::Unknown => "unknown",
        };
        write!(f, "{}: {validity} ({} operations", self.workload.name(), self.operations)?;
        for (name, value) in &self.stats {
            write!(f, ", {name} {value}")?;
        }
        writeln!(f, "; checked in {:.3} s)", self.check_time_ms as f64 / 1000.0)?;
        for anomaly in &self.anomalies {
            writeln!(f, "  anomaly {} (x{}); smallest counterexample:", anomaly.name, anomaly.count)?;
            for line in anomaly.counterexample.lines() {
                writeln!(f, "    {line}")?;
            }
        }
        for reason in &self.unknown {
            writeln!(f, "  unknown: {reason}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_instance_is_kept_and_all_are_counted() {
        let mut findings = Findings::new(Workload::Set, 3);
        findings.anomaly("lost", || "first".to_string());
        findings.anomaly("lost", || unreachable!("only the first counterexample is built"));
        findings.unknown("not recovered");
        let report = findings.report();
        assert_eq!(report.validity, Validity::Invalid);
        assert_eq!(report.anomalies, [Anomaly { name: "lost".into(), count: 2, counterexample: "first".into() }]);
        let text = report.to_string();
        assert!(text.starts_with("set: INVALID (3 operations"), "{text}");
        assert!(text.contains("anomaly lost (x2)"), "{text}");
    }

    #[test]
    fn unknown_without_anomalies_is_unknown() {
        let mut findings = Findings::new(Workload::Watch, 0);
        assert_eq!(Findings::new(Workload::Watch, 0).report().validity, Validity::Valid);
        findings.unknown("budget");
        assert_eq!(findings.report().validity, Validity::Unknown);
    }
}
