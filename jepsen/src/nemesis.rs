//! The nemesis: a schedule of faults that is a pure function of the seed and the
//! configuration ([`schedule`]), and its execution against a [`Cluster`] ([`run`]), which
//! records when each fault was really in force.
//!
//! It chooses and times faults; how a fault is injected is the cluster's business.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::clock::RunClock;
use crate::cluster::Cluster;

/// Quiet time before each fault, so the cluster recovers and the workload makes progress.
const QUIET_MS: RangeInclusive<u64> = 2_000..=4_000;
const KILL_DOWNTIME_MS: RangeInclusive<u64> = 1_000..=3_000;
const PAUSE_MS: RangeInclusive<u64> = 1_000..=3_000;
const ISOLATE_MS: RangeInclusive<u64> = 2_000..=5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// kill -9 of one member, then restart on the same data dir.
    Kill,
    /// kill -9 of every member at once, then restart them all: what an acknowledged write
    /// that never reached the disk does not survive.
    KillAll,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Block the inbound peer proxies of a minority: a one-way partition, see
    /// [`crate::cluster`] for exactly what it cuts.
    IsolateInbound,
}

#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// The faults to choose from; empty means no faults.
    pub kinds: Vec<FaultKind>,
    pub nodes: usize,
    pub time_limit: Duration,
    pub seed: u64,
}

/// One fault as planned: offsets from the start of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFault {
    pub kind: FaultKind,
    /// Member indexes, ascending.
    pub members: Vec<usize>,
    pub start: Duration,
    pub duration: Duration,
}

/// One fault as it happened, for the report: nanoseconds on the [`RunClock`].
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub members: Vec<String>,
    /// When the fault was in force: from just after injecting it to just before undoing it.
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The faults to inject, in order, each starting after the previous one ended and a quiet
/// gap. Only faults that start before the time limit are planned.
pub fn schedule(config: &NemesisConfig) -> Vec<PlannedFault> {
    let mut faults = Vec::new();
    if config.kinds.is_empty() || config.nodes == 0 {
        return faults;
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut at = Duration::ZERO;
    loop {
        at += Duration::from_millis(rng.random_range(QUIET_MS));
        if at >= config.time_limit {
            return faults;
        }
        let kind = config.kinds[rng.random_range(0..config.kinds.len())];
        let (members, duration_ms) = match kind {
            FaultKind::Kill => (vec![rng.random_range(0..config.nodes)], rng.random_range(KILL_DOWNTIME_MS)),
            FaultKind::KillAll => ((0..config.nodes).collect(), rng.random_range(KILL_DOWNTIME_MS)),
            FaultKind::Pause => (vec![rng.random_range(0..config.nodes)], rng.random_range(PAUSE_MS)),
            FaultKind::IsolateInbound => {
                let minority_max = ((config.nodes - 1) / 2).max(1);
                let count = rng.random_range(1..=minority_max);
                let mut members = rand::seq::index::sample(&mut rng, config.nodes, count).into_vec();
                members.sort_unstable();
                (members, rng.random_range(ISOLATE_MS))
            }
        };
        let duration = Duration::from_millis(duration_ms);
        faults.push(PlannedFault { kind, members, start: at, duration });
        at += duration;
    }
}

/// Injects `schedule` on time; a fault still in force at `deadline` is undone then.
pub async fn run(
    cluster: &mut Cluster,
    schedule: &[PlannedFault],
    clock: RunClock,
    deadline: Instant,
) -> anyhow::Result<Vec<FaultRecord>> {
    let mut records = Vec::with_capacity(schedule.len());
    for fault in schedule {
        let start = clock.at(fault.start);
        if start >= deadline {
            break;
        }
        tokio::time::sleep_until(start).await;
        inject(cluster, fault).await?;
        let start_ns = clock.now_ns();
        tracing::info!(kind = ?fault.kind, members = ?fault.members, "fault injected");
        tokio::time::sleep_until((start + fault.duration).min(deadline)).await;
        let end_ns = clock.now_ns();
        undo(cluster, fault)?;
        tracing::info!(kind = ?fault.kind, members = ?fault.members, "fault undone");
        records.push(FaultRecord {
            kind: fault.kind,
            members: fault.members.iter().map(|&index| cluster.name(index).to_string()).collect(),
            start_ns,
            end_ns,
        });
    }
    Ok(records)
}

async fn inject(cluster: &mut Cluster, fault: &PlannedFault) -> anyhow::Result<()> {
    for &member in &fault.members {
        match fault.kind {
            FaultKind::Kill | FaultKind::KillAll => cluster.kill(member).await?,
            FaultKind::Pause => cluster.pause(member)?,
            FaultKind::IsolateInbound => cluster.isolate_inbound(member),
        }
    }
    Ok(())
}

fn undo(cluster: &mut Cluster, fault: &PlannedFault) -> anyhow::Result<()> {
    for &member in &fault.members {
        match fault.kind {
            FaultKind::Kill | FaultKind::KillAll => cluster.restart(member)?,
            FaultKind::Pause => cluster.resume(member)?,
            FaultKind::IsolateInbound => cluster.heal_inbound(member),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> NemesisConfig {
        NemesisConfig {
            kinds: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::IsolateInbound],
            nodes: 5,
            time_limit: Duration::from_secs(120),
            seed,
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        let first = schedule(&config(42));
        assert!(first.len() >= 10, "{first:?}");
        assert_eq!(first, schedule(&config(42)));
        assert_ne!(first, schedule(&config(43)));
    }

    #[test]
    fn schedule_respects_limits() {
        for seed in 0..50 {
            let faults = schedule(&config(seed));
            let mut previous_end = Duration::ZERO;
            for fault in &faults {
                assert!(fault.start > previous_end, "faults overlap: {faults:?}");
                assert!(fault.start < Duration::from_secs(120));
                assert!(!fault.members.is_empty());
                // A partition isolates a minority: the majority keeps a quorum.
                assert!(fault.members.len() <= 2, "{fault:?}");
                assert!(fault.members.iter().all(|&member| member < 5));
                assert!(fault.members.windows(2).all(|pair| pair[0] < pair[1]));
                previous_end = fault.start + fault.duration;
            }
        }
    }

    #[test]
    fn kill_all_takes_every_member() {
        let mut config = config(9);
        config.kinds = vec![FaultKind::KillAll];
        let faults = schedule(&config);
        assert!(!faults.is_empty());
        assert!(faults.iter().all(|fault| fault.members == [0, 1, 2, 3, 4]), "{faults:?}");
    }

    #[test]
    fn no_kinds_no_faults() {
        let mut config = config(1);
        config.kinds.clear();
        assert!(schedule(&config).is_empty());
    }
}
