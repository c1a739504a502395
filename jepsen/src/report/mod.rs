//! The report of one run: what ran, every checker's verdict with its smallest counterexample,
//! the exit code, and the run directory's report files (`verdict.txt`, `summary.json`,
//! `faults.json`, the plots of [`plot`]).
//!
//! It formats and writes what the run and the checkers found; it judges nothing itself.

pub mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::history::Outcome;
use crate::nemesis::FaultRecord;
use crate::replicas::ReplicaCheck;
use crate::verdict::{CheckReport, Validity};
use crate::workload::{Sample, Workload};

/// Calls of one workload by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub ok: usize,
    pub fail: usize,
    pub indeterminate: usize,
}

impl OutcomeCounts {
    pub fn total(&self) -> usize {
        self.ok + self.fail + self.indeterminate
    }

    pub fn of(samples: &[Sample]) -> BTreeMap<Workload, OutcomeCounts> {
        let mut counts: BTreeMap<Workload, OutcomeCounts> = BTreeMap::new();
        for sample in samples {
            let entry = counts.entry(sample.workload).or_default();
            match sample.outcome {
                Outcome::Ok => entry.ok += 1,
                Outcome::Fail => entry.fail += 1,
                Outcome::Indeterminate => entry.indeterminate += 1,
            }
        }
        counts
    }
}

/// What was asked for, as the report repeats it.
#[derive(Clone, Debug, Serialize)]
pub struct RunSettings {
    pub workloads: Vec<Workload>,
    pub nemeses: Vec<crate::nemesis::FaultKind>,
    pub nodes: usize,
    pub time_limit_secs: u64,
    pub concurrency: usize,
    pub seed: u64,
    pub sabotage: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub settings: RunSettings,
    /// One per workload, in the order of `settings.workloads`.
    pub checks: Vec<CheckReport>,
    pub operations: BTreeMap<Workload, OutcomeCounts>,
    pub faults: Vec<FaultRecord>,
    /// All checkers together.
    pub check_time: Duration,
    pub out_dir: PathBuf,
    /// Members that exited without being killed: each is a crash worth reading the log of.
    pub member_exits: Vec<String>,
    /// Why the healed cluster did not serve again within the recovery timeout; the final
    /// reads were then skipped.
    pub recovery_error: Option<String>,
    /// Every member's HashKV at one revision after healing.
    pub replicas: ReplicaCheck,
}

impl RunReport {
    /// 1: some checker found an anomaly; 2: none did, but one could not decide or the healed
    /// cluster did not recover (the history lacks its final reads, so "valid" would claim too
    /// much); 0: every checker found its history valid.
    pub fn exit_code(&self) -> u8 {
        let validities = || self.checks.iter().map(|check| check.validity).chain([self.replicas.validity]);
        if validities().any(|validity| validity == Validity::Invalid) {
            1
        } else if self.recovery_error.is_some() || validities().any(|validity| validity == Validity::Unknown) {
            2
        } else {
            0
        }
    }

    /// Every checker's verdict with its anomalies and counterexamples, as in `verdict.txt`.
    pub fn verdict_text(&self) -> String {
        let mut text = String::new();
        for check in &self.checks {
            let _ = write!(text, "{check}");
        }
        let _ = write!(text, "{}", self.replicas);
        if let Some(error) = &self.recovery_error {
            let _ = writeln!(text, "cluster did not recover after healing: {error}");
        }
        let _ = writeln!(
            text,
            "result: {}",
            match self.exit_code() {
                0 => "valid",
                1 => "INVALID",
                _ => "unknown",
            }
        );
        text
    }

    /// Operations, faults, crashes, checker time and every verdict.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        let total: OutcomeCounts =
            self.operations.values().fold(OutcomeCounts::default(), |sum, counts| OutcomeCounts {
                ok: sum.ok + counts.ok,
                fail: sum.fail + counts.fail,
                indeterminate: sum.indeterminate + counts.indeterminate,
            });
        let _ = writeln!(
            text,
            "operations: {} (ok {}, fail {}, indeterminate {})",
            total.total(),
            total.ok,
            total.fail,
            total.indeterminate
        );
        for (workload, counts) in &self.operations {
            let _ = writeln!(
                text,
                "  {}: {} (ok {}, fail {}, indeterminate {})",
                workload.name(),
                counts.total(),
                counts.ok,
                counts.fail,
                counts.indeterminate
            );
        }
        let _ = writeln!(text, "faults injected: {}", self.faults.len());
        for fault in &self.faults {
            let _ = writeln!(
                text,
                "  {:?} {}{} from {:.3} s to {:.3} s{}",
                fault.kind,
                fault.members.join(","),
                if fault.on_leader { " (the leader)" } else { "" },
                fault.start_ns as f64 / 1e9,
                fault.end_ns as f64 / 1e9,
                if fault.links.is_empty() { String::new() } else { format!(" ({} links cut)", fault.links.len()) }
            );
        }
        for exit in &self.member_exits {
            let _ = writeln!(text, "member crash: {exit}");
        }
        let _ = writeln!(text, "checker time: {:.3} s", self.check_time.as_secs_f64());
        let _ = writeln!(text, "run directory: {}", self.out_dir.display());
        text.push_str(&self.verdict_text());
        text
    }

    /// `verdict.txt`, `summary.json` and `faults.json`.
    pub fn write(&self) -> anyhow::Result<()> {
        let faults_path = self.out_dir.join("faults.json");
        let file = File::create(&faults_path).with_context(|| format!("creating {}", faults_path.display()))?;
        serde_json::to_writer_pretty(BufWriter::new(file), &self.faults)?;
        let summary_path = self.out_dir.join("summary.json");
        let file = File::create(&summary_path).with_context(|| format!("creating {}", summary_path.display()))?;
        serde_json::to_writer_pretty(BufWriter::new(file), &Summary { exit_code: self.exit_code(), report: self })?;
        fs::write(self.out_dir.join("verdict.txt"), self.verdict_text())?;
        Ok(())
    }
}

#[derive(Serialize)]
struct Summary<'a> {
    exit_code: u8,
    #[serde(flatten)]
    report: &'a RunReport,
}
