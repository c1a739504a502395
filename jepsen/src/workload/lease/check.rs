//! The lease workload's history and its checker. Pure: no I/O, no clock.
//!
//! Each lease carries one key: `l/k/<lease>` on a lease its keeper keeps alive, `l/a/<lease>`
//! on one nobody keeps alive. A successful grant or keep-alive called at `c` that answered a
//! TTL `t > 0` proves the lease alive from its grant until at least `c + t` (the cluster
//! counts the TTL from when it handled the call, which is after `c`, and a lease never comes
//! back). So, of every successful prefix read R:
//! - `lease-key-lost`: a kept key whose Put was acknowledged before R was called is missing
//!   from R although R returned before its lease's proven end (less [`SLACK_NS`]);
//! - `abandoned-key-outlived-ttl`: an abandoned key is still in R although R was called after
//!   its lease's grant returned plus the TTL plus [`ELECTION_ALLOWANCE_NS`]. A leader change
//!   gives every lease its full TTL again (etcd's rule), so the allowance restarts at the end
//!   of every fault in force meanwhile, and at the recovery after healing;
//! - `lease-expired-early`: a keep-alive answered TTL 0 (lease gone) before the lease's proven
//!   end.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::KEPT_PREFIX;
use crate::history::Outcome;
use crate::verdict::{CheckReport, Findings};
use crate::workload::set::check::seconds;
use crate::workload::{RunFacts, Workload};

/// Leeway for the kept keys: the cluster's lease deadlines and the harness share one clock,
/// but a TTL is whole seconds and a deadline is checked every few hundred milliseconds.
pub const SLACK_NS: u64 = 100_000_000;
/// Time after a lease's TTL (or after the end of a fault) within which an abandoned lease's
/// key must be gone: a restarted member's start, one election (election timeouts are 0.5 to
/// 1 s), the leader's expiry check every 0.5 s, and the commit of the revoke.
pub const ELECTION_ALLOWANCE_NS: u64 = 4_000_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHistory {
    pub ttl_secs: i64,
    pub operations: Vec<LeaseOperation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOperation {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: Option<u64>,
    pub op: LeaseOp,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LeaseOp {
    /// `lease` is known only when `Ok`.
    Grant {
        lease: Option<i64>,
        ttl_secs: i64,
    },
    Put {
        lease: i64,
        key: String,
    },
    /// `ttl_secs` as answered; 0: the lease is gone.
    KeepAlive {
        lease: i64,
        ttl_secs: i64,
    },
    /// `keys` ascending; empty unless `Ok`.
    Read {
        keys: Vec<String>,
        final_read: bool,
    },
}

impl LeaseHistory {
    pub fn calls(&self) -> impl Iterator<Item = (u64, Option<u64>, Outcome)> + '_ {
        self.operations.iter().map(|operation| (operation.call_ns, operation.return_ns, operation.outcome))
    }
}

/// What the history proves about one lease.
#[derive(Debug, Default)]
struct Lease<'a> {
    grant: Option<&'a LeaseOperation>,
    /// The latest `call + TTL` of a successful grant or keep-alive: alive until then.
    alive_until_ns: u64,
    /// The successful Put of its key.
    put: Option<&'a LeaseOperation>,
    key: Option<&'a str>,
    /// Keep-alives that answered "gone".
    gone: Vec<&'a LeaseOperation>,
}

/// Checks `history` as the module doc says.
pub fn check(history: &LeaseHistory, facts: &RunFacts) -> CheckReport {
    let mut findings = Findings::new(Workload::Lease, history.operations.len());
    let ttl_ns = u64::try_from(history.ttl_secs).unwrap_or(0) * 1_000_000_000;
    let mut leases: HashMap<i64, Lease> = HashMap::new();
    let mut reads = Vec::new();
    for operation in &history.operations {
        let ok = operation.outcome == Outcome::Ok;
        match &operation.op {
            LeaseOp::Grant { lease: Some(id), ttl_secs } if ok => {
                let lease = leases.entry(*id).or_default();
                lease.grant = Some(operation);
                lease.alive_until_ns = lease.alive_until_ns.max(operation.call_ns + secs_ns(*ttl_secs));
            }
            LeaseOp::KeepAlive { lease: id, ttl_secs } if ok => {
                let lease = leases.entry(*id).or_default();
                if *ttl_secs > 0 {
                    lease.alive_until_ns = lease.alive_until_ns.max(operation.call_ns + secs_ns(*ttl_secs));
                } else {
                    lease.gone.push(operation);
                }
            }
            LeaseOp::Put { lease: id, key } => {
                let lease = leases.entry(*id).or_default();
                lease.key = Some(key);
                if ok {
                    lease.put = Some(operation);
                }
            }
            LeaseOp::Read { keys, final_read } if ok && operation.return_ns.is_some() => {
                reads.push((operation, keys, *final_read));
            }
            _ => {}
        }
    }
    reads.sort_by_key(|(operation, _, _)| operation.call_ns);
    if !reads.iter().any(|(_, _, final_read)| *final_read) {
        findings.unknown("no final read: the healed cluster never answered one");
    }
    let mut ids: Vec<i64> = leases.keys().copied().collect();
    ids.sort_unstable();
    let kept = |lease: &Lease| lease.key.is_some_and(|key| key.starts_with(KEPT_PREFIX));
    findings.stat("leases-kept", ids.iter().filter(|id| kept(&leases[id])).count() as u64);
    findings.stat("leases-abandoned", ids.iter().filter(|id| !kept(&leases[id])).count() as u64);
    findings.stat("reads", reads.len() as u64);

    // Fault windows, plus the recovery after healing: leadership may change at either.
    let mut windows: Vec<(u64, u64)> = facts.faults.iter().map(|fault| (fault.start_ns, fault.end_ns)).collect();
    if let Some(recovered_ns) = facts.recovered_ns {
        windows.push((recovered_ns, recovered_ns));
    }
    windows.sort_unstable();

    for (read, keys, _) in &reads {
        let return_ns = read.return_ns.unwrap_or(u64::MAX);
        for id in &ids {
            let lease = &leases[id];
            let (Some(key), Some(grant)) = (lease.key, lease.grant) else { continue };
            let present = keys.binary_search_by(|candidate| candidate.as_str().cmp(key)).is_ok();
            if kept(lease) {
                let Some(put) = lease.put else { continue };
                let put_done = put.return_ns.unwrap_or(u64::MAX);
                if !present && put_done <= read.call_ns && return_ns + SLACK_NS < lease.alive_until_ns {
                    findings.anomaly("lease-key-lost", || {
                        format!(
                            "{key} missing from the read [{}, {}], but its put returned at {} and its \
                             lease {id:x} was proven alive until {}\n{}",
                            seconds(read.call_ns),
                            seconds(return_ns),
                            seconds(put_done),
                            seconds(lease.alive_until_ns),
                            timeline(history, *id)
                        )
                    });
                }
            } else {
                let granted_ns = grant.return_ns.unwrap_or(u64::MAX);
                let bound = expiry_bound(granted_ns, ttl_ns, &windows);
                if present && read.call_ns > bound {
                    findings.anomaly("abandoned-key-outlived-ttl", || {
                        format!(
                            "{key} still in the read [{}, {}]; its lease {id:x} of {} s was granted by {} and \
                             nobody kept it alive, so it had to be gone by {} (TTL, then {} s after the last fault)\n{}",
                            seconds(read.call_ns),
                            seconds(return_ns),
                            history.ttl_secs,
                            seconds(granted_ns),
                            seconds(bound),
                            ELECTION_ALLOWANCE_NS / 1_000_000_000,
                            timeline(history, *id)
                        )
                    });
                }
            }
        }
    }
    for id in &ids {
        let lease = &leases[id];
        for gone in &lease.gone {
            if gone.return_ns.unwrap_or(u64::MAX) + SLACK_NS < lease.alive_until_ns {
                findings.anomaly("lease-expired-early", || {
                    format!(
                        "a keep-alive of lease {id:x} answered \"gone\" at {} although it was proven alive until {}\n{}",
                        seconds(gone.return_ns.unwrap_or(u64::MAX)),
                        seconds(lease.alive_until_ns),
                        timeline(history, *id)
                    )
                });
            }
        }
    }
    findings.report()
}

/// The time an abandoned lease's key must be gone by: its grant plus the TTL plus the
/// allowance, or, for every window (sorted by start) that begins before the bound then in
/// force, the window's end plus the TTL plus the allowance, whichever is later.
pub fn expiry_bound(granted_ns: u64, ttl_ns: u64, windows: &[(u64, u64)]) -> u64 {
    let after = |ns: u64| ns.saturating_add(ttl_ns).saturating_add(ELECTION_ALLOWANCE_NS);
    let mut bound = after(granted_ns);
    for &(start_ns, end_ns) in windows {
        if start_ns < bound {
            bound = bound.max(after(end_ns));
        }
    }
    bound
}

fn secs_ns(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0).saturating_mul(1_000_000_000)
}

/// The lease's operations, one a line, at most a few dozen.
fn timeline(history: &LeaseHistory, id: i64) -> String {
    const LINES_MAX: usize = 40;
    let mut text = String::new();
    let relevant = history.operations.iter().filter(|operation| match &operation.op {
        LeaseOp::Grant { lease, .. } => *lease == Some(id),
        LeaseOp::Put { lease, .. } | LeaseOp::KeepAlive { lease, .. } => *lease == id,
        LeaseOp::Read { .. } => false,
    });
    for operation in relevant.take(LINES_MAX) {
        text.push_str(&format!(
            "  p{} [{}, {}] {:?} {}\n",
            operation.process,
            seconds(operation.call_ns),
            operation.return_ns.map_or("∞".to_string(), seconds),
            operation.op,
            operation.outcome
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Validity;
    use crate::workload::lease::ABANDONED_PREFIX;

    const S: u64 = 1_000_000_000;

    fn op(call_s: f64, return_s: f64, op: LeaseOp) -> LeaseOperation {
        let ns = |s: f64| (s * 1e9) as u64;
        LeaseOperation { process: 0, call_ns: ns(call_s), return_ns: Some(ns(return_s)), op, outcome: Outcome::Ok }
    }

    fn grant(at: f64, lease: i64) -> LeaseOperation {
        op(at, at + 0.01, LeaseOp::Grant { lease: Some(lease), ttl_secs: 2 })
    }

    fn put(at: f64, lease: i64, prefix: &str) -> LeaseOperation {
        op(at, at + 0.01, LeaseOp::Put { lease, key: format!("{prefix}{lease:x}") })
    }

    fn keep_alive(at: f64, lease: i64, ttl_secs: i64) -> LeaseOperation {
        op(at, at + 0.01, LeaseOp::KeepAlive { lease, ttl_secs })
    }

    fn read(at: f64, keys: &[&str], final_read: bool) -> LeaseOperation {
        let keys = keys.iter().map(|key| key.to_string()).collect();
        op(at, at + 0.01, LeaseOp::Read { keys, final_read })
    }

    fn anomalies(operations: Vec<LeaseOperation>, faults: Vec<(u64, u64)>) -> Vec<String> {
        let facts = RunFacts {
            faults: faults
                .into_iter()
                .map(|(start_ns, end_ns)| crate::nemesis::FaultRecord {
                    kind: crate::nemesis::FaultKind::Pause,
                    members: vec!["n0".into()],
                    on_leader: false,
                    links: Vec::new(),
                    start_ns,
                    end_ns,
                })
                .collect(),
            recovered_ns: None,
        };
        let report = check(&LeaseHistory { ttl_secs: 2, operations }, &facts);
        report.anomalies.iter().map(|anomaly| anomaly.name.clone()).collect()
    }

    #[test]
    fn kept_and_expired_keys_as_promised_are_valid() {
        let operations = vec![
            grant(0.0, 1),
            put(0.1, 1, KEPT_PREFIX),
            grant(0.0, 2),
            put(0.1, 2, ABANDONED_PREFIX),
            keep_alive(1.0, 1, 2),
            read(1.5, &["l/a/2", "l/k/1"], false),
            keep_alive(2.0, 1, 2),
            // Lease 1 is alive until 4.0; lease 2 must be gone by 0.01 + 2 + 4.
            read(6.5, &["l/k/1"], true),
        ];
        let report =
            check(&LeaseHistory { ttl_secs: 2, operations }, &RunFacts { faults: Vec::new(), recovered_ns: None });
        assert_eq!(report.validity, Validity::Valid, "{report}");
    }

    #[test]
    fn a_kept_key_missing_before_its_lease_could_expire_is_lost() {
        let operations = vec![grant(0.0, 1), put(0.1, 1, KEPT_PREFIX), keep_alive(1.0, 1, 2), read(2.5, &[], true)];
        assert_eq!(anomalies(operations, Vec::new()), ["lease-key-lost"]);
    }

    #[test]
    fn a_kept_key_may_go_once_its_keeper_stopped() {
        let operations = vec![grant(0.0, 1), put(0.1, 1, KEPT_PREFIX), keep_alive(1.0, 1, 2), read(3.5, &[], true)];
        assert!(anomalies(operations, Vec::new()).is_empty());
    }

    #[test]
    fn an_abandoned_key_must_go_within_ttl_plus_an_election_after_the_last_fault() {
        let late = vec![grant(0.0, 2), put(0.1, 2, ABANDONED_PREFIX), read(6.5, &["l/a/2"], true)];
        assert_eq!(anomalies(late.clone(), Vec::new()), ["abandoned-key-outlived-ttl"]);
        // A fault from 1 s to 3 s restarts the clock: the key may stay until 3 + 2 + 4 s.
        assert!(anomalies(late, vec![(S, 3 * S)]).is_empty());
    }

    #[test]
    fn gone_before_the_promise_is_early() {
        let operations = vec![grant(0.0, 1), keep_alive(1.0, 1, 2), keep_alive(1.5, 1, 0), read(5.0, &[], true)];
        assert_eq!(anomalies(operations, Vec::new()), ["lease-expired-early"]);
    }

    #[test]
    fn expiry_bound_follows_overlapping_faults() {
        let ttl = 2 * S;
        assert_eq!(expiry_bound(0, ttl, &[]), 6 * S);
        // A fault that starts before the bound pushes it; one after it does not.
        assert_eq!(expiry_bound(0, ttl, &[(5 * S, 7 * S), (20 * S, 21 * S)]), 13 * S);
    }
}
