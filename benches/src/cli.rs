//! The command line. Parsing and validation only: nothing here connects, spawns or writes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster::System;
use crate::workload::{LoadSpec, Workload};

/// More closed-loop clients than this measure the load generator, not the cluster.
pub const CLIENTS_MAX: usize = 10_000;
/// Watchers on the prefix in the `watch` workload; each is a watch stream.
pub const WATCHERS_MAX: usize = 10_000;
/// Leases kept alive in the `lease-keepalive` workload; each is a keep-alive stream.
pub const LEASES_MAX: usize = 100_000;
/// Below etcd's default `--max-request-bytes` (1.5 MiB), so that a put always fits.
pub const VALUE_SIZE_MAX: usize = 1_048_576;
/// One measurement longer than an hour is a mistake on this command line.
pub const DURATION_MAX: Duration = Duration::from_secs(3_600);
/// Repetitions per system; medians over more than this add nothing.
pub const RUNS_MAX: usize = 100;

#[derive(Debug, Parser)]
#[command(
    name = "keel-bench",
    version,
    about = "Closed-loop load over the etcd v3 API; Keel against etcd side by side."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive already-running endpoints (etcd or Keel) and report ops/s and latency.
    Run(RunArgs),
    /// Start a fresh 3-member etcd 3.4 and a fresh 3-member Keel cluster with the same flags,
    /// run the workloads on them alternately and print medians and the Keel/etcd ratios.
    Compare(CompareArgs),
    /// The greeter example called directly, through keel proxy, nginx's grpc_pass and keel
    /// gateway (HTTP/JSON): throughput and the latency each adds, as a markdown table.
    Gateway(crate::gateway::GatewayArgs),
    /// Print the tables of a JSON file written by run or compare, and write its markdown and
    /// plot again (to regenerate benches/RESULTS.md without measuring again).
    Report(ReportArgs),
}

/// What to run and how hard: shared by `run` and `compare`.
#[derive(Clone, Debug, Args)]
pub struct LoadArgs {
    /// Workloads, repeatable or a comma list: put, range, range-serializable, txn, watch,
    /// lease-keepalive (and, for compare, memory: the --resources measurements).
    #[arg(long = "workload", value_delimiter = ',', default_value = "put", value_parser = Workload::parse)]
    pub workloads: Vec<Workload>,

    /// Closed-loop clients, or a comma list of counts to run each workload at.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub clients: Vec<usize>,

    /// gRPC connections the clients share round-robin, each to one endpoint in turn
    /// [default: one per client].
    #[arg(long)]
    pub connections: Option<usize>,

    /// Seconds measured per run.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,

    /// Seconds of load before the measurement starts (connections warm, leader settled).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub warmup: Duration,

    /// Size of the key space that puts, ranges and txns pick from.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,

    /// Bytes per value written.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Watchers on the prefix in the `watch` workload (the writers are the clients).
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,

    /// Leases in the `lease-keepalive` workload, shared out over the clients.
    #[arg(long, default_value_t = 1_000)]
    pub leases: usize,

    /// Runs per system (compare alternates: etcd, Keel, etcd, Keel, ...).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,

    /// Write every run's row, and the resource figures, as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Write the result tables as markdown (the format of benches/RESULTS.md).
    #[arg(long)]
    pub markdown: Option<PathBuf>,

    /// A sentence for the report's header, e.g. what makes this run special (repeatable).
    #[arg(long = "note")]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub load: LoadArgs,

    /// Client URLs of the cluster's members, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,

    /// The name this system gets in the output (e.g. etcd or keel).
    #[arg(long, default_value = "target")]
    pub label: String,

    /// Verify https:// endpoints with this CA bundle (PEM), as etcdctl's --cacert.
    #[arg(long)]
    pub cacert: Option<PathBuf>,

    /// A client certificate (PEM) for members that ask for one.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,

    /// The client certificate's key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,

    /// Sign in as NAME:PASSWORD (a cluster with auth on).
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Clone, Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub load: LoadArgs,

    /// The Keel server binary [default: `keel` next to this executable; when started by
    /// `cargo run`, it is built first].
    #[arg(long)]
    pub keel_bin: Option<PathBuf>,

    /// With `cargo run` and no --keel-bin, do not build `keel` first.
    #[arg(long)]
    pub no_build: bool,

    /// The etcd server binary (installed from Debian's etcd-server if it is `etcd` and missing).
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: PathBuf,

    /// TLS on both ports in each system, client certificates required (a CA and certificate
    /// made for the run), to measure what encryption costs.
    #[arg(long)]
    pub tls: bool,

    /// Turn auth on in each system before measuring (a root user; every client signs in as
    /// root, as a service with its own user would), to measure what permission checks cost.
    #[arg(long)]
    pub auth: bool,

    /// Systems to run, in the order of each alternation.
    #[arg(long, value_delimiter = ',', default_value = "etcd,keel", value_parser = System::parse)]
    pub systems: Vec<System>,

    /// Members per cluster.
    #[arg(long, default_value_t = 3)]
    pub members: usize,

    /// --heartbeat-interval for every member, in ms (Keel's and etcd's default).
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// --election-timeout for every member, in ms (Keel's and etcd's default).
    #[arg(long, default_value_t = 1_000)]
    pub election_timeout: u64,

    /// Also measure RSS per member and data-dir size after loading --load-keys keys into fresh
    /// clusters, and the time from a restart of every member to a served linearizable get.
    #[arg(long)]
    pub resources: bool,

    /// Keys loaded for --resources.
    #[arg(long, default_value_t = 100_000)]
    pub load_keys: u64,

    /// The comparison plot (SVG) [default: next to --json, with the extension .svg].
    #[arg(long)]
    pub plot: Option<PathBuf>,

    /// Where the clusters' data dirs go (one temp dir, both systems on one filesystem)
    /// [default: the system temp dir].
    #[arg(long)]
    pub data_root: Option<PathBuf>,
}

#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// JSON files of earlier runs or compares; the rows of several files are reported together
    /// (e.g. put at four client counts from one compare, the other workloads from another).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,

    /// Write the result tables as markdown.
    #[arg(long)]
    pub markdown: Option<PathBuf>,

    /// Write the comparison plot (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

impl LoadArgs {
    /// The load workloads (everything but `memory`), each at each client count.
    pub fn specs(&self) -> Result<Vec<LoadSpec>, String> {
        self.check()?;
        let mut specs = Vec::new();
        for &workload in self.workloads.iter().filter(|w| w.is_load()) {
            for &clients in &self.clients {
                specs.push(LoadSpec {
                    workload,
                    clients,
                    connections: self.connections.unwrap_or(clients).min(clients),
                    warmup: self.warmup,
                    duration: self.duration,
                    keys: self.keys,
                    value_size: self.value_size,
                    watchers: self.watchers,
                    leases: self.leases,
                });
            }
        }
        Ok(specs)
    }

    /// Whether `memory` was named as a workload.
    pub fn wants_memory(&self) -> bool {
        self.workloads.contains(&Workload::Memory)
    }

    fn check(&self) -> Result<(), String> {
        if self.clients.is_empty() || self.clients.iter().any(|&c| c == 0 || c > CLIENTS_MAX) {
            return Err(format!("--clients: every count must be 1..={CLIENTS_MAX}"));
        }
        if self.connections == Some(0) {
            return Err("--connections must be at least 1".into());
        }
        if self.duration.is_zero() || self.duration > DURATION_MAX {
            return Err(format!("--duration must be above 0 and at most {}", DURATION_MAX.as_secs()));
        }
        if self.warmup > DURATION_MAX {
            return Err(format!("--warmup must be at most {}", DURATION_MAX.as_secs()));
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.value_size > VALUE_SIZE_MAX {
            return Err(format!("--value-size must be at most {VALUE_SIZE_MAX}"));
        }
        if self.watchers == 0 || self.watchers > WATCHERS_MAX {
            return Err(format!("--watchers must be 1..={WATCHERS_MAX}"));
        }
        if self.leases == 0 || self.leases > LEASES_MAX {
            return Err(format!("--leases must be 1..={LEASES_MAX}"));
        }
        if self.runs == 0 || self.runs > RUNS_MAX {
            return Err(format!("--runs must be 1..={RUNS_MAX}"));
        }
        Ok(())
    }
}

/// Seconds as a decimal number (`10`, `2.5`), for --duration and --warmup.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 || secs > DURATION_MAX.as_secs_f64() {
        return Err(format!("{text:?} seconds is out of range 0..={}", DURATION_MAX.as_secs()));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("keel-bench").chain(args.iter().copied()))
    }

    fn compare_args(args: &[&str]) -> CompareArgs {
        let mut full = vec!["compare"];
        full.extend_from_slice(args);
        match parse(&full).expect("valid command line").command {
            Command::Compare(args) => args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_done_when_command_line_parses() {
        let args = compare_args(&[
            "--workload",
            "put",
            "--clients",
            "64",
            "--duration",
            "10",
            "--runs",
            "3",
            "--json",
            "out.json",
        ]);
        assert_eq!(args.load.workloads, vec![Workload::Put]);
        assert_eq!(args.load.clients, vec![64]);
        assert_eq!(args.load.duration, Duration::from_secs(10));
        assert_eq!(args.load.runs, 3);
        assert_eq!(args.load.json, Some(PathBuf::from("out.json")));
        assert_eq!(args.systems, vec![System::Etcd, System::Keel]);
        assert_eq!((args.heartbeat_interval, args.election_timeout), (100, 1_000));
    }

    #[test]
    fn workloads_and_clients_take_lists_and_repeats() {
        let args = compare_args(&["--workload", "put,range", "--workload", "txn", "--clients", "1,16,64,256"]);
        assert_eq!(args.load.workloads, vec![Workload::Put, Workload::Range, Workload::Txn]);
        assert_eq!(args.load.clients, vec![1, 16, 64, 256]);
        let specs = args.load.specs().expect("valid");
        assert_eq!(specs.len(), 12);
        assert_eq!((specs[1].workload, specs[1].clients), (Workload::Put, 16));
    }

    #[test]
    fn memory_is_a_pseudo_workload_without_a_load_spec() {
        let args = compare_args(&["--workload", "memory,put"]);
        assert!(args.load.wants_memory());
        let specs = args.load.specs().expect("valid");
        assert_eq!(specs.iter().map(|s| s.workload).collect::<Vec<_>>(), vec![Workload::Put]);
    }

    #[test]
    fn connections_default_to_one_per_client_and_never_exceed_clients() {
        let specs = compare_args(&["--clients", "1,64"]).load.specs().expect("valid");
        assert_eq!(specs.iter().map(|s| s.connections).collect::<Vec<_>>(), vec![1, 64]);
        let specs = compare_args(&["--clients", "1,64", "--connections", "8"]).load.specs().expect("valid");
        assert_eq!(specs.iter().map(|s| s.connections).collect::<Vec<_>>(), vec![1, 8]);
    }

    #[test]
    fn unknown_workloads_and_systems_are_rejected_by_name() {
        let error = parse(&["compare", "--workload", "scan"]).expect_err("unknown workload").to_string();
        assert!(error.contains("scan"), "{error}");
        assert!(parse(&["compare", "--systems", "zookeeper"]).is_err());
    }

    #[test]
    fn limits_are_checked() {
        for bad in [
            &["--clients", "0"][..],
            &["--clients", "10001"],
            &["--connections", "0"],
            &["--duration", "0"],
            &["--keys", "0"],
            &["--value-size", "2000000"],
            &["--runs", "0"],
            &["--watchers", "0"],
        ] {
            assert!(compare_args(bad).load.specs().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn seconds_parse_as_decimals() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2_500)));
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("ten").is_err());
        assert!(parse_secs("inf").is_err());
    }

    #[test]
    fn report_takes_a_json_file() {
        let cli = parse(&["report", "put.json", "rest.json", "--markdown", "RESULTS.md"]).expect("valid");
        let Command::Report(args) = cli.command else { panic!("not parsed as report") };
        assert_eq!(args.inputs, vec![PathBuf::from("put.json"), PathBuf::from("rest.json")]);
        assert!(parse(&["report"]).is_err(), "a report needs a JSON file");
        assert_eq!(args.markdown, Some(PathBuf::from("RESULTS.md")));
        assert_eq!(args.plot, None);
    }

    #[test]
    fn run_takes_etcdctls_tls_flags() {
        let cli = parse(&[
            "run",
            "--endpoints",
            "https://127.0.0.1:1",
            "--cacert",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ])
        .expect("valid");
        let Command::Run(args) = cli.command else { panic!("not parsed as run") };
        assert_eq!(args.cacert, Some(PathBuf::from("ca.pem")));
        assert_eq!(args.key, Some(PathBuf::from("k.pem")));
        assert!(parse(&["run", "--cacert", "ca.pem", "--cert", "c.pem"]).is_err(), "--cert needs --key");
    }

    #[test]
    fn run_takes_endpoints_and_a_label() {
        let cli =
            parse(&["run", "--endpoints", "http://127.0.0.1:1,http://127.0.0.1:2", "--label", "keel"]).expect("valid");
        let Command::Run(args) = cli.command else { panic!("not parsed as run") };
        assert_eq!(args.endpoints.len(), 2);
        assert_eq!(args.label, "keel");
    }
}
