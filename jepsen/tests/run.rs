//! End to end: `keel-jepsen test` in-process against real 3-member clusters of the `keel`
//! binary built from this workspace. These are the CI runs: a short run of every workload
//! without faults, the register under kill -9 and partitions for a minute (must be valid), a
//! stale-reads sabotage under partitions and a diverging replica (both must be caught).
//!
//! The runs take turns ([`ONE_CLUSTER_AT_A_TIME`]): on a 2-core CI machine two clusters at
//! once starve each other's elections and leases, which tests the machine, not Keel.

use std::path::PathBuf;
use std::time::Duration;

use keel_jepsen::nemesis::{self, FaultKind, NemesisConfig};
use keel_jepsen::report::RunReport;
use keel_jepsen::run::{self, RunConfig, Sabotage, TlsSetting};
use keel_jepsen::verdict::Validity;
use keel_jepsen::workload::Workload;

static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `target/<profile>/keel`, found from this test's own path `target/<profile>/deps/run-…`.
fn keel_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir =
        exe.parent().and_then(|deps| deps.parent()).expect("a test binary lives in target/<profile>/deps");
    let keel = profile_dir.join("keel");
    assert!(keel.is_file(), "{} is missing: run `cargo build -p keel-node --bins` first", keel.display());
    keel
}

/// 3 members, 4 clients per workload, the run directory in `out`.
fn run_config(
    out: &tempfile::TempDir,
    workloads: Vec<Workload>,
    nemeses: Vec<FaultKind>,
    time_limit: Duration,
    seed: u64,
) -> RunConfig {
    RunConfig {
        workloads,
        nemeses,
        nodes: 3,
        time_limit,
        concurrency: 4,
        seed,
        keel_bin: keel_bin(),
        out_dir: out.path().to_path_buf(),
        sabotage: None,
        tls: TlsSetting::Off,
        auth: false,
    }
}

async fn run(config: &RunConfig) -> RunReport {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let report = run::run(config).await.expect("the harness runs");
    println!("{}", report.summary());
    report
}

/// Asserts that `seed` schedules every kind in `kinds` within `time_limit`, so a change of
/// the schedule's random source fails loudly instead of silently testing less.
fn assert_schedules_each(kinds: &[FaultKind], time_limit: Duration, seed: u64) -> usize {
    let planned = nemesis::schedule(&NemesisConfig { kinds: kinds.to_vec(), nodes: 3, time_limit, seed });
    for kind in kinds {
        assert!(
            planned.iter().any(|fault| fault.kind == *kind),
            "seed {seed} no longer schedules {kind:?}: {planned:?}"
        );
    }
    planned.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_workload_without_faults_is_valid() {
    let out = tempfile::tempdir().expect("create the run directory");
    let workloads =
        vec![Workload::Register, Workload::Set, Workload::Lease, Workload::Watch, Workload::Events, Workload::Lock];
    let report = run(&run_config(&out, workloads.clone(), Vec::new(), Duration::from_secs(6), 7)).await;

    assert_eq!(report.exit_code(), 0, "{}", report.verdict_text());
    assert_eq!(report.replicas.validity, Validity::Valid, "{}", report.replicas);
    assert_eq!(report.replicas.hashes.len(), 3);
    assert_eq!(report.checks.iter().map(|check| check.workload).collect::<Vec<_>>(), workloads);
    assert!(report.faults.is_empty());
    assert!(report.member_exits.is_empty(), "{:?}", report.member_exits);
    for workload in &workloads {
        let ok = report.operations.get(workload).map_or(0, |counts| counts.ok);
        assert!(ok >= 20, "only {ok} ok {workload:?} operations in 6 s:\n{}", report.summary());
    }
    for file in [
        "history.jsonl",
        "set.json",
        "lease.json",
        "watch.json",
        "events.json",
        "lock.json",
        "faults.json",
        "summary.json",
        "verdict.txt",
        "latency.svg",
        "throughput.svg",
        "n0.log",
        "n1.log",
        "n2.log",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing from the run directory");
    }
}

/// The CI run of the README: the register and the lease workload for a minute under kill -9
/// (of the leader or any member) and every kind of partition. Keel must stay linearizable,
/// keep kept-alive leases and recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_under_kill_and_partitions_is_valid() {
    let out = tempfile::tempdir().expect("create the run directory");
    let kinds = vec![
        FaultKind::Kill,
        FaultKind::PartitionLeader,
        FaultKind::PartitionSplit,
        FaultKind::PartitionInbound,
        FaultKind::PartitionOutbound,
    ];
    let time_limit = Duration::from_secs(60);
    // Seed 9 plans 11 faults, 5 of them kills (3 aimed at the leader).
    let seed = 9;
    let planned = assert_schedules_each(&kinds, time_limit, seed);
    let workloads = vec![Workload::Register, Workload::Lease];
    let report = run(&run_config(&out, workloads, kinds, time_limit, seed)).await;

    assert_eq!(report.exit_code(), 0, "{}", report.verdict_text());
    assert_eq!(report.replicas.validity, Validity::Valid, "{}", report.replicas);
    assert_eq!(report.recovery_error, None);
    assert!(report.member_exits.is_empty(), "{:?}", report.member_exits);
    assert_eq!(report.faults.len(), planned, "{}", report.summary());
    assert!(report.faults.iter().all(|fault| fault.start_ns < fault.end_ns));
    assert!(report.faults.iter().filter(|fault| fault.kind != FaultKind::Kill).all(|fault| !fault.links.is_empty()));
}

/// The locked-down cluster: TLS on both ports with certificates required, auth on, clients
/// root by their certificate's CN; the register (etcd's API) and the event log (Keel's own)
/// under kill -9 stay valid, and the run proves the certificates were used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_and_events_with_tls_and_auth_under_kill_are_valid() {
    let out = tempfile::tempdir().expect("create the run directory");
    let kinds = vec![FaultKind::Kill];
    let time_limit = Duration::from_secs(20);
    let seed = 11;
    assert_schedules_each(&kinds, time_limit, seed);
    let workloads = vec![Workload::Register, Workload::Events, Workload::Lock];
    let config =
        RunConfig { tls: TlsSetting::Generate, auth: true, ..run_config(&out, workloads, kinds, time_limit, seed) };
    let report = run(&config).await;

    assert_eq!(report.exit_code(), 0, "{}", report.verdict_text());
    assert_eq!(report.replicas.validity, Validity::Valid, "{}", report.replicas);
    assert_eq!(report.recovery_error, None);
    for workload in [Workload::Register, Workload::Events, Workload::Lock] {
        let ok = report.operations.get(&workload).map_or(0, |counts| counts.ok);
        assert!(ok >= 20, "only {ok} ok {workload:?} operations:\n{}", report.summary());
    }
    assert!(out.path().join("tls/ca.pem").is_file(), "the run made its own CA");
    let log = std::fs::read_to_string(out.path().join("n0.log")).expect("n0's log");
    assert!(log.contains("https://"), "members listened on https URLs:\n{log}");
}

/// Proof that the harness can fail: members that serve linearizable reads from local state,
/// under partitions, must be caught returning stale values.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_reads_under_partitions_are_caught() {
    let out = tempfile::tempdir().expect("create the run directory");
    let kinds = vec![FaultKind::PartitionLeader, FaultKind::PartitionSplit];
    let time_limit = Duration::from_secs(15);
    let seed = 7;
    assert_schedules_each(&kinds, time_limit, seed);
    let mut config = run_config(&out, vec![Workload::Register, Workload::Set], kinds, time_limit, seed);
    config.sabotage = Some(Sabotage::StaleReads);
    let report = run(&config).await;

    assert_eq!(report.exit_code(), 1, "stale reads went unnoticed:\n{}", report.summary());
    // Named: the register's as not-linearizable, the set's as a stale read (or, if the final
    // read itself was stale, a lost element).
    let anomalies: Vec<&str> = report
        .checks
        .iter()
        .filter(|check| check.validity == Validity::Invalid)
        .flat_map(|check| check.anomalies.iter().map(|anomaly| anomaly.name.as_str()))
        .collect();
    assert!(!anomalies.is_empty(), "{}", report.summary());
    let verdict = std::fs::read_to_string(out.path().join("verdict.txt")).expect("verdict.txt is written");
    assert!(verdict.contains("INVALID"), "{verdict}");
}

/// Proof that the replica comparison can fail: one member stores every Put one version higher
/// than the others. No client read looks at versions, so only the comparison can see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_applies_puts_differently_is_caught() {
    let out = tempfile::tempdir().expect("create the run directory");
    let mut config = run_config(&out, vec![Workload::Set], Vec::new(), Duration::from_secs(5), 7);
    config.sabotage = Some(Sabotage::DivergeVersions);
    let report = run(&config).await;

    assert_eq!(report.exit_code(), 1, "the divergence went unnoticed:\n{}", report.summary());
    assert_eq!(report.replicas.validity, Validity::Invalid, "{}", report.replicas);
    assert!(report.checks.iter().all(|check| check.validity == Validity::Valid), "{}", report.summary());
    let verdict = std::fs::read_to_string(out.path().join("verdict.txt")).expect("verdict.txt is written");
    assert!(verdict.contains("replicas-diverged"), "{verdict}");
}
