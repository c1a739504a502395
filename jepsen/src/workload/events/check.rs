//! The events workload's history and its checker. Pure: no I/O, no clock.
//!
//! Every event carries a unique id (its payload is the id too), and a publish whose outcome is
//! unknown is repeated with the same ids, which the cluster de-duplicates. The final log, read
//! from offset 0 after healing, is the ground truth. Anomalies:
//! - `offset-gap`: the final log's offsets are not exactly 0, 1, 2...; or a tailing read's
//!   offsets skip;
//! - `duplicate`: one id appended twice;
//! - `unexpected-event`: an id nobody published, only in publishes that definitely failed, or
//!   a payload that is not its id;
//! - `acknowledged-event-lost`: an acknowledged publish's offset does not hold its event;
//! - `batch-not-contiguous`: the new events of one acknowledged batch are not at consecutive
//!   offsets;
//! - `event-changed`: a tailing read saw another event at an offset than the final log has.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::history::Outcome;
use crate::verdict::{CheckReport, Findings};
use crate::workload::set::check::seconds;
use crate::workload::Workload;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsHistory {
    pub topic: String,
    pub publishes: Vec<Publish>,
    pub tail_reads: Vec<TailRead>,
    /// The whole topic from offset 0, after healing; `None` when it could not be read.
    pub final_log: Option<Vec<LoggedEvent>>,
}

/// One publish call of one batch (a repeat of a batch is another `Publish`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: Option<u64>,
    pub ids: Vec<String>,
    /// One per id when `Ok`, else empty.
    pub published: Vec<PublishedAt>,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedAt {
    pub offset: u64,
    /// The id was already in the log: nothing was appended.
    pub duplicate: bool,
}

/// One page read by the tailing reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailRead {
    pub call_ns: u64,
    pub return_ns: Option<u64>,
    pub from_offset: u64,
    /// Empty unless `Ok`.
    pub events: Vec<LoggedEvent>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub offset: u64,
    pub id: Option<String>,
    pub payload: String,
}

impl EventsHistory {
    pub fn calls(&self) -> impl Iterator<Item = (u64, Option<u64>, Outcome)> + '_ {
        let publishes = self.publishes.iter().map(|publish| (publish.call_ns, publish.return_ns, publish.outcome));
        let reads = self.tail_reads.iter().map(|read| (read.call_ns, read.return_ns, read.outcome));
        publishes.chain(reads)
    }
}

/// Checks `history` as the module doc says.
pub fn check(history: &EventsHistory) -> CheckReport {
    let mut findings = Findings::new(Workload::Events, history.publishes.len() + history.tail_reads.len());
    let attempted: HashMap<&str, Vec<&Publish>> = history.publishes.iter().fold(HashMap::new(), |mut map, publish| {
        for id in &publish.ids {
            map.entry(id.as_str()).or_insert_with(Vec::new).push(publish);
        }
        map
    });
    findings.stat("events-published", attempted.len() as u64);
    findings.stat(
        "events-acknowledged",
        history
            .publishes
            .iter()
            .filter(|publish| publish.outcome == Outcome::Ok)
            .map(|publish| publish.ids.len() as u64)
            .sum(),
    );
    let Some(log) = &history.final_log else {
        findings.unknown("no final read of the topic: the healed cluster never answered one");
        return findings.report();
    };
    findings.stat("final-log-events", log.len() as u64);

    let mut first_offset: HashMap<&str, u64> = HashMap::new();
    for (index, event) in log.iter().enumerate() {
        if event.offset != index as u64 {
            findings.anomaly("offset-gap", || {
                format!("the final log's event #{index} has offset {}: {event:?}\n", event.offset)
            });
        }
        let Some(id) = event.id.as_deref() else {
            findings
                .anomaly("unexpected-event", || format!("event without id at offset {}: {event:?}\n", event.offset));
            continue;
        };
        if let Some(first) = first_offset.insert(id, event.offset) {
            findings.anomaly("duplicate", || {
                format!(
                    "id {id:?} at offsets {first} and {}; its publishes:\n{}",
                    event.offset,
                    describe(&attempted, id)
                )
            });
        }
        let problem = match attempted.get(id) {
            None => Some("nobody published it".to_string()),
            Some(publishes) if publishes.iter().all(|publish| publish.outcome == Outcome::Fail) => {
                Some(format!("every publish of it definitely failed:\n{}", describe(&attempted, id)))
            }
            Some(_) if event.payload != id => Some(format!("its payload is {:?}", event.payload)),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            findings.anomaly("unexpected-event", || format!("{event:?}: {problem}\n"));
        }
    }

    for publish in history.publishes.iter().filter(|publish| publish.outcome == Outcome::Ok) {
        for (id, at) in publish.ids.iter().zip(&publish.published) {
            let logged = usize::try_from(at.offset).ok().and_then(|offset| log.get(offset));
            if logged.is_none_or(|event| event.id.as_deref() != Some(id.as_str())) {
                findings.anomaly("acknowledged-event-lost", || {
                    format!(
                        "id {id:?} acknowledged at offset {} by p{} [{}, {}], but the final log has {:?} there\n",
                        at.offset,
                        publish.process,
                        seconds(publish.call_ns),
                        publish.return_ns.map_or("∞".to_string(), seconds),
                        logged
                    )
                });
            }
        }
        let appended: Vec<u64> = publish.published.iter().filter(|at| !at.duplicate).map(|at| at.offset).collect();
        if appended.windows(2).any(|pair| pair[1] != pair[0] + 1) {
            findings.anomaly("batch-not-contiguous", || {
                format!("batch {:?} by p{} appended at offsets {appended:?}\n", publish.ids, publish.process)
            });
        }
    }

    let mut seen_reads = HashSet::new();
    for read in history.tail_reads.iter().filter(|read| read.outcome == Outcome::Ok) {
        for (index, event) in read.events.iter().enumerate() {
            if event.offset != read.from_offset + index as u64 {
                findings.anomaly("offset-gap", || {
                    format!(
                        "a read from offset {} returned offset {} as its event #{index}\n",
                        read.from_offset, event.offset
                    )
                });
            }
            let in_log = usize::try_from(event.offset).ok().and_then(|offset| log.get(offset));
            if in_log != Some(event) && seen_reads.insert(event.offset) {
                findings.anomaly("event-changed", || {
                    format!(
                        "a read at [{}, {}] saw {event:?}; the final log has {in_log:?}\n",
                        seconds(read.call_ns),
                        read.return_ns.map_or("∞".to_string(), seconds)
                    )
                });
            }
        }
    }
    findings.report()
}

fn describe(attempted: &HashMap<&str, Vec<&Publish>>, id: &str) -> String {
    attempted
        .get(id)
        .into_iter()
        .flatten()
        .map(|publish| {
            format!(
                "  p{} [{}, {}] {:?} {} {:?}\n",
                publish.process,
                seconds(publish.call_ns),
                publish.return_ns.map_or("∞".to_string(), seconds),
                publish.ids,
                publish.outcome,
                publish.published
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Validity;

    fn publish(ids: &[&str], published: &[(u64, bool)], outcome: Outcome) -> Publish {
        Publish {
            process: 0,
            call_ns: 0,
            return_ns: Some(1),
            ids: ids.iter().map(|id| id.to_string()).collect(),
            published: published.iter().map(|&(offset, duplicate)| PublishedAt { offset, duplicate }).collect(),
            outcome,
        }
    }

    fn logged(offset: u64, id: &str) -> LoggedEvent {
        LoggedEvent { offset, id: Some(id.to_string()), payload: id.to_string() }
    }

    fn anomalies(publishes: Vec<Publish>, log: Vec<LoggedEvent>) -> Vec<String> {
        let history = EventsHistory { topic: "t".into(), publishes, tail_reads: Vec::new(), final_log: Some(log) };
        check(&history).anomalies.iter().map(|anomaly| anomaly.name.clone()).collect()
    }

    #[test]
    fn a_retried_batch_deduplicated_is_valid() {
        let publishes = vec![
            publish(&["a", "b"], &[], Outcome::Indeterminate),
            publish(&["a", "b"], &[(0, true), (1, true)], Outcome::Ok),
            publish(&["c"], &[(2, false)], Outcome::Ok),
            publish(&["d"], &[], Outcome::Indeterminate),
        ];
        let history = EventsHistory {
            topic: "t".into(),
            publishes,
            tail_reads: vec![TailRead {
                call_ns: 0,
                return_ns: Some(1),
                from_offset: 1,
                events: vec![logged(1, "b")],
                outcome: Outcome::Ok,
            }],
            final_log: Some(vec![logged(0, "a"), logged(1, "b"), logged(2, "c")]),
        };
        let report = check(&history);
        assert_eq!(report.validity, Validity::Valid, "{report}");
    }

    #[test]
    fn lost_duplicated_and_invented_events_are_named() {
        let ok = |id: &str, offset| publish(&[id], &[(offset, false)], Outcome::Ok);
        assert_eq!(anomalies(vec![ok("a", 0), ok("b", 1)], vec![logged(0, "a")]), ["acknowledged-event-lost"]);
        assert_eq!(anomalies(vec![ok("a", 0)], vec![logged(0, "a"), logged(1, "a")]), ["duplicate"]);
        assert_eq!(anomalies(vec![ok("a", 0)], vec![logged(0, "a"), logged(1, "z")]), ["unexpected-event"]);
        assert_eq!(
            anomalies(vec![ok("a", 0), publish(&["b"], &[], Outcome::Fail)], vec![logged(0, "a"), logged(1, "b")]),
            ["unexpected-event"]
        );
        assert_eq!(
            anomalies(vec![ok("a", 0)], vec![logged(0, "a"), logged(2, "a2")]).first().map(String::as_str),
            Some("offset-gap")
        );
    }
}
