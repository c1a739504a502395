//! A cluster of real `keel` processes on 127.0.0.1, with the faults the nemesis can inject:
//! kill -9 and restart, SIGSTOP and SIGCONT, and cutting a member's inbound peer links.
//!
//! This module starts, signals and stops processes; it never talks to a member's client API
//! except to ask whether it is ready, and it decides no schedule.
//!
//! # What a partition cuts
//!
//! Every member listens on its own peer port P but advertises a proxy port X (in
//! `--initial-advertise-peer-urls` and `--initial-cluster`, so member IDs are the same as
//! without proxies), and the harness runs one [`Proxy`] from X to P. Member `i` opens its
//! peer connections from its own loopback address [`source_ip`]`(i)` (the hidden flag
//! `--unsafe-peer-source-address`), so B's proxy knows which member is calling.
//! [`Cluster::cut`]`(A, B)` makes B's proxy close every connection from A, now and until
//! [`Cluster::heal_links`]. That removes:
//! - every RPC A initiates towards B (AppendEntries, Vote, snapshots, forwarded client
//!   requests) *and its response*, which returns on the same connection;
//! - nothing B initiates towards A: that goes through A's proxy.
//!
//! So `cut(A, B)` alone is a one-way partition ("A cannot reach B", a firewall dropping A's
//! connection attempts); `cut(A, B)` with `cut(B, A)` is a full partition of that pair. Client
//! traffic is never cut: clients talk to the client ports directly.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_client::{Client, ConnectOptions, StatusResponse};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::proxy::Proxy;
use crate::tls::{Endpoints, TlsFiles, CERTIFICATE_USER};

/// Raft timing passed to every member: short, so faults lead to elections within a run.
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
pub const ELECTION_TIMEOUT_MS: u64 = 500;
/// Interval between two readiness probes of a member.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Each readiness probe's own connect and request timeout.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The key a readiness probe reads; outside the workload's keys.
const READY_PROBE_KEY: &str = "jepsen-ready";
/// How long a graceful stop (SIGTERM) may take before the member is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Each leader query's own timeout per member: a paused member never answers.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// A membership change waits for its commit and for the receiving member to apply it.
const MEMBER_CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long adding a replaced member back is retried (a leader election, an unhealthy
/// cluster right after another fault) before the run fails.
const MEMBER_ADD_PATIENCE: Duration = Duration::from_secs(30);
/// Members at most: each needs its own loopback source address, 127.0.0.2 up.
pub const MEMBERS_MAX: usize = 9;

/// The loopback address member `index` opens its peer connections from: 127.0.0.2 for n0,
/// 127.0.0.3 for n1, and so on (127.0.0.1 stays for everything else).
pub fn source_ip(index: usize) -> IpAddr {
    assert!(index < MEMBERS_MAX, "member index {index} has no source address");
    // The assertion keeps it far below 255.
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + index as u8))
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: usize,
    pub keel_bin: PathBuf,
    /// Where each member's log `n{i}.log` goes.
    pub log_dir: PathBuf,
    /// Extra flags for every member (the sabotage switches).
    pub extra_member_args: Vec<String>,
    /// Extra flags for member n0 only (a sabotage that makes one replica differ).
    pub first_member_args: Vec<String>,
    /// TLS on both ports, certificates required (`crate::tls`).
    pub tls: Option<TlsFiles>,
}

/// The running members; every process is killed when this is dropped.
pub struct Cluster {
    members: Vec<Member>,
    /// The members' client URLs, with the run's TLS if it has any.
    endpoints: Endpoints,
    keel_bin: PathBuf,
    /// Every member's client and peer port, held for the cluster's life. Declared after
    /// `members`, so the members (killed on drop) are gone before the ports are released.
    _ports: Vec<ReservedPort>,
    // Held for its Drop: removes the members' data dirs.
    _data_root: tempfile::TempDir,
}

struct Member {
    name: String,
    client_url: String,
    args: Vec<OsString>,
    log_path: PathBuf,
    proxy: Proxy,
    /// `None` while killed.
    process: Option<Child>,
    paused: bool,
}

impl Cluster {
    /// Starts `config.nodes` members; it does not wait for them to be ready (see
    /// [`Cluster::wait_ready`]).
    pub async fn start(config: &ClusterConfig) -> anyhow::Result<Cluster> {
        if config.nodes > MEMBERS_MAX {
            bail!("at most {MEMBERS_MAX} members");
        }
        if !config.keel_bin.is_file() {
            bail!(
                "keel binary not found at {} (build it with `cargo build -p keel-node --bins`, or pass --keel-bin)",
                config.keel_bin.display()
            );
        }
        let data_root =
            tempfile::Builder::new().prefix("keel-jepsen-").tempdir().context("creating the members' data root")?;

        // Reserved for the cluster's life (see `ReservedPort`), so a killed member restarts on
        // its own ports and nothing else takes them meanwhile.
        let reserved = (0..2 * config.nodes)
            .map(|_| ReservedPort::try_new())
            .collect::<std::io::Result<Vec<_>>>()
            .context("reserving loopback ports")?;
        let ports: Vec<(u16, u16)> = reserved.chunks(2).map(|pair| (pair[0].port(), pair[1].port())).collect();

        let mut proxies = Vec::with_capacity(config.nodes);
        for &(_, peer_port) in &ports {
            let target = SocketAddr::from((Ipv4Addr::LOCALHOST, peer_port));
            proxies.push(Proxy::bind(target).await.context("starting a peer proxy")?);
        }
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let initial_cluster = proxies
            .iter()
            .enumerate()
            .map(|(index, proxy)| format!("n{index}={scheme}://{}", proxy.listen_addr()))
            .collect::<Vec<_>>()
            .join(",");

        let peer_secret = data_root.path().join("peer-secret");
        write_peer_secret(&peer_secret).context("writing the peer secret")?;
        let mut members = Vec::with_capacity(config.nodes);
        for (index, (proxy, (client_port, peer_port))) in proxies.into_iter().zip(ports).enumerate() {
            let name = format!("n{index}");
            let client_url = format!("{scheme}://127.0.0.1:{client_port}");
            let peer_url = format!("{scheme}://127.0.0.1:{peer_port}");
            let advertised_peer_url = format!("{scheme}://{}", proxy.listen_addr());
            let data_dir = data_root.path().join(&name);
            let mut args: Vec<OsString> = vec![
                "--name".into(),
                name.clone().into(),
                "--data-dir".into(),
                data_dir.into(),
                "--listen-client-urls".into(),
                client_url.clone().into(),
                "--advertise-client-urls".into(),
                client_url.clone().into(),
                "--listen-peer-urls".into(),
                peer_url.into(),
                "--initial-advertise-peer-urls".into(),
                advertised_peer_url.into(),
                "--initial-cluster".into(),
                initial_cluster.clone().into(),
                "--initial-cluster-token".into(),
                "jepsen".into(),
                "--heartbeat-interval".into(),
                HEARTBEAT_INTERVAL_MS.to_string().into(),
                "--election-timeout".into(),
                ELECTION_TIMEOUT_MS.to_string().into(),
                "--unsafe-peer-source-address".into(),
                source_ip(index).to_string().into(),
                "--peer-secret-file".into(),
                peer_secret.clone().into(),
            ];
            if let Some(tls) = &config.tls {
                args.extend(tls.member_flags().into_iter().map(OsString::from));
            }
            args.extend(config.extra_member_args.iter().map(OsString::from));
            if index == 0 {
                args.extend(config.first_member_args.iter().map(OsString::from));
            }
            members.push(Member {
                log_path: config.log_dir.join(format!("{name}.log")),
                name,
                client_url,
                args,
                proxy,
                process: None,
                paused: false,
            });
        }
        let urls = members.iter().map(|member| member.client_url.clone()).collect();
        let endpoints = match &config.tls {
            Some(tls) => Endpoints::with_tls(urls, tls)?,
            None => Endpoints::plain(urls),
        };
        let mut cluster =
            Cluster { members, endpoints, keel_bin: config.keel_bin.clone(), _ports: reserved, _data_root: data_root };
        for index in 0..cluster.members.len() {
            cluster.restart(index)?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn name(&self, index: usize) -> &str {
        &self.members[index].name
    }

    /// The members' client URLs and how to reach them.
    pub fn client_urls(&self) -> Endpoints {
        self.endpoints.clone()
    }

    /// etcd's path to a locked-down cluster: a root user with the root role, then auth on.
    /// Clients are root by their certificate's CN from then on (so `--auth` needs TLS).
    pub async fn enable_auth(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.endpoints.has_tls(), "--auth needs --tls: the clients are root by their certificate");
        let endpoints = self.client_urls();
        let options = endpoints.etcd_options(ConnectOptions::new().with_connect_timeout(READY_PROBE_TIMEOUT));
        let mut client = Client::connect(endpoints.urls(), Some(options)).await?;
        // Never used: the clients are root by their certificate.
        let password = random_hex();
        client.user_add(CERTIFICATE_USER, password, None).await.context("adding root")?;
        client.user_grant_role(CERTIFICATE_USER, "root").await.context("granting root the root role")?;
        client.auth_enable().await.context("enabling auth")?;
        Ok(())
    }

    /// Waits until every member answers a linearizable `get`, which needs a leader that a
    /// quorum follows.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let endpoints = self.client_urls();
        for member in &self.members {
            loop {
                if probe(&endpoints, &member.client_url).await.is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "member {} ({}) did not answer a linearizable get within {timeout:?}; see {}",
                        member.name,
                        member.client_url,
                        member.log_path.display()
                    );
                }
                tokio::time::sleep(READY_POLL_INTERVAL).await;
            }
        }
        Ok(())
    }

    /// kill -9: no chance to flush or fsync anything. A no-op if already killed.
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let member = &mut self.members[index];
        member.paused = false;
        if let Some(mut process) = member.process.take() {
            // SIGKILL also ends a stopped process.
            process.start_kill().with_context(|| format!("killing {}", member.name))?;
            process.wait().await.with_context(|| format!("reaping {}", member.name))?;
        }
        Ok(())
    }

    /// Starts the member again on its data dir, with the same flags. A no-op if running.
    pub fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let keel_bin = &self.keel_bin;
        let member = &mut self.members[index];
        if member.process.is_some() {
            return Ok(());
        }
        let log = open_log(&member.log_path)?;
        let mut command = Command::new(keel_bin);
        command
            .args(&member.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        // The member reads KEEL_* variables as flags; the harness's own environment must not
        // leak into the cluster it tests.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KEEL_") {
                command.env_remove(name);
            }
        }
        let process = command.spawn().with_context(|| format!("starting {} ({})", member.name, keel_bin.display()))?;
        member.process = Some(process);
        member.paused = false;
        Ok(())
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing. A no-op unless running.
    pub fn pause(&mut self, index: usize) -> anyhow::Result<()> {
        self.signal(index, Signal::SIGSTOP)?;
        self.members[index].paused = true;
        Ok(())
    }

    /// SIGCONT. A no-op unless paused.
    pub fn resume(&mut self, index: usize) -> anyhow::Result<()> {
        if self.members[index].paused {
            self.signal(index, Signal::SIGCONT)?;
            self.members[index].paused = false;
        }
        Ok(())
    }

    /// Graceful stop: SIGTERM, then SIGKILL if the member is still running after
    /// [`STOP_TIMEOUT`]. A no-op if already stopped.
    pub async fn stop(&mut self, index: usize) -> anyhow::Result<()> {
        self.resume(index)?;
        self.signal(index, Signal::SIGTERM)?;
        let member = &mut self.members[index];
        if let Some(process) = &mut member.process {
            if tokio::time::timeout(STOP_TIMEOUT, process.wait()).await.is_err() {
                tracing::warn!(member = %member.name, "no exit {STOP_TIMEOUT:?} after SIGTERM; killing it");
            }
        }
        self.kill(index).await
    }

    /// Removes member `index` from the cluster (MemberRemove through the others), kills it and
    /// wipes its data dir. `Err` when the cluster refused (then nothing changed).
    pub async fn remove_member(&mut self, index: usize) -> anyhow::Result<()> {
        let mut client = self.client_of_others(index).await?;
        let id = self.member_id(&mut client, index).await?;
        client.member_remove(id).await.with_context(|| format!("removing {}", self.members[index].name))?;
        // The machine is gone, as in an operator's replacement (a removed member would stop by
        // itself too, once it notices: the nemesis does not wait for that).
        self.kill(index).await?;
        let data_dir = self.flag(index, "--data-dir").context("no --data-dir")?;
        match std::fs::remove_dir_all(&data_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("wiping {}", data_dir.display())),
        }
        Ok(())
    }

    /// Adds member `index` back (MemberAdd with its peer URL, retried while the cluster
    /// refuses, e.g. while it is still electing a leader) and starts it on its empty data dir
    /// as a new member of an existing cluster.
    pub async fn add_member_back(&mut self, index: usize) -> anyhow::Result<()> {
        let peer_url = self.flag(index, "--initial-advertise-peer-urls").context("no peer URL")?;
        let peer_url = peer_url.to_string_lossy().into_owned();
        let deadline = Instant::now() + MEMBER_ADD_PATIENCE;
        loop {
            let added = match self.client_of_others(index).await {
                Ok(mut client) => {
                    client.member_add([peer_url.as_str()], None).await.map(drop).map_err(anyhow::Error::from)
                }
                Err(error) => Err(error),
            };
            match added {
                Ok(()) => break,
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(member = %self.members[index].name, "adding back: {error:#}; retrying");
                    tokio::time::sleep(READY_POLL_INTERVAL).await;
                }
                Err(error) => return Err(error).context(format!("adding {} back", self.members[index].name)),
            }
        }
        let args = &mut self.members[index].args;
        if !args.iter().any(|arg| arg == "--initial-cluster-state") {
            args.extend(["--initial-cluster-state".into(), "existing".into()]);
        }
        self.restart(index)
    }

    /// An etcd client over every member but `index`.
    async fn client_of_others(&self, index: usize) -> anyhow::Result<Client> {
        let urls: Vec<String> = (0..self.members.len())
            .filter(|other| *other != index)
            .map(|other| self.members[other].client_url.clone())
            .collect();
        let options = ConnectOptions::new().with_connect_timeout(STATUS_TIMEOUT).with_timeout(MEMBER_CHANGE_TIMEOUT);
        Ok(Client::connect(urls, Some(self.endpoints.etcd_options(options))).await?)
    }

    /// Member `index`'s ID, by its name in the member list.
    async fn member_id(&self, client: &mut Client, index: usize) -> anyhow::Result<u64> {
        let members = client.member_list().await?;
        let name = &self.members[index].name;
        members
            .members()
            .iter()
            .find(|m| m.name() == name)
            .map(|m| m.id())
            .with_context(|| format!("{name} is not listed"))
    }

    /// The value member `index` was started with for `flag`.
    fn flag(&self, index: usize, flag: &str) -> Option<PathBuf> {
        let args = &self.members[index].args;
        let at = args.iter().position(|arg| arg == flag)?;
        args.get(at + 1).map(PathBuf::from)
    }

    /// Cuts the directed link `from` → `to`: `from` can no longer reach `to` (see the module
    /// doc for exactly what that removes).
    pub fn cut(&self, from: usize, to: usize) {
        self.members[to].proxy.block_from(source_ip(from));
    }

    /// Restores every link.
    pub fn heal_links(&self) {
        for member in &self.members {
            member.proxy.heal();
        }
    }

    /// The member every answering member with the highest term calls leader, if any. Asks
    /// every member (a killed or paused one does not answer).
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = vec![None; self.members.len()];
        let mut best: Option<(u64, u64)> = None;
        let endpoints = self.client_urls();
        for (index, member) in self.members.iter().enumerate() {
            let asked = status(&endpoints, &member.client_url);
            let Ok(Ok(status)) = tokio::time::timeout(STATUS_TIMEOUT, asked).await else {
                continue;
            };
            ids[index] = status.header().map(|header| header.member_id());
            if status.leader() != 0 && best.is_none_or(|(term, _)| status.raft_term() > term) {
                best = Some((status.raft_term(), status.leader()));
            }
        }
        let (_, leader) = best?;
        ids.iter().position(|id| *id == Some(leader))
    }

    /// Undoes every fault: resumes paused members, restores links, restarts killed members,
    /// and restarts members that exited on their own. Returns a line per such exit: with no
    /// nemesis killing it, a member that exits has crashed, and that is worth reporting.
    pub fn heal(&mut self) -> anyhow::Result<Vec<String>> {
        let mut exits = Vec::new();
        self.heal_links();
        for index in 0..self.members.len() {
            self.resume(index)?;
            let member = &mut self.members[index];
            if let Some(process) = &mut member.process {
                if let Some(status) = process.try_wait()? {
                    exits.push(format!(
                        "{} exited on its own ({status}); see {}",
                        member.name,
                        member.log_path.display()
                    ));
                    member.process = None;
                }
            }
            self.restart(index)?;
        }
        Ok(exits)
    }

    fn signal(&self, index: usize, signal: Signal) -> anyhow::Result<()> {
        let member = &self.members[index];
        let Some(pid) = member.process.as_ref().and_then(Child::id) else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        kill(pid, signal).with_context(|| format!("sending {signal} to {}", member.name))?;
        Ok(())
    }
}

// A loopback port held for a cluster's whole life; the rules are in the file itself.
#[path = "../../tests/src/ports.rs"]
#[allow(dead_code)]
mod ports;
use ports::ReservedPort;

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))
}

async fn probe(endpoints: &Endpoints, client_url: &str) -> anyhow::Result<()> {
    let options = ConnectOptions::new().with_connect_timeout(READY_PROBE_TIMEOUT).with_timeout(READY_PROBE_TIMEOUT);
    let options = endpoints.etcd_options(options);
    let mut client = Client::connect([client_url], Some(options)).await?;
    client.get(READY_PROBE_KEY, None).await?;
    Ok(())
}

async fn status(endpoints: &Endpoints, client_url: &str) -> anyhow::Result<StatusResponse> {
    let options = ConnectOptions::new().with_connect_timeout(STATUS_TIMEOUT).with_timeout(STATUS_TIMEOUT);
    let options = endpoints.etcd_options(options);
    let mut client = Client::connect([client_url], Some(options)).await?;
    Ok(client.status().await?)
}

/// Writes the cluster's shared peer secret (`--peer-secret-file`): random hex.
fn write_peer_secret(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(path, random_hex())
}

/// 64 random hex digits.
fn random_hex() -> String {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS's randomness: enough for a test cluster's secrets.
    (0..4).map(|i| format!("{:016x}", RandomState::new().hash_one(i))).collect()
}
