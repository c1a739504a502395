//! `keel-jepsen`: the command line of the harness. Parses flags into a [`RunConfig`], runs it,
//! prints the summary and maps the verdict to the exit code (0 valid, 1 anomaly, 2 harness
//! failure or unknown). No test logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use keel_jepsen::nemesis::FaultKind;
use keel_jepsen::run::{self, RunConfig, Sabotage, TlsSetting};
use keel_jepsen::tls::TlsFiles;
use keel_jepsen::workload::Workload;

#[derive(Parser)]
#[command(name = "keel-jepsen", about = "Fault injection and linearizability checking for Keel.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload against a fresh local cluster while injecting faults, then check it.
    Test(TestArgs),
}

#[derive(Args)]
struct TestArgs {
    /// Workloads, comma-separated (or the flag repeated); they run at the same time, each on
    /// its own keys.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "register")]
    workload: Vec<WorkloadArg>,
    /// Faults to inject, comma-separated, or `none`. `partition` is any of the partition-*
    /// kinds: the leader cut off, a minority split off, one member unreachable (inbound) or
    /// unable to reach anyone (outbound).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    nemesis: Vec<NemesisArg>,
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    nodes: usize,
    /// Seconds of workload and faults.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Seed of the fault schedule and the clients' choices [default: the time].
    #[arg(long)]
    seed: Option<u64>,
    /// The `keel` binary [default: `keel` next to this executable; under `cargo run`, built first].
    #[arg(long)]
    keel_bin: Option<PathBuf>,
    /// The run directory [default: jepsen/runs/<unix time>-<seed>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start members with a test-only flag that breaks a guarantee, to prove it is caught.
    #[arg(long, value_enum)]
    sabotage: Option<SabotageArg>,
    /// TLS on both ports, client certificates required, with a CA and certificate made for
    /// the run (in <out>/tls/).
    #[arg(long, conflicts_with = "cacert")]
    tls: bool,
    /// TLS with these files instead: the CA, and one certificate for members and clients
    /// (it must name 127.0.0.1 and be good for servers and clients).
    #[arg(long, requires_all = ["cert", "key"])]
    cacert: Option<PathBuf>,
    #[arg(long, requires = "cacert")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cacert")]
    key: Option<PathBuf>,
    /// Auth on: a root user, and clients that are root by their certificate's CN (needs TLS).
    #[arg(long)]
    auth: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    /// Read / write / compare-and-set on a few keys, checked for linearizability.
    Register,
    /// Unique adds and prefix reads: nothing acknowledged lost, nothing invented.
    Set,
    /// Kept-alive and abandoned leases with a key each.
    Lease,
    /// Several reconnecting watchers of one prefix: same revisions, no gaps.
    Watch,
    /// Keel's native event log: dense offsets, nothing acknowledged lost, no duplicates.
    Events,
    /// etcd's Lock, with fenced writes while holding it: never out of order, none lost.
    Lock,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NemesisArg {
    /// kill -9 of one member (the leader half the time), restarted after 1-3 s.
    Kill,
    /// kill -9 of every member at once (proves `--sabotage ack-before-fsync` is caught).
    KillAll,
    /// SIGTERM of one member, started again after 0.2-1 s.
    Restart,
    /// SIGSTOP of one member for 1-3 s.
    Pause,
    /// Every partition-* kind below.
    Partition,
    /// The leader cut off from everyone, both ways.
    PartitionLeader,
    /// A random minority cut off from the majority, both ways.
    PartitionSplit,
    /// One member unreachable by the others (it still reaches them), or unable to reach them.
    PartitionOneWay,
    /// One member replaced as an operator replaces a dead machine: removed, its data dir
    /// wiped, added back and started empty (it catches up from the others).
    Member,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum SabotageArg {
    StaleReads,
    AckBeforeFsync,
    /// Member n0 stores Puts one version higher: caught by the replica comparison.
    DivergeVersions,
}

fn parse_nodes(text: &str) -> Result<usize, String> {
    match text {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err("a cluster of 3 or 5 members".to_string()),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "keel_jepsen=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Test(args) = Cli::parse().command;
    match test(args) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("keel-jepsen: harness failure: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn test(args: TestArgs) -> anyhow::Result<u8> {
    let config = run_config(args)?;
    println!(
        "keel-jepsen: {} members, workloads {:?}, nemesis {:?}, {} s, {} clients, seed {}, run directory {}",
        config.nodes,
        config.workloads,
        config.nemeses,
        config.time_limit.as_secs(),
        config.concurrency,
        config.seed,
        config.out_dir.display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    // On Ctrl-C the run future is dropped, and with it the cluster, which kills every member;
    // the default SIGINT action would leave them running.
    let report = runtime.block_on(async {
        tokio::select! {
            report = run::run(&config) => report,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })?;
    print!("{}", report.summary());
    Ok(report.exit_code())
}

fn run_config(args: TestArgs) -> anyhow::Result<RunConfig> {
    if args.nemesis.contains(&NemesisArg::None) && args.nemesis.len() > 1 {
        anyhow::bail!("--nemesis none cannot be combined with other nemeses");
    }
    let mut nemeses = Vec::new();
    for nemesis in args.nemesis {
        let kinds: &[FaultKind] = match nemesis {
            NemesisArg::Kill => &[FaultKind::Kill],
            NemesisArg::KillAll => &[FaultKind::KillAll],
            NemesisArg::Restart => &[FaultKind::Restart],
            NemesisArg::Pause => &[FaultKind::Pause],
            NemesisArg::Partition => &[
                FaultKind::PartitionLeader,
                FaultKind::PartitionSplit,
                FaultKind::PartitionInbound,
                FaultKind::PartitionOutbound,
            ],
            NemesisArg::PartitionLeader => &[FaultKind::PartitionLeader],
            NemesisArg::PartitionSplit => &[FaultKind::PartitionSplit],
            NemesisArg::PartitionOneWay => &[FaultKind::PartitionInbound, FaultKind::PartitionOutbound],
            NemesisArg::Member => &[FaultKind::Member],
            NemesisArg::None => &[],
        };
        for &kind in kinds {
            if !nemeses.contains(&kind) {
                nemeses.push(kind);
            }
        }
    }
    let mut workloads = Vec::new();
    for workload in args.workload {
        let workload = match workload {
            WorkloadArg::Register => Workload::Register,
            WorkloadArg::Set => Workload::Set,
            WorkloadArg::Lease => Workload::Lease,
            WorkloadArg::Watch => Workload::Watch,
            WorkloadArg::Events => Workload::Events,
            WorkloadArg::Lock => Workload::Lock,
        };
        if !workloads.contains(&workload) {
            workloads.push(workload);
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    // Truncating the nanoseconds is fine: any 64 bits make a seed, and it is printed.
    let seed = args.seed.unwrap_or(now.as_nanos() as u64);
    let keel_bin = match args.keel_bin {
        Some(path) => path,
        None => keel_next_to_this_executable()?,
    };
    let out_dir = args.out.unwrap_or_else(|| PathBuf::from(format!("jepsen/runs/{}-{seed}", now.as_secs())));
    Ok(RunConfig {
        workloads,
        nemeses,
        nodes: args.nodes,
        time_limit: Duration::from_secs(args.time_limit),
        concurrency: usize::from(args.concurrency),
        seed,
        keel_bin,
        out_dir,
        sabotage: args.sabotage.map(|sabotage| match sabotage {
            SabotageArg::StaleReads => Sabotage::StaleReads,
            SabotageArg::AckBeforeFsync => Sabotage::AckBeforeFsync,
            SabotageArg::DivergeVersions => Sabotage::DivergeVersions,
        }),
        tls: match (args.tls, args.cacert, args.cert, args.key) {
            (_, Some(ca), Some(cert), Some(key)) => TlsSetting::Files(TlsFiles { ca, cert, key }),
            (true, ..) => TlsSetting::Generate,
            _ => TlsSetting::Off,
        },
        auth: args.auth,
    })
}

/// `keel` next to this executable, built first (in the same profile) when this process was
/// started by `cargo run`, so `cargo run --release -p keel-jepsen -- test ...` works on a fresh
/// checkout and always runs the members of the code it was built from.
fn keel_next_to_this_executable() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let keel = exe.with_file_name("keel");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = exe.parent().and_then(|dir| dir.file_name()).and_then(|name| name.to_str()).unwrap_or("release");
        let profile = if profile == "debug" { "dev" } else { profile };
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or_else(|| anyhow::anyhow!("no workspace above {}", env!("CARGO_MANIFEST_DIR")))?;
        eprintln!("building keel ({profile} profile) with cargo; --keel-bin skips this");
        let status = std::process::Command::new(cargo)
            .args(["build", "--profile", profile, "-p", "keel-node", "--bin", "keel"])
            .current_dir(workspace)
            .status()?;
        anyhow::ensure!(status.success(), "building keel failed");
    }
    anyhow::ensure!(
        keel.exists(),
        "{} not found: build it (cargo build --release -p keel-node --bin keel) or pass --keel-bin",
        keel.display()
    );
    Ok(keel)
}
