//! The watch workload's history and its checker. Pure: no I/O, no clock.
//!
//! The ground truth is the *reference*: a fresh watch of the prefix from the watchers' start
//! revision to the fence (a Put after healing), read once the cluster recovered. It is checked
//! against the writers' acknowledged Puts, whose revisions are known; then every watcher is
//! compared with it over the watcher's range. Anomalies:
//! - `acknowledged-put-missing`: an acknowledged Put's revision holds another event, or none;
//! - `unexpected-event`: an event whose value nobody wrote, or whose Put definitely failed;
//! - `watch-out-of-order`: a watcher's (or the reference's) revisions do not strictly rise;
//! - `watch-gap`: the reference has an event, between a watcher's start and the last
//!   revision it saw, that the watcher never got;
//! - `watch-divergent`: a watcher got an event the reference does not have at that revision;
//! - `watch-stalled`: after healing, a watcher did not reach the fence within the catch-up
//!   time.
//!
//! Together: all watchers saw the same sequence of revisions, the reference's, without gaps.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::history::Outcome;
use crate::verdict::{CheckReport, Findings};
use crate::workload::set::check::seconds;
use crate::workload::{RunFacts, Workload};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchHistory {
    /// Every watcher (and the reference) starts here.
    pub start_revision: i64,
    /// The revision of the fence Put after healing; `None` when it could not be written.
    pub fence_revision: Option<i64>,
    pub puts: Vec<WatchPut>,
    pub watchers: Vec<WatcherLog>,
    /// `None` when it could not be read.
    pub reference: Option<Vec<WatchEvent>>,
}

/// A writer's Put, with the revision its response carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchPut {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: Option<u64>,
    pub key: String,
    /// Unique per Put.
    pub value: String,
    /// Known when `Ok`.
    pub revision: Option<i64>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub revision: i64,
    pub key: String,
    /// Empty for a delete.
    pub value: String,
    pub delete: bool,
}

/// One watcher: the events it got, in order, and each (re)connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherLog {
    pub watcher: usize,
    pub events: Vec<WatchEvent>,
    pub sessions: Vec<WatchSession>,
    /// Whether it reached the fence after healing.
    pub caught_up: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSession {
    /// The member index it watched through.
    pub member: usize,
    pub start_revision: i64,
    pub opened_ns: u64,
    pub closed_ns: u64,
    /// Why it ended; `None`: stopped by the harness.
    pub error: Option<String>,
}

impl WatchHistory {
    pub fn calls(&self) -> impl Iterator<Item = (u64, Option<u64>, Outcome)> + '_ {
        self.puts.iter().map(|put| (put.call_ns, put.return_ns, put.outcome))
    }
}

/// Checks `history` as the module doc says.
pub fn check(history: &WatchHistory, facts: &RunFacts) -> CheckReport {
    let mut findings = Findings::new(Workload::Watch, history.puts.len());
    let by_value: HashMap<&str, &WatchPut> = history.puts.iter().map(|put| (put.value.as_str(), put)).collect();
    findings.stat("watchers", history.watchers.len() as u64);
    findings.stat("reconnects", history.watchers.iter().map(|log| log.sessions.len().saturating_sub(1) as u64).sum());
    findings.stat("events-seen", history.watchers.iter().map(|log| log.events.len() as u64).sum());

    let Some(reference) = &history.reference else {
        findings.unknown("no reference history: the fresh watch after healing failed");
        for log in &history.watchers {
            check_order(&mut findings, &format!("watcher {}", log.watcher), &log.events);
        }
        return findings.report();
    };
    findings.stat("reference-events", reference.len() as u64);
    check_order(&mut findings, "the reference", reference);
    let at: HashMap<i64, &WatchEvent> = reference.iter().map(|event| (event.revision, event)).collect();
    let fence = history.fence_revision.unwrap_or(i64::MAX);

    // The reference against the writers.
    for put in &history.puts {
        let Some(revision) = put.revision else { continue };
        if put.outcome != Outcome::Ok || revision < history.start_revision || revision > fence {
            continue;
        }
        if at.get(&revision).is_none_or(|event| event.key != put.key || event.value != put.value) {
            findings.anomaly("acknowledged-put-missing", || {
                format!(
                    "put {:?}={:?} by p{} [{}, {}] was acknowledged at revision {revision}, but the reference has {:?} there\n",
                    put.key,
                    put.value,
                    put.process,
                    seconds(put.call_ns),
                    put.return_ns.map_or("∞".to_string(), seconds),
                    at.get(&revision)
                )
            });
        }
    }
    for event in reference {
        let problem = match by_value.get(event.value.as_str()) {
            _ if event.delete => Some("nobody deletes under the prefix".to_string()),
            None => Some("nobody wrote this value".to_string()),
            Some(put) if put.outcome == Outcome::Fail => Some(format!("its put by p{} definitely failed", put.process)),
            Some(put) if put.key != event.key => Some(format!("it was written to {:?}", put.key)),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            findings.anomaly("unexpected-event", || format!("reference event {event:?}: {problem}\n"));
        }
    }

    // Every watcher against the reference.
    for log in &history.watchers {
        let name = format!("watcher {}", log.watcher);
        check_order(&mut findings, &name, &log.events);
        let last = if log.caught_up {
            fence
        } else {
            log.events.last().map_or(history.start_revision - 1, |event| event.revision)
        };
        let seen: HashMap<i64, &WatchEvent> = log.events.iter().map(|event| (event.revision, event)).collect();
        for event in reference.iter().filter(|event| event.revision >= history.start_revision && event.revision <= last)
        {
            if !seen.contains_key(&event.revision) {
                findings.anomaly("watch-gap", || {
                    format!(
                        "{name} watched from revision {} to {last} but never got revision {} ({:?})\n{}",
                        history.start_revision,
                        event.revision,
                        event.key,
                        neighbourhood(log, reference, event.revision)
                    )
                });
            }
        }
        for event in &log.events {
            if at.get(&event.revision).is_none_or(|expected| *expected != event) {
                findings.anomaly("watch-divergent", || {
                    format!(
                        "{name} got {event:?}; the reference has {:?} at revision {}\n{}",
                        at.get(&event.revision),
                        event.revision,
                        neighbourhood(log, reference, event.revision)
                    )
                });
            }
        }
        if !log.caught_up {
            if facts.recovered_ns.is_some() && history.fence_revision.is_some() {
                findings.anomaly("watch-stalled", || {
                    let sessions: String = log.sessions.iter().map(|session| format!("  {session:?}\n")).collect();
                    format!(
                        "{name} stopped at revision {last}, short of the fence at {fence}; its sessions:\n{sessions}"
                    )
                });
            } else {
                findings.unknown(format!("{name} did not reach a fence (the cluster did not recover)"));
            }
        }
    }
    findings.report()
}

fn check_order(findings: &mut Findings, name: &str, events: &[WatchEvent]) {
    for pair in events.windows(2) {
        if pair[1].revision <= pair[0].revision {
            findings.anomaly("watch-out-of-order", || {
                format!(
                    "{name} got revision {} after revision {}: {:?} then {:?}\n",
                    pair[1].revision, pair[0].revision, pair[0], pair[1]
                )
            });
        }
    }
}

/// The watcher's and the reference's events around `revision`, side by side.
fn neighbourhood(log: &WatcherLog, reference: &[WatchEvent], revision: i64) -> String {
    const AROUND: usize = 3;
    let window = |events: &[WatchEvent]| {
        let index = events.partition_point(|event| event.revision < revision);
        let from = index.saturating_sub(AROUND);
        let to = (index + AROUND + 1).min(events.len());
        events[from..to]
            .iter()
            .map(|event| format!("{}:{}={}", event.revision, event.key, event.value))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut text = String::new();
    let _ = writeln!(text, "  watcher:   {}", window(&log.events));
    let _ = writeln!(text, "  reference: {}", window(reference));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Validity;

    fn event(revision: i64, value: &str) -> WatchEvent {
        WatchEvent { revision, key: "w/k0".into(), value: value.into(), delete: false }
    }

    fn put(value: &str, revision: Option<i64>, outcome: Outcome) -> WatchPut {
        WatchPut {
            process: 0,
            call_ns: 0,
            return_ns: Some(1),
            key: "w/k0".into(),
            value: value.into(),
            revision,
            outcome,
        }
    }

    fn history(watchers: Vec<Vec<WatchEvent>>) -> WatchHistory {
        WatchHistory {
            start_revision: 10,
            fence_revision: Some(14),
            puts: vec![
                put("a", Some(10), Outcome::Ok),
                put("b", None, Outcome::Indeterminate),
                put("c", Some(14), Outcome::Ok),
            ],
            watchers: watchers
                .into_iter()
                .enumerate()
                .map(|(watcher, events)| WatcherLog { watcher, events, sessions: Vec::new(), caught_up: true })
                .collect(),
            reference: Some(vec![event(10, "a"), event(12, "b"), event(14, "c")]),
        }
    }

    fn anomalies(history: &WatchHistory) -> Vec<String> {
        let report = check(history, &RunFacts { faults: Vec::new(), recovered_ns: Some(0) });
        report.anomalies.iter().map(|anomaly| anomaly.name.clone()).collect()
    }

    #[test]
    fn watchers_that_agree_with_the_reference_are_valid() {
        let full = vec![event(10, "a"), event(12, "b"), event(14, "c")];
        let history = history(vec![full.clone(), full]);
        let report = check(&history, &RunFacts { faults: Vec::new(), recovered_ns: Some(0) });
        assert_eq!(report.validity, Validity::Valid, "{report}");
    }

    #[test]
    fn a_skipped_revision_is_a_gap() {
        assert_eq!(anomalies(&history(vec![vec![event(10, "a"), event(14, "c")]])), ["watch-gap"]);
    }

    #[test]
    fn a_different_event_is_divergent_and_a_repeat_out_of_order() {
        let found = anomalies(&history(vec![vec![event(10, "a"), event(12, "x"), event(14, "c")]]));
        assert_eq!(found, ["watch-divergent"]);
        let found = anomalies(&history(vec![vec![event(10, "a"), event(12, "b"), event(12, "b"), event(14, "c")]]));
        assert_eq!(found, ["watch-out-of-order"]);
    }

    #[test]
    fn a_watcher_short_of_the_fence_stalled() {
        let mut history = history(vec![vec![event(10, "a"), event(12, "b")]]);
        history.watchers[0].caught_up = false;
        assert_eq!(anomalies(&history), ["watch-stalled"]);
    }

    #[test]
    fn the_reference_must_hold_every_acknowledged_put() {
        let mut history = history(vec![]);
        history.reference = Some(vec![event(10, "a"), event(14, "c")]);
        assert!(anomalies(&history).is_empty());
        history.reference = Some(vec![event(10, "a"), event(12, "b")]);
        assert_eq!(anomalies(&history), ["acknowledged-put-missing"]);
    }
}
