//! Local clusters to measure: N members of etcd or of Keel, started with the same etcd flags on
//! loopback ports nobody else holds, each member's data dir and log under one root directory.
//! It knows how to start, stop, restart and wait for a cluster; it never generates load.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::pool;

/// How long a fresh or restarted cluster may take to elect a leader and serve reads on every
/// member (a restart of a member holding a million keys included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a member may take to stop cleanly after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness and exits are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of each member's log shown when a cluster fails to come up.
const LOG_TAIL_LINES: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// etcd 3.4 from Debian's etcd-server: the reference.
    Etcd,
    Keel,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Keel => "keel",
        }
    }

    pub fn parse(text: &str) -> Result<System, String> {
        match text.trim() {
            "etcd" => Ok(System::Etcd),
            "keel" => Ok(System::Keel),
            other => Err(format!("unknown system {other:?} (etcd or keel)")),
        }
    }
}

/// How to start a cluster: which binary, how many members, the Raft timing every member gets.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub system: System,
    pub binary: PathBuf,
    pub members: usize,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// TLS on both ports, client certificates required (the same files for both systems).
    pub tls: Option<TlsFiles>,
}

/// The ports of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberPorts {
    pub client: u16,
    pub peer: u16,
}

/// The etcd flags member `index` of a cluster on `ports` starts with; Keel takes the same.
/// Snapshot count is both systems' default, spelled out so neither drifts.
pub fn member_args(spec: &ClusterSpec, index: usize, ports: &[MemberPorts], data_dir: &Path) -> Vec<String> {
    let scheme = scheme(spec);
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}={scheme}://127.0.0.1:{}", p.peer))
        .collect::<Vec<_>>()
        .join(",");
    let client_url = format!("{scheme}://127.0.0.1:{}", ports[index].client);
    let peer_url = format!("{scheme}://127.0.0.1:{}", ports[index].peer);
    let flags: [(&str, String); 12] = [
        ("--name", format!("m{index}")),
        ("--data-dir", data_dir.display().to_string()),
        ("--listen-client-urls", client_url.clone()),
        ("--advertise-client-urls", client_url),
        ("--listen-peer-urls", peer_url.clone()),
        ("--initial-advertise-peer-urls", peer_url),
        ("--initial-cluster", initial_cluster),
        ("--initial-cluster-token", "keel-bench".into()),
        ("--initial-cluster-state", "new".into()),
        ("--heartbeat-interval", spec.heartbeat_interval_ms.to_string()),
        ("--election-timeout", spec.election_timeout_ms.to_string()),
        ("--snapshot-count", "100000".into()),
    ];
    let mut args: Vec<String> = flags.into_iter().flat_map(|(flag, value)| [flag.to_string(), value]).collect();
    if spec.system == System::Keel && ports.len() > 1 {
        // Keel's peers prove membership with a shared secret (etcd's equivalent is peer TLS).
        let secret = data_dir.parent().unwrap_or(data_dir).join("keel-peer-secret");
        args.extend(["--peer-secret-file".to_string(), secret.display().to_string()]);
    }
    if let Some(tls) = &spec.tls {
        args.extend(tls.member_flags());
    }
    args
}

fn scheme(spec: &ClusterSpec) -> &'static str {
    if spec.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// Writes the peer secret file a Keel cluster whose data dirs are under `root` shares (see
/// `member_args`), if it does not exist yet.
pub fn write_peer_secret(root: &Path) -> std::io::Result<()> {
    use std::hash::{BuildHasher, RandomState};
    let path = root.join("keel-peer-secret");
    if path.exists() {
        return Ok(());
    }
    // RandomState is seeded from the OS's randomness: enough for a benchmark cluster's secret.
    let secret: String = (0..4).map(|i| format!("{:016x}", RandomState::new().hash_one(i))).collect();
    std::fs::write(path, secret)
}

// The certificates of a TLS run, made at run time; shared with keel-jepsen.
#[path = "../../jepsen/src/tls/files.rs"]
mod tls_files;
pub use tls_files::TlsFiles;

// A loopback port held for a cluster's whole life; the rules are in the file itself.
#[path = "../../tests/src/ports.rs"]
mod ports;
pub use ports::ReservedPort;

pub struct Member {
    pub name: String,
    pub client_url: String,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Cluster {
    pub spec: ClusterSpec,
    pub members: Vec<Member>,
    /// How clients reach the members (TLS when the spec has it).
    access: pool::Access,
    /// Every member's client and peer port, released only after the members are killed (Drop).
    _ports: Vec<ReservedPort>,
}

impl Cluster {
    /// Starts the members under `root/<system>/` and waits until every one serves reads.
    pub async fn start(spec: ClusterSpec, root: &Path) -> anyhow::Result<Cluster> {
        let dir = root.join(spec.system.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_peer_secret(&dir).with_context(|| format!("writing the peer secret in {}", dir.display()))?;
        let reserved = (0..2 * spec.members)
            .map(|_| ReservedPort::try_new())
            .collect::<std::io::Result<Vec<_>>>()
            .context("reserving loopback ports")?;
        let ports: Vec<MemberPorts> =
            reserved.chunks(2).map(|pair| MemberPorts { client: pair[0].port(), peer: pair[1].port() }).collect();
        let members = (0..spec.members)
            .map(|i| {
                let data_dir = dir.join(format!("m{i}"));
                Member {
                    name: format!("m{i}"),
                    client_url: format!("{}://127.0.0.1:{}", scheme(&spec), ports[i].client),
                    args: member_args(&spec, i, &ports, &data_dir),
                    log_path: dir.join(format!("m{i}.log")),
                    data_dir,
                    child: None,
                }
            })
            .collect();
        let tls = match &spec.tls {
            Some(files) => pool::tls_options(Some(&files.ca), Some(&files.cert), Some(&files.key))?,
            None => None,
        };
        let access = pool::Access { tls, user: None };
        let mut cluster = Cluster { spec, members, access, _ports: reserved };
        cluster.start_all()?;
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// How a client reaches the members.
    pub fn access(&self) -> pool::Access {
        self.access.clone()
    }

    /// The members' process ids (of those running).
    pub fn member_pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Member::pid).collect()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn name(&self) -> &'static str {
        self.spec.system.name()
    }

    /// Starts every member that is not running, on its data dir, with its original flags.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for member in self.members.iter_mut().filter(|m| m.child.is_none()) {
            let log = File::options()
                .create(true)
                .append(true)
                .open(&member.log_path)
                .with_context(|| format!("opening {}", member.log_path.display()))?;
            let child = Command::new(&self.spec.binary)
                .args(&member.args)
                .stdout(log.try_clone()?)
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", self.spec.binary.display()))?;
            member.child = Some(child);
        }
        Ok(())
    }

    /// SIGTERM to every member, then waits for each to exit (kill -9 after `STOP_TIMEOUT`).
    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        for member in &self.members {
            if let Some(pid) = member.pid() {
                let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
                kill(pid, Signal::SIGTERM).with_context(|| format!("SIGTERM to {}", member.name))?;
            }
        }
        for member in &mut self.members {
            if let Some(child) = member.child.take() {
                stop_within(child, STOP_TIMEOUT).await.with_context(|| format!("stopping {}", member.name))?;
            }
        }
        Ok(())
    }

    /// Waits until every member sees the same leader and serves a linearizable get; returns how
    /// long that took.
    pub async fn wait_ready(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if self.is_ready().await {
                return Ok(started.elapsed());
            }
            if let Some(exited) = self.exited_member() {
                anyhow::bail!("{} {exited} exited while starting\n{}", self.name(), self.logs_tail());
            }
            if started.elapsed() > READY_TIMEOUT {
                anyhow::bail!("{} not ready after {READY_TIMEOUT:?}\n{}", self.name(), self.logs_tail());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn is_ready(&self) -> bool {
        let mut leaders = Vec::with_capacity(self.members.len());
        for member in &self.members {
            let Ok(mut client) = pool::connect_one(&member.client_url, &self.access).await else {
                return false;
            };
            let Ok(status) = client.status().await else { return false };
            if status.leader() == 0 || client.get("keel-bench/ready-probe", None).await.is_err() {
                return false;
            }
            leaders.push(status.leader());
        }
        leaders.windows(2).all(|pair| pair[0] == pair[1])
    }

    /// The name of a member whose process has exited, if one has.
    pub fn exited_member(&self) -> Option<String> {
        self.members.iter().find_map(|m| {
            let pid = Pid::from_raw(i32::try_from(m.pid()?).ok()?);
            // Signal 0 checks existence; a zombie still exists, so look at its state too.
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            let zombie =
                state.as_deref().and_then(|s| s.rsplit(')').next()).is_some_and(|s| s.trim_start().starts_with('Z'));
            (kill(pid, None).is_err() || zombie).then(|| m.name.clone())
        })
    }

    /// The last lines of every member's log, for error messages.
    pub fn logs_tail(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                format!(
                    "--- {} {} ---\n{}",
                    self.name(),
                    m.name,
                    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // kill -9: a benchmark cluster holds nothing worth a clean shutdown.
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Waits for `child` to exit; kills it if it is still running after `timeout`.
async fn stop_within(mut child: Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("still running {timeout:?} after SIGTERM: killed");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(system: System) -> ClusterSpec {
        ClusterSpec {
            system,
            binary: PathBuf::from("unused"),
            members: 3,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1_000,
            tls: None,
        }
    }

    #[test]
    fn a_tls_cluster_gets_https_urls_and_etcds_tls_flags() {
        let ports = [MemberPorts { client: 1, peer: 2 }];
        let files = TlsFiles { ca: "/c/ca.pem".into(), cert: "/c/cert.pem".into(), key: "/c/key.pem".into() };
        let spec = ClusterSpec { tls: Some(files), ..spec(System::Etcd) };
        let args = member_args(&spec, 0, &ports, Path::new("/d"));
        assert_eq!(value_of(&args, "--listen-client-urls"), "https://127.0.0.1:1");
        assert_eq!(value_of(&args, "--initial-cluster"), "m0=https://127.0.0.1:2");
        assert!(args.contains(&"--client-cert-auth=true".to_string()));
        assert!(args.contains(&"--peer-trusted-ca-file=/c/ca.pem".to_string()));
    }

    fn value_of<'a>(args: &'a [String], flag: &str) -> &'a str {
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} missing"));
        &args[at + 1]
    }

    #[test]
    fn members_get_etcds_flags_with_their_own_urls() {
        let ports = [
            MemberPorts { client: 1, peer: 2 },
            MemberPorts { client: 3, peer: 4 },
            MemberPorts { client: 5, peer: 6 },
        ];
        let args = member_args(&spec(System::Keel), 1, &ports, Path::new("/tmp/x/m1"));
        assert_eq!(value_of(&args, "--name"), "m1");
        assert_eq!(value_of(&args, "--data-dir"), "/tmp/x/m1");
        assert_eq!(value_of(&args, "--listen-client-urls"), "http://127.0.0.1:3");
        assert_eq!(value_of(&args, "--initial-advertise-peer-urls"), "http://127.0.0.1:4");
        assert_eq!(
            value_of(&args, "--initial-cluster"),
            "m0=http://127.0.0.1:2,m1=http://127.0.0.1:4,m2=http://127.0.0.1:6"
        );
        assert_eq!(value_of(&args, "--heartbeat-interval"), "100");
        assert_eq!(value_of(&args, "--election-timeout"), "1000");
        assert_eq!(value_of(&args, "--peer-secret-file"), "/tmp/x/keel-peer-secret");
        let etcd = member_args(&spec(System::Etcd), 1, &ports, Path::new("/tmp/x/m1"));
        assert!(!etcd.contains(&"--peer-secret-file".to_string()), "etcd has no such flag");
    }

    #[test]
    fn both_systems_get_the_same_flags_for_a_single_member() {
        let ports = [MemberPorts { client: 1, peer: 2 }];
        let etcd = member_args(&spec(System::Etcd), 0, &ports, Path::new("/d"));
        let keel = member_args(&spec(System::Keel), 0, &ports, Path::new("/d"));
        assert_eq!(etcd, keel);
    }

    #[test]
    fn systems_parse_from_their_names() {
        assert_eq!(System::parse("etcd"), Ok(System::Etcd));
        assert_eq!(System::parse("keel"), Ok(System::Keel));
        assert!(System::parse("zk").is_err());
    }
}
