//! What a member counts for operators, under etcd's metric names: leader changes it has seen,
//! proposals in flight and proposals that failed (etcd's `etcd_server_*` counters, which its
//! Grafana dashboard and alerting rules read).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use super::Member;

#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    leader_changes: AtomicU64,
    proposals_pending: AtomicU64,
    proposals_failed: AtomicU64,
    /// Writes followers forwarded to this member (as their leader) and not answered yet: not
    /// etcd's pending proposals (those are a member's own), but a stopping member waits for
    /// them as for its own.
    forwarded_in_flight: AtomicU64,
}

/// One proposal in flight: pending until dropped (answered, failed or cancelled).
pub(crate) struct Pending<'a>(&'a AtomicU64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerCounters {
    /// One more proposal in flight, or `None` when `max` are already.
    pub(crate) fn try_proposing(&self, max: u64) -> Option<Pending<'_>> {
        let more = |pending: u64| (pending < max).then(|| pending.saturating_add(1));
        self.proposals_pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, more).ok()?;
        Some(Pending(&self.proposals_pending))
    }

    /// A follower's forwarded write, in flight until dropped.
    pub(crate) fn serving_forwarded(&self) -> Pending<'_> {
        self.forwarded_in_flight.fetch_add(1, Ordering::Relaxed);
        Pending(&self.forwarded_in_flight)
    }

    /// Proposals of this member and followers' writes it is serving, not answered yet.
    pub(crate) fn in_flight(&self) -> u64 {
        self.proposals_pending.load(Ordering::Relaxed).saturating_add(self.forwarded_in_flight.load(Ordering::Relaxed))
    }

    pub(crate) fn proposal_failed(&self) {
        self.proposals_failed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Member {
    /// `etcd_server_leader_changes_seen_total`, `etcd_server_proposals_pending`,
    /// `etcd_server_proposals_failed_total`.
    pub fn server_counters(&self) -> (u64, u64, u64) {
        let counters = &self.counters;
        (
            counters.leader_changes.load(Ordering::Relaxed),
            counters.proposals_pending.load(Ordering::Relaxed),
            counters.proposals_failed.load(Ordering::Relaxed),
        )
    }
}

/// Counts the leaders this member sees, as etcd does: every change to a known leader, the first
/// one included.
pub(super) async fn count_leader_changes(member: Arc<Member>, mut stop_rx: watch::Receiver<bool>) {
    // The server metrics change with roles and memberships only, not with every write.
    let mut metrics = member.raft().server_metrics();
    let mut last = None;
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        if leader.is_some() && leader != last {
            member.counters.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        last = leader;
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop_rx.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_past_the_cap_are_refused_until_one_is_answered() {
        let counters = ServerCounters::default();
        let first = counters.try_proposing(2).expect("room");
        let _second = counters.try_proposing(2).expect("room");
        assert!(counters.try_proposing(2).is_none(), "the third is refused");
        drop(first);
        assert!(counters.try_proposing(2).is_some(), "an answered proposal makes room");
        assert_eq!(counters.in_flight(), 1, "a refused proposal is not counted");
    }
}
