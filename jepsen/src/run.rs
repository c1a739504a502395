//! One test run, in phases: start the cluster, wait until it serves, run the workload and the
//! nemesis side by side for the time limit, heal every fault, read every key once more, check
//! the history, and write the run directory.
//!
//! This is the only module that knows the order of the phases; it injects no fault and issues
//! no request itself.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::checker::{check, CheckBudget, Verdict};
use crate::clock::RunClock;
use crate::cluster::{Cluster, ClusterConfig};
use crate::history::{write_json_lines, Operation, Outcome};
use crate::nemesis::{self, FaultKind, FaultRecord, NemesisConfig};
use crate::workload::{self, WorkloadConfig};

/// The checker's bounds: past them the verdict is Unknown (exit 2), never a guess.
pub const CHECK_BUDGET: CheckBudget = CheckBudget { time: Duration::from_secs(60), states_max: 5_000_000 };
/// Time for a fresh cluster to elect a leader and for every member to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for a healed cluster (restarted members catching up) to answer again.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Register,
}

/// A test-only switch of `keel` that breaks a guarantee on purpose, to prove the harness
/// catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// Linearizable reads served from local state, without ReadIndex.
    StaleReads,
    /// Writes acknowledged before their log entry is fsynced.
    AckBeforeFsync,
}

impl Sabotage {
    pub fn member_flag(self) -> &'static str {
        match self {
            Sabotage::StaleReads => "--unsafe-stale-reads",
            Sabotage::AckBeforeFsync => "--unsafe-ack-before-fsync",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub workload: Workload,
    pub nemeses: Vec<FaultKind>,
    pub nodes: usize,
    pub time_limit: Duration,
    pub concurrency: usize,
    pub seed: u64,
    pub keel_bin: PathBuf,
    /// The run directory: member logs, history, faults, verdict.
    pub out_dir: PathBuf,
    pub sabotage: Option<Sabotage>,
}

#[derive(Debug)]
pub struct RunReport {
    pub history: Vec<Operation>,
    pub faults: Vec<FaultRecord>,
    pub verdict: Verdict,
    pub check_time: Duration,
    pub out_dir: PathBuf,
    /// Members that exited without being killed: each is a crash worth reading the log of.
    pub member_exits: Vec<String>,
    /// Why the healed cluster did not serve again within [`RECOVERY_TIMEOUT`]; the final
    /// reads were then skipped.
    pub recovery_error: Option<String>,
}

impl RunReport {
    /// 0: linearizable; 1: an anomaly; 2: unknown, or a cluster that did not recover (the
    /// history lacks its final reads, so "linearizable" would claim too much).
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::NotLinearizable(_) => 1,
            Verdict::Linearizable if self.recovery_error.is_none() => 0,
            Verdict::Linearizable | Verdict::Unknown { .. } => 2,
        }
    }

    /// The verdict with its counterexample, as written to `verdict.txt`.
    pub fn verdict_text(&self) -> String {
        match &self.verdict {
            Verdict::Linearizable => "linearizable\n".to_string(),
            Verdict::NotLinearizable(counterexample) => {
                format!("NOT linearizable\n{counterexample}")
            }
            Verdict::Unknown { reason } => format!("unknown: {reason}\n"),
        }
    }

    /// Operations by outcome, faults, checker time, crashes and the verdict.
    pub fn summary(&self) -> String {
        let count = |outcome| self.history.iter().filter(|operation| operation.outcome == outcome).count();
        let mut text = String::new();
        let _ = writeln!(
            text,
            "operations: {} (ok {}, fail {}, indeterminate {})",
            self.history.len(),
            count(Outcome::Ok),
            count(Outcome::Fail),
            count(Outcome::Indeterminate)
        );
        let _ = writeln!(text, "faults injected: {}", self.faults.len());
        for fault in &self.faults {
            let _ = writeln!(
                text,
                "  {:?} {} from {:.3} s to {:.3} s",
                fault.kind,
                fault.members.join(","),
                fault.start_ns as f64 / 1e9,
                fault.end_ns as f64 / 1e9
            );
        }
        for exit in &self.member_exits {
            let _ = writeln!(text, "member crash: {exit}");
        }
        if let Some(error) = &self.recovery_error {
            let _ = writeln!(text, "cluster did not recover after healing: {error}");
        }
        let _ = writeln!(text, "checker time: {:.3} s", self.check_time.as_secs_f64());
        let _ = writeln!(text, "run directory: {}", self.out_dir.display());
        let _ = write!(text, "verdict: {}", self.verdict_text());
        text
    }
}

/// Runs one test. An `Err` is a harness failure (exit 2), not a verdict.
pub async fn run(config: &RunConfig) -> anyhow::Result<RunReport> {
    let Workload::Register = config.workload;
    fs::create_dir_all(&config.out_dir).with_context(|| format!("creating {}", config.out_dir.display()))?;

    // Phase 1: a fresh cluster that serves linearizable reads on every member.
    let mut cluster = Cluster::start(&ClusterConfig {
        nodes: config.nodes,
        keel_bin: config.keel_bin.clone(),
        log_dir: config.out_dir.clone(),
        extra_member_args: config.sabotage.map(|sabotage| sabotage.member_flag().to_string()).into_iter().collect(),
    })
    .await?;
    cluster.wait_ready(READY_TIMEOUT).await?;
    tracing::info!(nodes = cluster.len(), "cluster ready");

    // Phase 2: clients and faults, side by side, until the time limit. Both run in this task
    // so the nemesis can own the cluster mutably; the clients are spawned tasks.
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
    let (history, faults) = tokio::join!(
        workload::run(&workload_config, clock, deadline),
        nemesis::run(&mut cluster, &schedule, clock, deadline)
    );
    let (mut history, faults) = (history?, faults?);

    // Phase 3: heal everything and read every key once more, so a lost acknowledged write
    // is visible even if no client happened to read its key afterwards. A cluster that does
    // not recover still gets its history checked and written.
    let member_exits = cluster.heal()?;
    let recovery_error = match cluster.wait_ready(RECOVERY_TIMEOUT).await {
        Ok(()) => {
            history.extend(workload::final_reads(&cluster.client_urls(), clock).await);
            None
        }
        Err(error) => Some(format!("{error:#}")),
    };
    drop(cluster);

    // Phase 4: check, off the async threads: the search is CPU-bound.
    let check_start = std::time::Instant::now();
    let verdict = {
        let history = history.clone();
        tokio::task::spawn_blocking(move || check(&history, CHECK_BUDGET)).await?
    };
    let check_time = check_start.elapsed();

    // Phase 5: the run directory.
    let report = RunReport {
        history,
        faults,
        verdict,
        check_time,
        out_dir: config.out_dir.clone(),
        member_exits,
        recovery_error,
    };
    write_run_dir(&report)?;
    Ok(report)
}

fn write_run_dir(report: &RunReport) -> anyhow::Result<()> {
    let history_path = report.out_dir.join("history.jsonl");
    let file = File::create(&history_path).with_context(|| format!("creating {}", history_path.display()))?;
    write_json_lines(BufWriter::new(file), &report.history)?;
    let faults_path = report.out_dir.join("faults.json");
    let file = File::create(&faults_path).with_context(|| format!("creating {}", faults_path.display()))?;
    serde_json::to_writer_pretty(BufWriter::new(file), &report.faults)?;
    fs::write(report.out_dir.join("verdict.txt"), report.verdict_text())?;
    Ok(())
}
