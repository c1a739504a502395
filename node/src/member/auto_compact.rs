//! `--auto-compaction-mode` / `--auto-compaction-retention`: the leader compacts the keyspace's
//! history on its own, with etcd 3.4's compactors' rules. Every member samples its revision; only
//! the leader proposes, so a new leader carries on where the old one stopped.
//!
//! - periodic (etcd's `v3compactor.Periodic`): the revision is sampled every tenth of
//!   min(retention, 1h); the first compaction comes `retention` after start, then one every
//!   min(retention, 1h), each to the revision sampled `retention` ago.
//! - revision (etcd's `v3compactor.Revision`): every 5 minutes, compact to current − retention
//!   when that is positive and has moved since the last compaction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Member;
use crate::command::CompactRequest;
use crate::config::AutoCompaction;
use crate::error::ServerError;
use crate::mvcc::MvccError;

/// etcd's revision compactor's interval.
const REVISION_MODE_INTERVAL: Duration = Duration::from_secs(300);

/// What decides, sample by sample, which revision to compact to.
#[derive(Debug)]
pub(crate) enum Policy {
    Periodic(Periodic),
    Revision { retention: i64, last: Option<i64> },
}

/// The periodic compactor's state: recent samples and time since the last compaction.
#[derive(Debug)]
pub(crate) struct Periodic {
    period: Duration,
    /// Time between samples.
    tick: Duration,
    /// How many samples cover `period`.
    keep: usize,
    samples: VecDeque<i64>,
    since_compacted: Duration,
    /// `period` until the first compaction, then min(period, 1h).
    wait: Duration,
}

impl Policy {
    pub fn new(mode: AutoCompaction) -> Policy {
        match mode {
            AutoCompaction::Periodic(period) => {
                let interval = period.min(Duration::from_secs(3600));
                let tick = (interval / 10).max(Duration::from_millis(1));
                let keep = usize::try_from(period.as_nanos() / tick.as_nanos()).unwrap_or(usize::MAX).saturating_add(1);
                Policy::Periodic(Periodic {
                    period,
                    tick,
                    keep,
                    samples: VecDeque::new(),
                    since_compacted: Duration::ZERO,
                    wait: period,
                })
            }
            AutoCompaction::Revision(retention) => Policy::Revision { retention, last: None },
        }
    }

    /// Time between two calls of `sample`.
    pub fn tick(&self) -> Duration {
        match self {
            Policy::Periodic(periodic) => periodic.tick,
            Policy::Revision { .. } => REVISION_MODE_INTERVAL,
        }
    }

    /// Takes the current revision, one tick after the last; answers where to compact to now, if
    /// anywhere.
    pub fn sample(&mut self, current: i64) -> Option<i64> {
        match self {
            Policy::Periodic(p) => {
                p.samples.push_back(current);
                while p.samples.len() > p.keep {
                    p.samples.pop_front();
                }
                p.since_compacted = p.since_compacted.saturating_add(p.tick);
                (p.since_compacted >= p.wait).then(|| p.samples.front().copied()).flatten()
            }
            Policy::Revision { retention, last } => {
                let target = current.saturating_sub(*retention);
                (target > 0 && *last != Some(target)).then_some(target)
            }
        }
    }

    /// The compaction to `revision` was applied (or had been already).
    pub fn compacted(&mut self, revision: i64) {
        match self {
            Policy::Periodic(p) => {
                p.since_compacted = Duration::ZERO;
                p.wait = p.period.min(Duration::from_secs(3600));
            }
            Policy::Revision { last, .. } => *last = Some(revision),
        }
    }
}

/// Samples this member's revision on the policy's tick and, while it leads, compacts.
pub(super) async fn run(member: Arc<Member>, mode: AutoCompaction, mut stop_rx: watch::Receiver<bool>) {
    let mut policy = Policy::new(mode);
    tracing::info!(?mode, "auto-compaction on");
    let mut interval = tokio::time::interval(policy.tick());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop_rx.wait_for(|stop| *stop) => return,
        }
        let current = member.shared.mvcc().current_revision();
        let Some(revision) = policy.sample(current) else { continue };
        if member.metrics().current_leader != Some(member.id) {
            continue;
        }
        match member.propose(CompactRequest { revision, physical: false }).await {
            Ok(_) => {
                tracing::info!(revision, "auto-compacted");
                policy.compacted(revision);
            }
            Err(ServerError::Mvcc(MvccError::Compacted { .. })) => policy.compacted(revision),
            Err(error) => tracing::warn!(revision, "auto-compaction failed: {error}; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_waits_the_retention_then_compacts_to_the_revision_sampled_that_long_ago() {
        let mut policy = Policy::new(AutoCompaction::Periodic(Duration::from_secs(10)));
        assert_eq!(policy.tick(), Duration::from_secs(1));
        // Revisions 100, 110, 120, …: one sample a second.
        let answers: Vec<Option<i64>> = (0..10).map(|i| policy.sample(100 + 10 * i)).collect();
        assert_eq!(answers[..9], [None; 9], "nothing before the retention has passed");
        assert_eq!(answers[9], Some(100), "then the revision of 10 s ago");
        policy.compacted(100);
        let next: Vec<Option<i64>> = (10..20).map(|i| policy.sample(100 + 10 * i)).collect();
        assert_eq!(next[..9], [None; 9], "then one every min(retention, 1h)");
        assert_eq!(next[9], Some(200 - 10), "the oldest of the 11 samples kept");
    }

    #[test]
    fn a_failed_compaction_is_retried_at_the_next_sample() {
        let mut policy = Policy::new(AutoCompaction::Periodic(Duration::from_secs(1)));
        let first = (0..10).filter_map(|i| policy.sample(i)).next();
        assert_eq!(first, Some(0));
        assert!(policy.sample(50).is_some(), "not compacted: asked again");
    }

    #[test]
    fn long_periods_compact_hourly_and_sample_every_six_minutes() {
        let mut policy = Policy::new(AutoCompaction::Periodic(Duration::from_secs(5 * 3600)));
        assert_eq!(policy.tick(), Duration::from_secs(360));
        let first = (0..60).position(|i| policy.sample(i).is_some());
        assert_eq!(first, Some(49), "5 h at 6 min a sample");
        policy.compacted(0);
        let next = (0..60).position(|i| policy.sample(i).is_some());
        assert_eq!(next, Some(9), "then hourly");
    }

    #[test]
    fn revision_mode_keeps_the_last_retention_revisions_and_never_repeats() {
        let mut policy = Policy::new(AutoCompaction::Revision(100));
        assert_eq!(policy.sample(50), None, "nothing to compact below the retention");
        assert_eq!(policy.sample(150), Some(50));
        policy.compacted(50);
        assert_eq!(policy.sample(150), None, "no writes since: nothing new");
        assert_eq!(policy.sample(i64::MIN), None, "no overflow");
        assert_eq!(policy.sample(400), Some(300));
    }
}
