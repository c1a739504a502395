//! One test run, in phases: start the cluster, wait until it serves, run the workload and the
//! nemesis side by side for the time limit, heal every fault, read every key once more, check
//! the history, and write the run directory.
//!
//! This is the only module that knows the order of the phases; it injects no fault and issues
//! no request itself.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::clock::RunClock;
use crate::cluster::{Cluster, ClusterConfig};
use crate::nemesis::{self, FaultKind, NemesisConfig};
use crate::replicas::{self, ReplicaCheck};
use crate::report::{plot, OutcomeCounts, RunReport, RunSettings};
use crate::tls::TlsFiles;
use crate::workload::{self, RunFacts, Workload, WorkloadConfig};

/// Time for a fresh cluster to elect a leader and for every member to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a healed cluster (restarted members catching up) to answer again.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A test-only switch of `keel` that breaks a guarantee on purpose, to prove the harness
/// catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// Linearizable reads served from local state, without ReadIndex.
    StaleReads,
    /// Writes acknowledged before their log entry is fsynced.
    AckBeforeFsync,
    /// One member (n0) stores every Put one version higher than the others: replicas diverge
    /// where no client read looks.
    DivergeVersions,
}

impl Sabotage {
    pub fn member_flag(self) -> &'static str {
        match self {
            Sabotage::StaleReads => "--unsafe-stale-reads",
            Sabotage::AckBeforeFsync => "--unsafe-ack-before-fsync",
            Sabotage::DivergeVersions => "--unsafe-diverge-versions",
        }
    }

    /// Whether the flag goes to one member only (a divergence needs others to differ from).
    fn one_member(self) -> bool {
        self == Sabotage::DivergeVersions
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Run at the same time, each on its own keys; at least one.
    pub workloads: Vec<Workload>,
    pub nemeses: Vec<FaultKind>,
    pub nodes: usize,
    pub time_limit: Duration,
    pub concurrency: usize,
    pub seed: u64,
    pub keel_bin: PathBuf,
    /// The run directory: member logs, histories, faults, verdicts, plots.
    pub out_dir: PathBuf,
    pub sabotage: Option<Sabotage>,
    /// TLS on both ports (certificates required) for members and clients.
    pub tls: TlsSetting,
    /// Auth on (a root user; clients are root by their certificate): needs TLS.
    pub auth: bool,
}

/// Where a run's TLS files come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsSetting {
    #[default]
    Off,
    /// Made for the run, in `<out_dir>/tls/`.
    Generate,
    /// Given (`--cacert`, `--cert`, `--key`): the certificate must name 127.0.0.1 and be good
    /// for servers and clients.
    Files(TlsFiles),
}

fn sabotage_flag(sabotage: Option<Sabotage>) -> Vec<String> {
    sabotage.map(|sabotage| sabotage.member_flag().to_string()).into_iter().collect()
}

/// Runs one test. An `Err` is a harness failure (exit 2), not a verdict.
pub async fn run(config: &RunConfig) -> anyhow::Result<RunReport> {
    anyhow::ensure!(!config.workloads.is_empty(), "no workload to run");
    fs::create_dir_all(&config.out_dir).with_context(|| format!("creating {}", config.out_dir.display()))?;
    anyhow::ensure!(!config.auth || config.tls != TlsSetting::Off, "--auth needs --tls (or --cacert/--cert/--key)");
    let tls = match &config.tls {
        TlsSetting::Off => None,
        TlsSetting::Generate => Some(TlsFiles::generate(&config.out_dir.join("tls"))?),
        TlsSetting::Files(files) => Some(files.clone()),
    };

    // Phase 1: a fresh cluster that serves linearizable reads on every member.
    let mut cluster = Cluster::start(&ClusterConfig {
        nodes: config.nodes,
        keel_bin: config.keel_bin.clone(),
        log_dir: config.out_dir.clone(),
        extra_member_args: sabotage_flag(config.sabotage.filter(|sabotage| !sabotage.one_member())),
        first_member_args: sabotage_flag(config.sabotage.filter(|sabotage| sabotage.one_member())),
        tls,
    })
    .await?;
    cluster.wait_ready(READY_TIMEOUT).await?;
    if config.auth {
        cluster.enable_auth().await.context("turning auth on")?;
    }
    tracing::info!(nodes = cluster.len(), "cluster ready");

    // Phase 2: every workload's clients and the faults, side by side, until the time limit.
    // The nemesis runs in this task so it can own the cluster mutably; the clients are
    // spawned tasks.
    let clock = RunClock::start();
    let deadline = Instant::now() + config.time_limit;
    let schedule = nemesis::schedule(&NemesisConfig {
        kinds: config.nemeses.clone(),
        nodes: config.nodes,
        time_limit: config.time_limit,
        seed: config.seed,
    });
    let workload_config =
        WorkloadConfig { client_urls: cluster.client_urls(), concurrency: config.concurrency, seed: config.seed };
    let mut running = Vec::with_capacity(config.workloads.len());
    for &kind in &config.workloads {
        running.push(workload::start(kind, &workload_config, clock, deadline).await);
    }
    let faults = nemesis::run(&mut cluster, &schedule, clock, deadline).await?;
    // The last fault may end (or none may start) well before the time limit: the traffic runs
    // until then, and the healing and the recovery time come after it.
    tokio::time::sleep_until(deadline).await;

    // Phase 3: heal everything; once the cluster serves again, each workload finishes with
    // its final reads (so a lost acknowledged write shows up even if no client happened to
    // read it afterwards). A cluster that does not recover still gets its histories checked.
    let member_exits = cluster.heal()?;
    let recovery_error = cluster.wait_ready(RECOVERY_TIMEOUT).await.err().map(|error| format!("{error:#}"));
    let facts = RunFacts { faults: faults.clone(), recovered_ns: recovery_error.is_none().then(|| clock.now_ns()) };
    let client_urls = cluster.client_urls();
    let recovered = recovery_error.is_none();
    let recorded = futures::future::try_join_all(
        running.into_iter().map(|running| running.finish(&client_urls, clock, recovered)),
    )
    .await?;
    // Every member at one revision: a divergence shows even where no client read looked.
    let replicas = match &recovery_error {
        None => replicas::compare(&client_urls).await,
        Some(_) => ReplicaCheck::skipped("the cluster did not recover"),
    };
    drop(cluster);

    // Phase 4: check, off the async threads: the searches are CPU-bound.
    let check_start = std::time::Instant::now();
    let (recorded, checks) = tokio::task::spawn_blocking(move || {
        let checks = recorded
            .iter()
            .map(|history| {
                let started = std::time::Instant::now();
                let mut check = history.check(&facts);
                check.check_time_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                check
            })
            .collect::<Vec<_>>();
        (recorded, checks)
    })
    .await?;
    let check_time = check_start.elapsed();

    // Phase 5: the run directory.
    let samples: Vec<_> = recorded.iter().flat_map(|history| history.samples()).collect();
    for history in &recorded {
        history.write(&config.out_dir)?;
    }
    let report = RunReport {
        settings: RunSettings {
            workloads: config.workloads.clone(),
            nemeses: config.nemeses.clone(),
            nodes: config.nodes,
            time_limit_secs: config.time_limit.as_secs(),
            concurrency: config.concurrency,
            seed: config.seed,
            sabotage: config.sabotage.map(|sabotage| sabotage.member_flag().to_string()),
        },
        checks,
        operations: OutcomeCounts::of(&samples),
        faults,
        check_time,
        out_dir: config.out_dir.clone(),
        member_exits,
        recovery_error,
        replicas,
    };
    report.write()?;
    plot::write(&config.out_dir, &samples, &report.faults)?;
    Ok(report)
}
