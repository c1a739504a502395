//! The black-box test harness: real member processes (`keel`, or etcd 3.4 as the reference)
//! started with etcd's flags on loopback ports reserved for the cluster's life (`ports.rs`) and
//! temp dirs, clients for them, and condition waits with deadlines instead of sleeps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub mod acked;
pub mod auth;
mod cli;
pub mod load;
pub mod ports;
mod probe;
pub mod tls;
pub mod transcript;

pub use cli::*;
pub use ports::ReservedPort;
pub use probe::{connect, grpc_channel, http_get, metric, retry_unavailable, try_connect, wait_for, wait_for_some};

/// Which server a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Keel,
    /// Debian's etcd 3.4, the behaviour Keel must match.
    Etcd,
}

/// Raft timing for tests: fast elections so failover tests finish quickly, still far above
/// loopback latency.
const HEARTBEAT_MS: u64 = 50;
const ELECTION_MS: u64 = 500;

/// How long a cluster may take to elect a leader and answer on every member.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one gRPC call of a test may take before the test gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The `keel` binary built next to this test binary (`scripts/test` builds it first).
pub fn keel_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KEEL_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/keel
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir layout");
    let keel = profile_dir.join("keel");
    assert!(keel.exists(), "{} not found: build the binaries first (scripts/test does)", keel.display());
    keel
}

pub struct TestMember {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl TestMember {
    /// The value this member was started with for `flag` (`--initial-cluster`, …).
    pub fn flag(&self, flag: &str) -> Option<&str> {
        self.args.iter().position(|arg| arg == flag).and_then(|at| self.args.get(at + 1)).map(String::as_str)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The member's stderr so far, for failure messages.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

pub struct TestCluster {
    pub server: Server,
    pub members: Vec<TestMember>,
    binary: PathBuf,
    /// Every member's client and peer port, held until the members are killed (Drop), so a
    /// restarted member finds its ports free and nobody else ever takes them.
    _ports: Vec<ReservedPort>,
    /// The cluster's certificates when it was started with TLS.
    pub tls: Option<ClusterTls>,
    _root: tempfile::TempDir,
}

/// Which of a Keel cluster's ports speak TLS, and whether they require client certificates.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsSetup {
    pub client: bool,
    pub client_cert_auth: bool,
    pub peer: bool,
    pub peer_client_cert_auth: bool,
}

/// A TLS cluster's certificates: the CA, the members' certificate, and the harness's own client
/// certificate (CN `keel-harness`, a user that never exists).
pub struct ClusterTls {
    pub certs: tls::TestCerts,
    pub setup: TlsSetup,
    pub harness: tls::CertFiles,
}

impl ClusterTls {
    /// etcd_client options trusting the cluster's CA and presenting the harness's certificate.
    pub fn options(&self) -> etcd_client::TlsOptions {
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(self.certs.ca_pem()))
            .identity(self.harness.identity())
    }

    /// etcdctl's flags for the cluster's CA and a client certificate.
    pub fn etcdctl_args(&self, client: &tls::CertFiles) -> Vec<String> {
        vec![
            format!("--cacert={}", self.certs.ca.display()),
            format!("--cert={}", client.cert.display()),
            format!("--key={}", client.key.display()),
        ]
    }
}

impl TestCluster {
    /// Starts `size` members of `server` and waits until every one answers with a leader.
    pub async fn start(server: Server, size: usize) -> TestCluster {
        let cluster = Self::spawn(server, size);
        cluster.wait_ready().await;
        cluster
    }

    /// Starts the processes without waiting for them.
    pub fn spawn(server: Server, size: usize) -> TestCluster {
        Self::spawn_with(server, size, &[])
    }

    /// Starts `size` members with `extra_args` added to every member's flags, and waits.
    pub async fn start_with(server: Server, size: usize, extra_args: &[&str]) -> TestCluster {
        let cluster = Self::spawn_with(server, size, extra_args);
        cluster.wait_ready().await;
        cluster
    }

    /// Starts `size` members speaking TLS as `setup` says (certificates made now, etcd's
    /// flags), and waits.
    pub async fn start_tls(server: Server, size: usize, setup: TlsSetup, extra_args: &[&str]) -> TestCluster {
        let cluster = Self::spawn_inner(server, size, extra_args, Some(setup));
        cluster.wait_ready().await;
        cluster
    }

    /// Starts the processes, each with `extra_args` too, without waiting for them.
    pub fn spawn_with(server: Server, size: usize, extra_args: &[&str]) -> TestCluster {
        Self::spawn_inner(server, size, extra_args, None)
    }

    /// A cluster's members, ports and data dirs, none started: for a test that fills the data
    /// dirs first (a restored backup), then calls `start_member` and `wait_ready`.
    pub fn prepare(server: Server, size: usize, extra_args: &[&str]) -> TestCluster {
        Self::prepare_inner(server, size, extra_args, None)
    }

    fn spawn_inner(server: Server, size: usize, extra_args: &[&str], tls: Option<TlsSetup>) -> TestCluster {
        let mut cluster = Self::prepare_inner(server, size, extra_args, tls);
        for i in 0..size {
            cluster.start_member(i);
        }
        cluster
    }

    fn prepare_inner(server: Server, size: usize, extra_args: &[&str], tls: Option<TlsSetup>) -> TestCluster {
        let root = tempfile::tempdir().expect("temp dir");
        let tls = tls.map(|setup| {
            let certs = tls::TestCerts::generate(&root.path().join("certs"), "cluster");
            let harness = certs.issue("harness", "keel-harness");
            ClusterTls { certs, setup, harness }
        });
        let (client_scheme, peer_scheme) = match &tls {
            Some(tls) => (scheme(tls.setup.client), scheme(tls.setup.peer)),
            None => ("http", "http"),
        };
        let binary = match server {
            Server::Keel => keel_binary(),
            Server::Etcd => PathBuf::from("etcd"),
        };
        let reserved: Vec<ReservedPort> = (0..2 * size).map(|_| ReservedPort::new()).collect();
        let ports: Vec<(u16, u16)> = reserved.chunks(2).map(|pair| (pair[0].port(), pair[1].port())).collect();
        let peer_secret = root.path().join("peer-secret");
        write_peer_secret(&peer_secret);
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}={peer_scheme}://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let name = format!("m{i}");
                let client_url = format!("{client_scheme}://127.0.0.1:{client}");
                let peer_url = format!("{peer_scheme}://127.0.0.1:{peer}");
                let data_dir = root.path().join(&name);
                let mut args: Vec<String> = vec![
                    "--name".into(),
                    name.clone(),
                    "--data-dir".into(),
                    data_dir.display().to_string(),
                    "--listen-client-urls".into(),
                    client_url.clone(),
                    "--advertise-client-urls".into(),
                    client_url.clone(),
                    "--listen-peer-urls".into(),
                    peer_url.clone(),
                    "--initial-advertise-peer-urls".into(),
                    peer_url.clone(),
                    "--initial-cluster".into(),
                    initial_cluster.clone(),
                    "--initial-cluster-token".into(),
                    "keel-test".into(),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--heartbeat-interval".into(),
                    HEARTBEAT_MS.to_string(),
                    "--election-timeout".into(),
                    ELECTION_MS.to_string(),
                ];
                if server == Server::Keel && size > 1 {
                    args.extend(["--peer-secret-file".into(), peer_secret.display().to_string()]);
                }
                if let Some(tls) = &tls {
                    args.extend(tls_flags(tls));
                }
                args.extend(extra_args.iter().map(|a| a.to_string()));
                let log_path = root.path().join(format!("{name}.log"));
                TestMember { name, client_url, peer_url, data_dir, log_path, args, child: None }
            })
            .collect();
        TestCluster { server, members, binary, _ports: reserved, tls, _root: root }
    }

    /// A new member slot, not started: fresh ports and an empty data dir, the same flags as
    /// member 0 but its own name and URLs, `--initial-cluster` listing the members so far and
    /// itself, and `--initial-cluster-state existing`: the member an operator starts after
    /// `etcdctl member add`. Answers its index.
    pub fn add_member_slot(&mut self) -> usize {
        assert!(self.tls.is_none(), "add_member_slot: plain-text clusters only");
        let (client, peer) = (ReservedPort::new(), ReservedPort::new());
        let i = self.members.len();
        let name = format!("m{i}");
        let client_url = format!("http://127.0.0.1:{}", client.port());
        let peer_url = format!("http://127.0.0.1:{}", peer.port());
        let data_dir = self._root.path().join(&name);
        let initial_cluster = format!(
            "{},{name}={peer_url}",
            self.members[0].flag("--initial-cluster").expect("member 0 has --initial-cluster")
        );
        let replacements = [
            ("--name", name.clone()),
            ("--data-dir", data_dir.display().to_string()),
            ("--listen-client-urls", client_url.clone()),
            ("--advertise-client-urls", client_url.clone()),
            ("--listen-peer-urls", peer_url.clone()),
            ("--initial-advertise-peer-urls", peer_url.clone()),
            ("--initial-cluster", initial_cluster),
            ("--initial-cluster-state", "existing".to_string()),
        ];
        let mut args = self.members[0].args.clone();
        for (flag, value) in replacements {
            let at = args.iter().position(|arg| arg == flag).unwrap_or_else(|| panic!("member 0 has no {flag}"));
            args[at + 1] = value;
        }
        let log_path = self._root.path().join(format!("{name}.log"));
        self.members.push(TestMember { name, client_url, peer_url, data_dir, log_path, args, child: None });
        self._ports.extend([client, peer]);
        i
    }

    /// The cluster's peer secret file (what `--peer-secret-file` names on a Keel cluster).
    pub fn peer_secret_path(&self) -> PathBuf {
        self._root.path().join("peer-secret")
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// (Re)starts member `i` on its data dir with its original flags.
    pub fn start_member(&mut self, i: usize) {
        let (binary, args) = (self.binary.clone(), self.members[i].args.clone());
        self.spawn_member(i, &binary, &args);
    }

    /// (Re)starts member `i` as `start_member` does, but unable to write any file past `bytes`:
    /// writes beyond fail with EFBIG (SIGXFSZ is ignored, so they fail rather than kill), as
    /// they would on a full disk, without needing root to fill one. Through `sh` (`trap`,
    /// `ulimit -f`, then `exec`), so the member keeps the pid the harness knows.
    pub fn start_member_with_file_size_limit(&mut self, i: usize, bytes: u64) {
        // POSIX `ulimit -f` counts 512-byte blocks.
        let blocks = bytes.div_ceil(512).to_string();
        let binary = self.binary.display().to_string();
        let mut prefix: Vec<String> =
            vec!["-c".into(), r#"trap '' XFSZ; ulimit -f "$1"; shift; exec "$@""#.into(), "sh".into(), blocks, binary];
        prefix.extend(self.members[i].args.iter().cloned());
        self.spawn_member(i, Path::new("sh"), &prefix);
    }

    fn spawn_member(&mut self, i: usize, program: &Path, args: &[String]) {
        let member = &mut self.members[i];
        assert!(member.child.is_none(), "{} is already running", member.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&member.log_path).expect("log file");
        let child = Command::new(program)
            .args(args)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        member.child = Some(child);
    }

    /// Sets `flag` of member `i` to `value` for its next start (`--initial-cluster-state
    /// existing` for a member that rejoins with an empty data dir); adds it if absent.
    pub fn set_member_flag(&mut self, i: usize, flag: &str, value: &str) {
        let args = &mut self.members[i].args;
        match args.iter().position(|arg| arg == flag) {
            Some(at) if at + 1 < args.len() => args[at + 1] = value.to_string(),
            _ => args.extend([flag.to_string(), value.to_string()]),
        }
    }

    /// Waits up to `timeout` for member `i` to exit by itself and returns how it ended; a member
    /// still running then is killed (-9) and the answer is an error.
    pub async fn wait_exit(&mut self, i: usize, timeout: Duration) -> Result<std::process::ExitStatus, String> {
        let mut child = self.members[i].child.take().expect("member running");
        let exited = wait_for_some(timeout, "the member to exit by itself", || {
            let status = child.try_wait().expect("wait for member");
            async move { status }
        })
        .await;
        if exited.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        exited.map_err(|e| format!("{}: {e}", self.members[i].name))
    }

    /// kill -9: no shutdown, no flush, exactly a crash.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the member stops answering, its connections stay open (a partition, to the
    /// others), until `resume`.
    pub fn pause(&self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
    }

    pub fn resume(&self, i: usize) {
        self.signal(i, Signal::SIGCONT);
    }

    fn signal(&self, i: usize, signal: Signal) {
        let child = self.members[i].child.as_ref().expect("member running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        kill(pid, signal).expect("send a signal");
    }

    /// SIGTERM and wait: a clean stop.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.members[i].child.take().expect("member running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
        child.wait().expect("wait for member")
    }

    /// SIGTERM, and wait at most `timeout` for a clean stop; a member still running then is
    /// killed (-9) and the answer is an error, so a hung shutdown fails a test instead of
    /// hanging it.
    pub async fn terminate_within(&mut self, i: usize, timeout: Duration) -> Result<std::process::ExitStatus, String> {
        let child = self.members[i].child.as_ref().expect("member running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
        self.wait_exit(i, timeout).await
    }

    /// A client that knows every running member's endpoint.
    pub async fn client(&self) -> Client {
        let endpoints: Vec<String> =
            self.members.iter().filter(|m| m.is_running()).map(|m| m.client_url.clone()).collect();
        self.connect(&endpoints).await
    }

    /// A client of `endpoints` with this cluster's TLS options (once one connects).
    pub async fn connect(&self, endpoints: &[String]) -> Client {
        wait_for_some(READY_TIMEOUT, "a client connection", || async { self.try_connect(endpoints).await.ok() })
            .await
            .unwrap_or_else(|e| panic!("{e}: {endpoints:?}"))
    }

    /// One attempt at a client of `endpoints` with this cluster's TLS options.
    pub async fn try_connect(&self, endpoints: &[String]) -> Result<Client, etcd_client::Error> {
        let mut options = probe::connect_options();
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.options());
        }
        Client::connect(endpoints, Some(options)).await
    }

    /// A client bound to member `i` only.
    pub async fn member_client(&self, i: usize) -> Client {
        self.connect(&[self.members[i].client_url.clone()]).await
    }

    /// Waits until every running member reports the same leader and serves a linearizable read.
    pub async fn wait_ready(&self) {
        let running: Vec<usize> = (0..self.members.len()).filter(|i| self.members[*i].is_running()).collect();
        wait_for(READY_TIMEOUT, "every member to see a leader and serve reads", || async {
            let mut leaders = Vec::new();
            for &i in &running {
                let Ok(mut client) = self.try_connect(&[self.members[i].client_url.clone()]).await else {
                    return false;
                };
                let Ok(status) = client.status().await else { return false };
                if status.leader() == 0 || client.get("ready-probe", None).await.is_err() {
                    return false;
                }
                leaders.push(status.leader());
            }
            leaders.windows(2).all(|w| w[0] == w[1])
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.all_logs()));
    }

    /// The index of the member that is leader now, as the members report it.
    pub async fn leader(&self) -> usize {
        wait_for_some(READY_TIMEOUT, "a leader", || async {
            for (i, member) in self.members.iter().enumerate().filter(|(_, m)| m.is_running()) {
                let Ok(mut client) = self.try_connect(std::slice::from_ref(&member.client_url)).await else { continue };
                let Ok(status) = client.status().await else { continue };
                if status.leader() != 0 && status.leader() == status.header().map_or(0, |h| h.member_id()) {
                    return Some(i);
                }
            }
            None
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.all_logs()))
    }

    pub fn all_logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {} ---\n{}", m.name, tail(&m.logs(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Writes a cluster's peer secret (`--peer-secret-file`): random bytes, as hex.
pub fn write_peer_secret(path: &Path) {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded from the OS's randomness: enough for a test cluster's secret.
    let secret: String = (0..4).map(|i| format!("{:016x}", RandomState::new().hash_one(i))).collect();
    std::fs::write(path, secret).expect("write the peer secret");
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// The members' TLS flags, etcd's names.
fn tls_flags(tls: &ClusterTls) -> Vec<String> {
    let (member, ca) = (&tls.certs.member, &tls.certs.ca);
    let mut flags = Vec::new();
    if tls.setup.client {
        flags.extend([
            format!("--cert-file={}", member.cert.display()),
            format!("--key-file={}", member.key.display()),
            format!("--trusted-ca-file={}", ca.display()),
            format!("--client-cert-auth={}", tls.setup.client_cert_auth),
        ]);
    }
    if tls.setup.peer {
        flags.extend([
            format!("--peer-cert-file={}", member.cert.display()),
            format!("--peer-key-file={}", member.key.display()),
            format!("--peer-trusted-ca-file={}", ca.display()),
            format!("--peer-client-cert-auth={}", tls.setup.peer_client_cert_auth),
        ]);
    }
    flags
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
