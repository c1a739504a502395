//! The subcommands end to end: `run` drives endpoints that are already up; `compare` finds or
//! builds the binaries, starts the clusters, alternates the systems run by run, takes the
//! resource figures on fresh clusters, and writes the tables, JSON, markdown and plot; `report`
//! prints and writes them again from a JSON file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::cli::{CompareArgs, LoadArgs, ReportArgs, RunArgs};
use crate::cluster::{Cluster, ClusterSpec, System, TlsFiles};
use crate::cpu::CpuSampler;
use crate::pool::{enable_auth, Access};
use crate::report::{self, Meta, Report, Row, BASELINE, CANDIDATE};
use crate::workload::{self, LoadSpec};
use crate::{machine, plot, resources};

/// More members than this is not a cluster anyone runs on one machine.
pub const MEMBERS_MAX: usize = 7;

/// `keel-bench run`: every workload and client count against `--endpoints`, `--runs` times.
pub async fn run_against_endpoints(args: RunArgs) -> anyhow::Result<()> {
    let specs = args.load.specs().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!specs.is_empty(), "no load workload given (memory needs compare --resources)");
    prepare_outputs(&args.load, None)?;
    let tls = crate::pool::tls_options(args.cacert.as_deref(), args.cert.as_deref(), args.key.as_deref())?;
    let user = match &args.user {
        Some(user) => {
            let (name, password) = user.split_once(':').context("--user is NAME:PASSWORD")?;
            Some((name.to_string(), password.to_string()))
        }
        None => None,
    };
    let access = Access { tls, user };
    let mut report = Report { meta: meta(&args.load, Vec::new(), Vec::new()), ..Report::default() };
    for spec in &specs {
        for run in 1..=args.load.runs {
            let target = (args.endpoints.as_slice(), &access);
            let row = measure(target, Vec::new(), &args.label, spec, run, args.load.runs).await?;
            report.rows.push(row);
        }
    }
    print_tables(&report);
    write_outputs(&args.load, None, &report)
}

/// `keel-bench compare`.
pub async fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let specs = args.load.specs().map_err(anyhow::Error::msg)?;
    let wants_resources = args.resources || args.load.wants_memory();
    anyhow::ensure!(!specs.is_empty() || wants_resources, "no workload to run");
    anyhow::ensure!((1..=MEMBERS_MAX).contains(&args.members), "--members must be 1..={MEMBERS_MAX}");
    anyhow::ensure!(!args.systems.is_empty(), "--systems names no system");
    let plot_path = args.plot.clone().or_else(|| args.load.json.as_deref().map(plot::default_path));
    prepare_outputs(&args.load, plot_path.as_deref())?;
    let mut cluster_specs = Vec::new();
    let mut versions = Vec::new();
    for &system in &args.systems {
        let binary = match system {
            System::Etcd => ensure_etcd(&args.etcd_bin)?,
            System::Keel => keel_binary(&args)?,
        };
        versions.push(format!("{}: `{}` ({})", system.name(), machine::version_of(&binary), binary.display()));
        if let (System::Keel, Some(revision)) = (system, machine::source_revision()) {
            versions.push(format!("checkout: `{revision}` (what `cargo run` builds keel from)"));
        }
        cluster_specs.push(ClusterSpec {
            system,
            binary,
            members: args.members,
            heartbeat_interval_ms: args.heartbeat_interval,
            election_timeout_ms: args.election_timeout,
            tls: None,
        });
    }
    let root = match &args.data_root {
        Some(dir) => tempfile::Builder::new().prefix("keel-bench-").tempdir_in(dir),
        None => tempfile::Builder::new().prefix("keel-bench-").tempdir(),
    }
    .context("creating the data root")?;
    let tls = if args.tls { Some(TlsFiles::generate(&root.path().join("tls"))?) } else { None };
    for spec in &mut cluster_specs {
        spec.tls.clone_from(&tls);
    }
    let notes = compare_notes(&args, root.path(), wants_resources);
    let mut report = Report { meta: meta(&args.load, versions, notes), ..Report::default() };

    if !specs.is_empty() {
        let load_root = root.path().join("load");
        report.rows = run_alternately(&cluster_specs, &specs, (args.load.runs, args.auth), &load_root).await?;
    }
    if wants_resources {
        for spec in &cluster_specs {
            let label = format!("{} memory", spec.system.name());
            eprintln!("{label}: starting a fresh cluster");
            let mut cluster = Cluster::start(spec.clone(), &root.path().join("resources")).await?;
            let row = resources::measure(&mut cluster, args.load_keys, args.load.value_size, &label)
                .await
                .with_context(|| cluster.logs_tail())?;
            report.resources.push(row);
        }
    }

    print_tables(&report);
    write_outputs(&args.load, plot_path.as_deref(), &report)
}

/// `keel-bench report`: the tables, markdown and plot of an earlier JSON file.
pub fn report_again(args: ReportArgs) -> anyhow::Result<()> {
    let mut reports = Vec::with_capacity(args.inputs.len());
    for input in &args.inputs {
        let text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
        reports.push(serde_json::from_str(&text).with_context(|| format!("parsing {}", input.display()))?);
    }
    let report = report::merge(reports);
    print_tables(&report);
    if let Some(path) = &args.markdown {
        report::write_markdown(path, &report)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        anyhow::ensure!(report::has_both(&report.rows), "a plot needs rows of both etcd and keel");
        plot::write_svg(path, &report::compare(&report.rows, BASELINE, CANDIDATE))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_tables(report: &Report) {
    if report::has_both(&report.rows) {
        let medians = report::medians_phrase(&report.rows);
        println!("\nKeel against etcd, {medians} (ops above 1x and latency below 1x: Keel is faster)");
        println!("{}", report::comparison_table(&report::compare(&report.rows, BASELINE, CANDIDATE)).text());
    } else if !report.rows.is_empty() {
        println!("\n{}", report::medians_table(&report.rows).text());
    }
    if let Some(first) = report.resources.first() {
        println!("\nMemory, disk and restart ({} keys of {} bytes)", first.keys, first.value_size);
        println!("{}", report::resources_table(&report.resources).text());
    }
}

/// Creates the output files' directories before measuring, so that a typo in a path fails in
/// a second rather than after the whole benchmark.
fn prepare_outputs(load: &LoadArgs, plot_path: Option<&Path>) -> anyhow::Result<()> {
    for path in [load.json.as_deref(), load.markdown.as_deref(), plot_path].into_iter().flatten() {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Starts one cluster per system, then for each workload and client count runs the systems
/// in turn, `runs` times: etcd, keel, etcd, keel, ...
/// With `auth`, each cluster gets a root user and auth on before the first run, and every
/// client signs in as root.
async fn run_alternately(
    cluster_specs: &[ClusterSpec],
    specs: &[LoadSpec],
    (runs, auth): (usize, bool),
    root: &Path,
) -> anyhow::Result<Vec<Row>> {
    let mut clusters = Vec::new();
    for spec in cluster_specs {
        eprintln!("{}: starting {} members", spec.system.name(), spec.members);
        let cluster = Cluster::start(spec.clone(), root).await?;
        let access = match (auth, cluster.endpoints().first()) {
            (true, Some(endpoint)) => {
                enable_auth(endpoint, &cluster.access()).await.with_context(|| cluster.logs_tail())?
            }
            _ => cluster.access(),
        };
        clusters.push((cluster, access));
    }
    let mut rows = Vec::new();
    for spec in specs {
        for run in 1..=runs {
            for (cluster, access) in &clusters {
                let endpoints = followers_first(cluster.endpoints(), access).await;
                let row = measure((&endpoints, access), cluster.member_pids(), cluster.name(), spec, run, runs)
                    .await
                    .with_context(|| cluster.logs_tail())?;
                if let Some(member) = cluster.exited_member() {
                    anyhow::bail!("{} {member} exited during the run\n{}", cluster.name(), cluster.logs_tail());
                }
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// `endpoints` with the leader's last, so that the first connections (a lone client's only
/// one) go to a follower in both systems: which member leads is chance, and a client of the
/// leader skips the forwarding hop a follower's client pays. In the order given when no member
/// names a leader.
async fn followers_first(endpoints: Vec<String>, access: &Access) -> Vec<String> {
    let mut ranked = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        ranked.push((is_leader(&endpoint, access).await, endpoint));
    }
    // Stable: followers keep their given order.
    ranked.sort_by_key(|(leads, _)| *leads);
    ranked.into_iter().map(|(_, endpoint)| endpoint).collect()
}

/// Whether the member at `endpoint` says it leads (false when it cannot be asked).
async fn is_leader(endpoint: &str, access: &Access) -> bool {
    let Ok(mut client) = crate::pool::connect_one(endpoint, access).await else { return false };
    match client.status().await {
        Ok(status) => status.header().is_some_and(|header| header.member_id() == status.leader()),
        Err(_) => false,
    }
}

/// One run of `spec` against `endpoints` (reached as `access` says), printed as it completes;
/// with the members' `pids`, also their CPU time per operation.
async fn measure(
    (endpoints, access): (&[String], &Access),
    pids: Vec<u32>,
    system: &str,
    spec: &LoadSpec,
    run: usize,
    runs: usize,
) -> anyhow::Result<Row> {
    let label = format!("{system} {} clients {} run {run}/{runs}", spec.workload.name(), spec.clients);
    let cpu = CpuSampler::start(pids);
    let measurement =
        workload::run(endpoints, access, spec, &label).await.with_context(|| format!("{label} failed"))?;
    let mut summary = measurement.summary();
    let window_end = measurement.window_start + measurement.window;
    summary.member_cpu_us_per_op = cpu
        .seconds_between(measurement.window_start, window_end)
        .filter(|_| summary.ops > 0)
        .map(|seconds| seconds * 1e6 / summary.ops as f64);
    let row = Row {
        system: system.to_string(),
        workload: spec.workload,
        clients: spec.clients,
        connections: spec.connections,
        run,
        summary,
    };
    println!("{}", report::run_line(&row, runs));
    if let Some(error) = measurement.first_error {
        eprintln!("{label}: {} errors, the first: {error}", row.summary.errors);
    }
    Ok(row)
}

fn write_outputs(load: &LoadArgs, plot_path: Option<&Path>, report: &Report) -> anyhow::Result<()> {
    if let Some(path) = &load.json {
        report::write_json(path, report)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &load.markdown {
        report::write_markdown(path, report)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = plot_path {
        if report::has_both(&report.rows) {
            plot::write_svg(path, &report::compare(&report.rows, BASELINE, CANDIDATE))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn meta(load: &LoadArgs, versions: Vec<String>, setup: Vec<String>) -> Meta {
    let mut notes = load.notes.clone();
    notes.extend(setup);
    notes.push(format!(
        "Closed-loop clients; each run has {} s of warm-up, then {} s measured. Values of {} bytes over {} keys.",
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64(),
        load.value_size,
        load.keys
    ));
    notes.push("keel-bench runs on the same machine as the members and shares its cores with them.".to_string());
    Meta {
        date_utc: machine::utc_timestamp(SystemTime::now()),
        machine: machine::description(),
        command: command_line(std::env::args().skip(1)),
        versions,
        notes,
    }
}

fn compare_notes(args: &CompareArgs, root: &Path, wants_resources: bool) -> Vec<String> {
    let mut notes = vec![format!(
        "{} members per system on 127.0.0.1 with the same etcd flags (--heartbeat-interval {} \
         --election-timeout {} --snapshot-count 100000), data dirs in one temp dir ({}) on one filesystem.",
        args.members,
        args.heartbeat_interval,
        args.election_timeout,
        root.parent().unwrap_or(root).display()
    )];
    notes.push(
        "Each system's cluster is started once and reused across runs; both run throughout, the one not \
         measured idles (heartbeats only). Runs alternate: etcd, keel, etcd, keel, ... for each workload and \
         client count."
            .to_string(),
    );
    notes.push(format!(
        "Connections: {}, each to one member in turn, followers first (a lone client talks to a follower in both systems); clients share them round-robin.",
        args.load.connections.map_or("one per client".to_string(), |c| format!("{c} (at most one per client)"))
    ));
    if wants_resources {
        notes.push(format!(
            "Memory: a fresh cluster per system, {} keys loaded by 64 concurrent clients; RSS is VmRSS per \
             member, data dir is bytes allocated on disk (as du counts). Restart: SIGTERM to every member, then \
             every member started again, timed until each serves a linearizable get and all agree on a leader.",
            args.load_keys
        ));
    }
    if args.tls {
        notes.push(
            "TLS on both ports in both systems, client certificates required (one CA and certificate made \
             for the run); clients present the certificate."
                .to_string(),
        );
    }
    if args.auth {
        notes.push(
            "Auth on in both systems (a root user with the root role, simple tokens): every client signs in \
             as root once per connection and sends its token with each request."
                .to_string(),
        );
    }
    notes
}

/// The command line that reproduces this run: `cargo run --release -p keel-bench -- <args>`.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let quoted: Vec<String> = args
        .into_iter()
        .map(|arg| {
            let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "_-./,=:+@".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect();
    format!("cargo run --release -p keel-bench -- {}", quoted.join(" "))
}

/// The etcd binary, installing Debian's etcd-server if it is the default `etcd` and missing.
fn ensure_etcd(binary: &Path) -> anyhow::Result<PathBuf> {
    let runs = |b: &Path| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success());
    if runs(binary) {
        return Ok(binary.to_path_buf());
    }
    anyhow::ensure!(binary == Path::new("etcd"), "{} does not run", binary.display());
    apt_install("etcd-server").context("or run scripts/setup, which installs etcd-server")?;
    anyhow::ensure!(runs(binary), "etcd still does not run after installing etcd-server");
    Ok(binary.to_path_buf())
}

/// Installs one of Debian's packages (`apt-get`, as root), for the reference systems a
/// comparison runs against.
pub(crate) fn apt_install(package: &str) -> anyhow::Result<()> {
    eprintln!("installing Debian's {package} (apt-get)");
    for apt in [&["update", "-qq"][..], &["install", "-y", "-qq", "--no-install-recommends", package]] {
        let status = Command::new("apt-get")
            .args(apt)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        anyhow::ensure!(status.success(), "apt-get {} failed: run it as root", apt.join(" "));
    }
    Ok(())
}

/// The keel binary: --keel-bin, or `keel` next to this executable, built first when this
/// process was started by `cargo run` (so the done-when command works on a fresh checkout).
fn keel_binary(args: &CompareArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.keel_bin {
        anyhow::ensure!(path.exists(), "--keel-bin {} does not exist", path.display());
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("finding keel-bench's own path")?;
    let keel = exe.with_file_name("keel");
    if let (Some(cargo), false) = (std::env::var_os("CARGO"), args.no_build) {
        build_keel(Path::new(&cargo), &exe)?;
    }
    anyhow::ensure!(
        keel.exists(),
        "{} not found: build it (cargo build --release -p keel-node --bin keel) or pass --keel-bin",
        keel.display()
    );
    Ok(keel)
}

/// `cargo build -p keel-node --bin keel` in the profile keel-bench itself was built in.
fn build_keel(cargo: &Path, exe: &Path) -> anyhow::Result<()> {
    let profile = exe.parent().and_then(Path::file_name).and_then(|name| name.to_str()).unwrap_or("release");
    let profile = if profile == "debug" { "dev" } else { profile };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("the workspace root")?;
    eprintln!("building keel ({profile} profile) with cargo; --no-build or --keel-bin skips this");
    let status = Command::new(cargo)
        .args(["build", "--profile", profile, "-p", "keel-node", "--bin", "keel"])
        .current_dir(workspace)
        .status()
        .context("running cargo build for keel")?;
    anyhow::ensure!(status.success(), "building keel failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_reproduces_with_cargo_run_and_quotes_what_the_shell_would_split() {
        let args = ["compare", "--workload", "put,range", "--json", "my out.json"].map(String::from);
        assert_eq!(
            command_line(args),
            "cargo run --release -p keel-bench -- compare --workload put,range --json 'my out.json'"
        );
        assert_eq!(command_line(["it's".to_string()]), r"cargo run --release -p keel-bench -- 'it'\''s'");
    }
}
