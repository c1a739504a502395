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
/// A graceful restart is quick: the member is back as soon as it started again.
const RESTART_DOWNTIME_MS: RangeInclusive<u64> = 200..=1_000;
const PAUSE_MS: RangeInclusive<u64> = 1_000..=3_000;
/// How long a replaced member is out of the cluster before it is added back.
const MEMBER_OUT_MS: RangeInclusive<u64> = 1_000..=3_000;
const PARTITION_MS: RangeInclusive<u64> = 2_000..=5_000;
/// Chance, in percent, that a fault on one member targets the leader rather than any member:
/// the leader's faults are the ones that force elections and fail-overs.
const LEADER_TARGET_PERCENT: u32 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// kill -9 of one member, then restart on the same data dir.
    Kill,
    /// kill -9 of every member at once, then restart them all: what an acknowledged write
    /// that never reached the disk does not survive.
    KillAll,
    /// SIGTERM, wait for the exit, start again: a clean shutdown must lose nothing either.
    Restart,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// The leader cut off from every other member, both ways.
    PartitionLeader,
    /// A random minority cut off from the majority, both ways.
    PartitionSplit,
    /// Nobody can reach one member; it can still reach everybody (it hears nobody, everybody
    /// hears it).
    PartitionInbound,
    /// One member can reach nobody; everybody can still reach it.
    PartitionOutbound,
    /// A member replaced, as an operator replaces a dead machine: removed from the cluster
    /// (MemberRemove; it stops by itself), its data dir wiped, added back (MemberAdd) and
    /// started on the empty data dir with `--initial-cluster-state existing`.
    Member,
}

impl FaultKind {
    /// The kind that stands for its family when the schedule chooses: every partition kind
    /// is one family, each other kind its own.
    pub fn family(self) -> FaultKind {
        if self.is_partition() {
            FaultKind::PartitionLeader
        } else {
            self
        }
    }

    pub fn is_partition(self) -> bool {
        matches!(
            self,
            FaultKind::PartitionLeader
                | FaultKind::PartitionSplit
                | FaultKind::PartitionInbound
                | FaultKind::PartitionOutbound
        )
    }
}

#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// The faults to choose from; empty means no faults.
    pub kinds: Vec<FaultKind>,
    pub nodes: usize,
    pub time_limit: Duration,
    pub seed: u64,
}

/// Whom a fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// These member indexes, ascending.
    Members(Vec<usize>),
    /// Whoever leads when the fault starts; `fallback` when no leader is known then.
    Leader { fallback: usize },
}

/// One fault as planned: offsets from the start of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFault {
    pub kind: FaultKind,
    pub target: Target,
    pub start: Duration,
    pub duration: Duration,
}

/// One fault as it happened, for the report: nanoseconds on the [`RunClock`].
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// The members hit (for a partition: the side it cut off).
    pub members: Vec<String>,
    /// The fault was aimed at the leader, and `members` is who led when it started.
    pub on_leader: bool,
    /// For a partition, every directed link cut, as `[from, to]`: `from` could not reach `to`.
    pub links: Vec<[String; 2]>,
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
    let mut families = Vec::new();
    for kind in &config.kinds {
        if !families.contains(&kind.family()) {
            families.push(kind.family());
        }
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut at = Duration::ZERO;
    loop {
        at += Duration::from_millis(rng.random_range(QUIET_MS));
        if at >= config.time_limit {
            return faults;
        }
        // A family first, then a kind of it: `--nemesis kill,partition` kills as often as
        // it partitions, however many kinds of partition there are.
        let family = families[rng.random_range(0..families.len())];
        let kinds: Vec<FaultKind> = config.kinds.iter().copied().filter(|kind| kind.family() == family).collect();
        let kind = kinds[rng.random_range(0..kinds.len())];
        let (target, duration_ms) = match kind {
            FaultKind::Kill => (one_member(&mut rng, config.nodes), rng.random_range(KILL_DOWNTIME_MS)),
            FaultKind::KillAll => (Target::Members((0..config.nodes).collect()), rng.random_range(KILL_DOWNTIME_MS)),
            FaultKind::Restart => (one_member(&mut rng, config.nodes), rng.random_range(RESTART_DOWNTIME_MS)),
            FaultKind::Pause => (one_member(&mut rng, config.nodes), rng.random_range(PAUSE_MS)),
            FaultKind::Member => (one_member(&mut rng, config.nodes), rng.random_range(MEMBER_OUT_MS)),
            FaultKind::PartitionLeader => {
                (Target::Leader { fallback: rng.random_range(0..config.nodes) }, rng.random_range(PARTITION_MS))
            }
            FaultKind::PartitionSplit => {
                let minority_max = ((config.nodes - 1) / 2).max(1);
                let count = rng.random_range(1..=minority_max);
                let mut members = rand::seq::index::sample(&mut rng, config.nodes, count).into_vec();
                members.sort_unstable();
                (Target::Members(members), rng.random_range(PARTITION_MS))
            }
            FaultKind::PartitionInbound | FaultKind::PartitionOutbound => {
                (one_member(&mut rng, config.nodes), rng.random_range(PARTITION_MS))
            }
        };
        let duration = Duration::from_millis(duration_ms);
        faults.push(PlannedFault { kind, target, start: at, duration });
        at += duration;
    }
}

/// The leader or any member, at [`LEADER_TARGET_PERCENT`].
fn one_member(rng: &mut StdRng, nodes: usize) -> Target {
    let member = rng.random_range(0..nodes);
    if rng.random_ratio(LEADER_TARGET_PERCENT, 100) {
        Target::Leader { fallback: member }
    } else {
        Target::Members(vec![member])
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
        let (members, on_leader) = match &fault.target {
            Target::Members(members) => (members.clone(), false),
            Target::Leader { fallback } => match cluster.leader().await {
                Some(leader) => (vec![leader], true),
                None => (vec![*fallback], false),
            },
        };
        let links = links(fault.kind, &members, cluster.len());
        let members = inject(cluster, fault.kind, &members, &links).await?;
        let start_ns = clock.now_ns();
        tracing::info!(kind = ?fault.kind, ?members, on_leader, "fault injected");
        tokio::time::sleep_until((start + fault.duration).min(deadline)).await;
        let end_ns = clock.now_ns();
        undo(cluster, fault.kind, &members).await?;
        tracing::info!(kind = ?fault.kind, ?members, "fault undone");
        let name = |index: usize| cluster.name(index).to_string();
        records.push(FaultRecord {
            kind: fault.kind,
            members: members.iter().map(|&index| name(index)).collect(),
            on_leader,
            links: links.iter().map(|&(from, to)| [name(from), name(to)]).collect(),
            start_ns,
            end_ns,
        });
    }
    Ok(records)
}

/// The directed links a partition cuts, as `(from, to)`: `from` cannot reach `to`. Empty for
/// the other kinds.
pub fn links(kind: FaultKind, members: &[usize], nodes: usize) -> Vec<(usize, usize)> {
    let others = || (0..nodes).filter(|index| !members.contains(index));
    let mut links = Vec::new();
    for &member in members {
        for other in others() {
            match kind {
                FaultKind::PartitionLeader | FaultKind::PartitionSplit => {
                    links.push((member, other));
                    links.push((other, member));
                }
                FaultKind::PartitionInbound => links.push((other, member)),
                FaultKind::PartitionOutbound => links.push((member, other)),
                FaultKind::Kill | FaultKind::KillAll | FaultKind::Restart | FaultKind::Pause | FaultKind::Member => {}
            }
        }
    }
    links.sort_unstable();
    links
}

/// Injects the fault; answers the members it was injected on (a member replacement the
/// cluster refused, e.g. as unhealthy right after another fault, is injected on none).
async fn inject(
    cluster: &mut Cluster,
    kind: FaultKind,
    members: &[usize],
    links: &[(usize, usize)],
) -> anyhow::Result<Vec<usize>> {
    for &(from, to) in links {
        cluster.cut(from, to);
    }
    let mut injected = Vec::with_capacity(members.len());
    for &member in members {
        match kind {
            FaultKind::Kill | FaultKind::KillAll => cluster.kill(member).await?,
            FaultKind::Restart => cluster.stop(member).await?,
            FaultKind::Pause => cluster.pause(member)?,
            FaultKind::Member => {
                if let Err(refused) = cluster.remove_member(member).await {
                    tracing::warn!(member = cluster.name(member), "member replacement skipped: {refused:#}");
                    continue;
                }
            }
            FaultKind::PartitionLeader
            | FaultKind::PartitionSplit
            | FaultKind::PartitionInbound
            | FaultKind::PartitionOutbound => {}
        }
        injected.push(member);
    }
    Ok(injected)
}

async fn undo(cluster: &mut Cluster, kind: FaultKind, members: &[usize]) -> anyhow::Result<()> {
    if kind.is_partition() {
        cluster.heal_links();
        return Ok(());
    }
    for &member in members {
        match kind {
            FaultKind::Pause => cluster.resume(member)?,
            FaultKind::Member => cluster.add_member_back(member).await?,
            _ => cluster.restart(member)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KINDS: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::KillAll,
        FaultKind::Restart,
        FaultKind::Pause,
        FaultKind::PartitionLeader,
        FaultKind::PartitionSplit,
        FaultKind::PartitionInbound,
        FaultKind::PartitionOutbound,
        FaultKind::Member,
    ];

    fn config(seed: u64) -> NemesisConfig {
        NemesisConfig { kinds: ALL_KINDS.to_vec(), nodes: 5, time_limit: Duration::from_secs(120), seed }
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
                match (&fault.target, fault.kind) {
                    (Target::Members(members), FaultKind::KillAll) => assert_eq!(members, &[0, 1, 2, 3, 4]),
                    // A split cuts off a minority: the majority keeps a quorum.
                    (Target::Members(members), FaultKind::PartitionSplit) => {
                        assert!((1..=2).contains(&members.len()), "{fault:?}")
                    }
                    (Target::Members(members), _) => assert_eq!(members.len(), 1, "{fault:?}"),
                    (Target::Leader { fallback }, kind) => {
                        assert!(*fallback < 5);
                        assert!(!matches!(kind, FaultKind::KillAll | FaultKind::PartitionSplit), "{fault:?}");
                    }
                }
                if let Target::Members(members) = &fault.target {
                    assert!(members.iter().all(|&member| member < 5));
                    assert!(members.windows(2).all(|pair| pair[0] < pair[1]));
                }
                previous_end = fault.start + fault.duration;
            }
        }
    }

    #[test]
    fn single_member_faults_sometimes_target_the_leader() {
        let faults = schedule(&config(7));
        let on_leader = faults.iter().filter(|fault| matches!(fault.target, Target::Leader { .. })).count();
        assert!(on_leader > 0 && on_leader < faults.len(), "{faults:?}");
    }

    #[test]
    fn partitions_cut_the_links_they_say() {
        // n1 alone against n0 and n2, both ways.
        assert_eq!(links(FaultKind::PartitionLeader, &[1], 3), [(0, 1), (1, 0), (1, 2), (2, 1)]);
        // {n0, n3} against {n1, n2, n4}: 2 × 3 pairs, both ways.
        let split = links(FaultKind::PartitionSplit, &[0, 3], 5);
        assert_eq!(split.len(), 12);
        assert!(split.iter().all(|&(from, to)| [0, 3].contains(&from) != [0, 3].contains(&to)), "{split:?}");
        assert_eq!(links(FaultKind::PartitionInbound, &[2], 3), [(0, 2), (1, 2)]);
        assert_eq!(links(FaultKind::PartitionOutbound, &[2], 3), [(2, 0), (2, 1)]);
        assert!(links(FaultKind::Kill, &[2], 3).is_empty());
    }

    #[test]
    fn families_are_chosen_evenly() {
        let mut config = config(3);
        config.kinds =
            vec![FaultKind::Kill, FaultKind::PartitionLeader, FaultKind::PartitionSplit, FaultKind::PartitionInbound];
        config.time_limit = Duration::from_secs(3600);
        let faults = schedule(&config);
        let kills = faults.iter().filter(|fault| fault.kind == FaultKind::Kill).count();
        let share = kills as f64 / faults.len() as f64;
        assert!((0.4..0.6).contains(&share), "kills are {kills} of {}", faults.len());
    }

    #[test]
    fn no_kinds_no_faults() {
        let mut config = config(1);
        config.kinds.clear();
        assert!(schedule(&config).is_empty());
    }
}
