//! `keel-dev-cluster`: starts a local cluster for development (3 members, or `--members 5`…), each member its own
//! `keel` process with its own data dir, prints the endpoints, and stops them all (SIGTERM,
//! then wait) on Ctrl-C. If any member exits on its own, the others are stopped too.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(name = "keel-dev-cluster", about = "Run a local Keel cluster (3 members by default) until Ctrl-C.")]
struct Flags {
    /// How many members: 1 to 7 (an odd number keeps a quorum through the most failures).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
    members: u16,
    /// Where the members' data dirs go (one sub-directory per member).
    #[arg(long, default_value = "dev-cluster.keel")]
    data_root: PathBuf,
    /// Log level passed to every member.
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// Client ports: etcd's conventional local-cluster ports for the first three, then more in
/// the same pattern; each member's peer port is its client port + 1.
const CLIENT_PORTS: [u16; 7] = [2379, 22379, 32379, 42379, 52379, 62379, 12379];

/// (name, client port, peer port) of member `i` (0-based, below `CLIENT_PORTS.len()`).
fn member(i: u16) -> (String, u16, u16) {
    let client = CLIENT_PORTS[usize::from(i)];
    (format!("infra{}", i + 1), client, client + 1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keel-dev-cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The members' shared peer secret, `<data root>/peer-secret`: made once (random, readable by
/// this user only), then reused by every start of the dev cluster.
fn ensure_peer_secret(data_root: &std::path::Path) -> Result<std::path::PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_root.join("peer-secret");
    if path.exists() {
        return Ok(path);
    }
    let failed = |e: std::io::Error| format!("cannot create the peer secret {}: {e}", path.display());
    std::fs::create_dir_all(data_root).map_err(failed)?;
    let secret: [u8; 32] = rand::random();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(failed)?;
    file.write_all(hex.as_bytes()).map_err(failed)?;
    Ok(path)
}

async fn run(flags: Flags) -> Result<(), String> {
    let keel = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?.with_file_name("keel");
    let members: Vec<(String, u16, u16)> = (0..flags.members).map(member).collect();
    let initial_cluster =
        members.iter().map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}")).collect::<Vec<_>>().join(",");
    let peer_secret = ensure_peer_secret(&flags.data_root)?;
    let mut children: Vec<(&str, Child)> = Vec::new();
    for (name, client, peer) in &members {
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let spawned = Command::new(&keel)
            .args(["--name", name.as_str(), "--data-dir"])
            .arg(flags.data_root.join(name))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-token", "keel-dev-cluster"])
            .args(["--log-level", &flags.log_level])
            .arg("--peer-secret-file")
            .arg(&peer_secret)
            .spawn();
        match spawned {
            Ok(child) => children.push((name, child)),
            Err(e) => {
                stop_all(&mut children).await;
                return Err(format!("cannot start {}: {e}", keel.display()));
            }
        }
    }
    let endpoints: Vec<String> = members.iter().map(|(_, client, _)| format!("http://127.0.0.1:{client}")).collect();
    println!("keel-dev-cluster: {} members running, data in {}", members.len(), flags.data_root.display());
    println!("  ENDPOINTS={}", endpoints.join(","));
    println!("  try: etcdctl --endpoints={} member list -w table", endpoints.join(","));
    println!("Press Ctrl-C to stop all members.");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot install SIGTERM handler: {e}"))?;
    let exited = futures::future::select_all(
        children.iter_mut().map(|(name, child)| Box::pin(async move { (*name, child.wait().await) })),
    );
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = sigterm.recv() => Ok(()),
        ((name, status), _, _) = exited => Err(format!("member {name} exited ({status:?}); stopping the others")),
    };
    stop_all(&mut children).await;
    outcome
}

/// SIGTERM to each member still running, then wait for every one of them.
async fn stop_all(children: &mut [(&str, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            // ESRCH (already gone) is fine: we only want it stopped.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for (name, child) in children.iter_mut() {
        match child.wait().await {
            Ok(status) => println!("keel-dev-cluster: {name} stopped ({status})"),
            Err(e) => eprintln!("keel-dev-cluster: waiting for {name}: {e}"),
        }
    }
}
