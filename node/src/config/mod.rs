//! The `keel` command line: etcd's flags, with the same names, defaults and meanings, each also
//! read from a `KEEL_<FLAG>` environment variable (the flag wins).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::limits::{CLIENT_STREAMS_PER_CONNECTION_MAX, REQUEST_BYTES_MAX};

#[derive(Clone, Debug, Parser)]
#[command(name = "keel", version, about = "Keel: a Raft-replicated, etcd-compatible cluster for microservices.")]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "KEEL_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory [default: ${name}.keel].
    #[arg(long, env = "KEEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "KEEL_LISTEN_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: String,

    /// List of this member's client URLs to advertise to the rest of the cluster.
    #[arg(long, env = "KEEL_ADVERTISE_CLIENT_URLS", default_value = "http://127.0.0.1:2379")]
    pub advertise_client_urls: String,

    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "KEEL_LISTEN_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    pub listen_peer_urls: String,

    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "KEEL_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://127.0.0.1:2380")]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(long, env = "KEEL_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "KEEL_INITIAL_CLUSTER_STATE", default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,

    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, env = "KEEL_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "KEEL_MAX_REQUEST_BYTES", default_value_t = REQUEST_BYTES_MAX)]
    pub max_request_bytes: usize,

    /// Maximum concurrent streams that each client connection can have open (etcd 3.5's flag;
    /// etcd's default is unlimited). A client past it waits on its own connection.
    #[arg(long, env = "KEEL_MAX_CONCURRENT_STREAMS", default_value_t = CLIENT_STREAMS_PER_CONNECTION_MAX)]
    pub max_concurrent_streams: u32,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "KEEL_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "KEEL_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// Number of entries a leader keeps after a snapshot, so that a slow follower can catch up
    /// from the log instead of a whole snapshot.
    #[arg(long, env = "KEEL_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5_000)]
    pub experimental_snapshot_catchup_entries: u64,

    /// Duration of the periodic watch progress notification, as a Go duration (e.g. 10m, 30s).
    #[arg(long, env = "KEEL_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_go_duration)]
    pub experimental_watch_progress_notify_interval: Duration,

    /// File holding the cluster's peer secret: every member of a cluster must be given the same
    /// file. Peers prove with it that they belong to the cluster; the peer port refuses everyone
    /// else. Required for a cluster of more than one member; a single member without it makes
    /// its own (<data-dir>/peer-secret). Create one with `head -c 32 /dev/urandom > FILE`.
    #[arg(long, env = "KEEL_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,

    /// etcd's `--auth-token`: `simple` (random tokens every member learns through the log) or
    /// `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|ES256|…,ttl=5m` (signed tokens any
    /// member verifies on its own; a member without priv-key only verifies).
    #[arg(long, env = "KEEL_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// etcd's `--bcrypt-cost` for the password hashes of users (4 to 31).
    #[arg(long, env = "KEEL_BCRYPT_COST", default_value_t = crate::auth::password::BCRYPT_COST_DEFAULT)]
    pub bcrypt_cost: u32,

    /// Path to the client server TLS cert file (for https:// --listen-client-urls).
    #[arg(long, env = "KEEL_CERT_FILE")]
    pub cert_file: Option<PathBuf>,

    /// Path to the client server TLS key file.
    #[arg(long, env = "KEEL_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Enable client cert authentication: a client without a certificate signed by
    /// --trusted-ca-file cannot connect, and with auth enabled the certificate's CN is the user.
    #[arg(long, env = "KEEL_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub client_cert_auth: bool,

    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "KEEL_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Path to the peer server TLS cert file (for https:// peer URLs; also presented to the
    /// other members when connecting to them).
    #[arg(long, env = "KEEL_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,

    /// Path to the peer server TLS key file.
    #[arg(long, env = "KEEL_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,

    /// Enable peer client cert authentication: a peer without a certificate signed by
    /// --peer-trusted-ca-file cannot connect to the peer port at all.
    #[arg(long, env = "KEEL_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub peer_client_cert_auth: bool,

    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "KEEL_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// TEST ONLY, loses data: serve linearizable reads from local state without ReadIndex.
    /// Exists so the fault-injection harness can prove it detects stale reads.
    #[arg(long, hide = true, env = "KEEL_UNSAFE_STALE_READS")]
    pub unsafe_stale_reads: bool,

    /// TEST ONLY, loses data: acknowledge writes before they reach the disk (no fsync, no
    /// write-ahead log), so kill -9 loses acknowledged writes. For the fault-injection harness.
    #[arg(long, hide = true, env = "KEEL_UNSAFE_ACK_BEFORE_FSYNC")]
    pub unsafe_ack_before_fsync: bool,

    /// TEST ONLY, makes this member's state differ from the others': every Put is stored one
    /// version higher than the others store it. For the fault-injection harness's comparison
    /// of replicas (HashKV).
    #[arg(long, hide = true, env = "KEEL_UNSAFE_DIVERGE_VERSIONS")]
    pub unsafe_diverge_versions: bool,

    /// TEST ONLY: open every outgoing peer connection from this local IP (e.g. 127.0.0.3), so
    /// the fault-injection harness's proxies can tell members apart on one loopback interface
    /// and cut a single link.
    #[arg(long, hide = true, env = "KEEL_UNSAFE_PEER_SOURCE_ADDRESS")]
    pub unsafe_peer_source_address: Option<IpAddr>,

    /// FOR HARNESSES: once the member listens, write the addresses it bound to this file (one
    /// `client <ip:port>` or `peer <ip:port>` line per listener), atomically (a temp file
    /// renamed over it), so a harness that passed port 0 learns the ports without a race.
    #[arg(long, hide = true, env = "KEEL_LISTEN_ADDRESSES_FILE")]
    pub listen_addresses_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "KEEL_LOG_LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,

    /// etcd's `--metrics`: basic or extensive. Keel always exports the extensive set (the gRPC
    /// handling-time histograms included); the flag is accepted so that etcd's command lines
    /// and configuration files work unchanged.
    #[arg(long, env = "KEEL_METRICS", default_value = "basic", value_parser = ["basic", "extensive"])]
    pub metrics: String,

    #[command(flatten)]
    pub disk: operations::DiskFlags,

    /// etcd's YAML configuration file: its keys are the flags' names (and etcd's
    /// client-transport-security / peer-transport-security sections); a flag or a KEEL_* variable
    /// wins over the file, the file over the defaults.
    #[arg(long, env = "KEEL_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
}

/// A member's configuration, validated: every URL parsed, every relation between flags checked.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<SocketAddr>,
    pub advertise_peer_urls: Vec<String>,
    /// (name, peer URLs) of every initial member, this one included.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub initial_cluster_state_new: bool,
    pub initial_cluster_token: String,
    pub max_request_bytes: usize,
    /// `--max-concurrent-streams`: HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub watch_progress_notify_interval: Duration,
    /// `--quota-backend-bytes`: `None` when off.
    pub quota_backend_bytes: Option<u64>,
    /// `--min-free-disk-bytes`: 0 when off.
    pub min_free_disk_bytes: u64,
    /// `--auto-compaction-mode` and `--auto-compaction-retention`: `None` when off.
    pub auto_compaction: Option<AutoCompaction>,
    /// Where the cluster's peer secret comes from (`--peer-secret-file`).
    pub peer_secret: PeerSecretSource,
    /// Where to report the bound addresses (`--listen-addresses-file`), if anywhere.
    pub listen_addresses_file: Option<PathBuf>,
    /// How clients' tokens are made and checked (`--auth-token`).
    pub auth_token: crate::auth::options::AuthTokenOptions,
    pub bcrypt_cost: u32,
    /// TLS on the client port (`--listen-client-urls` are https://).
    pub client_tls: Option<crate::tls::TlsFiles>,
    /// The peer TLS files: for the peer port when `listen_peer_https`, and for connections to
    /// https:// peer URLs.
    pub peer_tls: Option<crate::tls::TlsFiles>,
    pub listen_peer_https: bool,
    /// Test-only sabotage; see the flags.
    /// TEST ONLY: the local IP outgoing peer connections are opened from (`None`: the OS chooses).
    pub unsafe_peer_source_address: Option<IpAddr>,
    pub unsafe_stale_reads: bool,
    pub unsafe_ack_before_fsync: bool,
    pub unsafe_diverge_versions: bool,
}

impl Flags {
    /// Checks the flags as etcd does, with a message that names the flag at fault.
    pub fn validate(&self) -> Result<MemberConfig, String> {
        let advertise_peer_urls = split_urls("--initial-advertise-peer-urls", &self.initial_advertise_peer_urls)?;
        let initial_cluster = match &self.initial_cluster {
            Some(spec) => parse_initial_cluster(spec)?,
            // etcd's default is "default=<its default peer URL>", so a member renamed without
            // --initial-cluster is an error there too.
            None => vec![("default".to_string(), advertise_peer_urls.clone())],
        };
        let Some((_, own_urls)) = initial_cluster.iter().find(|(name, _)| *name == self.name) else {
            return Err(format!(
                "couldn't find local name {:?} in the initial cluster configuration (--initial-cluster)",
                self.name
            ));
        };
        if sorted(own_urls) != sorted(&advertise_peer_urls) {
            return Err(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
                self.name,
                own_urls.join(","),
                advertise_peer_urls.join(",")
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err("--max-concurrent-streams must be at least 1".to_string());
        }
        if self.max_request_bytes == 0 || self.max_request_bytes > REQUEST_BYTES_LIMIT_MAX {
            return Err(format!("--max-request-bytes must be between 1 and {REQUEST_BYTES_LIMIT_MAX}"));
        }
        check_raft_timing(self.heartbeat_interval, self.election_timeout)?;
        let progress = self.experimental_watch_progress_notify_interval;
        if progress < WATCH_PROGRESS_INTERVAL_MIN {
            return Err(format!(
                "--experimental-watch-progress-notify-interval must be at least {}ms, got {progress:?}",
                WATCH_PROGRESS_INTERVAL_MIN.as_millis()
            ));
        }
        let peer_secret = match (&self.peer_secret_file, initial_cluster.len()) {
            (Some(path), _) => PeerSecretSource::File(path.clone()),
            (None, 1) => PeerSecretSource::DataDir,
            (None, members) => {
                return Err(format!(
                    "--peer-secret-file is required for a cluster of {members} members: give every member \
                     the same secret file (create one with `head -c 32 /dev/urandom > FILE`), so that \
                     nobody else can speak Raft to the cluster's peer ports"
                ))
            }
        };
        let auth_token = self.auth_token.parse()?;
        let (cost_min, cost_max) = (crate::auth::password::BCRYPT_COST_MIN, crate::auth::password::BCRYPT_COST_MAX);
        if !(cost_min..=cost_max).contains(&self.bcrypt_cost) {
            return Err(format!("--bcrypt-cost must be between {cost_min} and {cost_max}, got {}", self.bcrypt_cost));
        }
        let listen_client = listen_addrs("--listen-client-urls", &self.listen_client_urls)?;
        let client_tls = tls::client_tls(self)?;
        let (peer_tls, listen_peer_https) = tls::peer_tls(self, &initial_cluster)?;
        let advertise_client_urls = split_urls("--advertise-client-urls", &self.advertise_client_urls)?;
        let listen_peer = listen_addrs("--listen-peer-urls", &self.listen_peer_urls)?;
        check_port_zero("--advertise-client-urls", &advertise_client_urls, "--listen-client-urls", &listen_client)?;
        check_port_zero("--initial-advertise-peer-urls", &advertise_peer_urls, "--listen-peer-urls", &listen_peer)?;
        if initial_cluster.len() > 1 && advertise_peer_urls.iter().any(|url| url_port(url) == Some(0)) {
            return Err("--initial-advertise-peer-urls: port 0 is only for a single-member cluster: the other \
                        members of --initial-cluster must know this member's peer port before it starts"
                .into());
        }
        Ok(MemberConfig {
            name: self.name.clone(),
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.keel", self.name))),
            listen_client,
            advertise_client_urls,
            listen_peer,
            advertise_peer_urls,
            initial_cluster,
            initial_cluster_state_new: self.initial_cluster_state == "new",
            initial_cluster_token: self.initial_cluster_token.clone(),
            max_request_bytes: self.max_request_bytes,
            max_concurrent_streams: self.max_concurrent_streams,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_count: self.snapshot_count.max(1),
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            watch_progress_notify_interval: self.experimental_watch_progress_notify_interval,
            quota_backend_bytes: self.disk.quota()?,
            min_free_disk_bytes: self.disk.min_free_disk_bytes,
            auto_compaction: self.disk.auto_compaction()?,
            peer_secret,
            listen_addresses_file: self.listen_addresses_file.clone(),
            auth_token,
            bcrypt_cost: self.bcrypt_cost,
            client_tls,
            peer_tls,
            listen_peer_https,
            unsafe_stale_reads: self.unsafe_stale_reads,
            unsafe_peer_source_address: self.unsafe_peer_source_address,
            unsafe_ack_before_fsync: self.unsafe_ack_before_fsync,
            unsafe_diverge_versions: self.unsafe_diverge_versions,
        })
    }
}

impl MemberConfig {
    /// The configuration with every advertised URL of port 0 given the port its listener got
    /// (`client` and `peer`: the bound addresses, in the order of `listen_client` and
    /// `listen_peer`), in the initial cluster too, so that what the member advertises and the
    /// ID derived from its peer URLs name a port that exists. Validation made sure each such
    /// URL has a port-0 listen URL on its IP.
    pub fn with_bound_ports(mut self, client: &[SocketAddr], peer: &[SocketAddr]) -> MemberConfig {
        let own_peer_urls = self.advertise_peer_urls.clone();
        self.advertise_client_urls = bind_urls(&self.advertise_client_urls, &self.listen_client, client);
        self.advertise_peer_urls = bind_urls(&self.advertise_peer_urls, &self.listen_peer, peer);
        for (_, urls) in &mut self.initial_cluster {
            if sorted(urls) == sorted(&own_peer_urls) {
                *urls = bind_urls(urls, &self.listen_peer, peer);
            }
        }
        self
    }
}

/// `urls` with each port-0 URL given the port bound for the first port-0 listen address on its
/// IP; every other URL unchanged.
fn bind_urls(urls: &[String], listen: &[SocketAddr], bound: &[SocketAddr]) -> Vec<String> {
    urls.iter()
        .map(|url| {
            let Ok(mut parsed) = url::Url::parse(url) else { return url.clone() };
            if parsed.port() != Some(0) {
                return url.clone();
            }
            let port = port_zero_listener(&parsed, listen).and_then(|i| bound.get(i)).map(SocketAddr::port);
            match port.map(|port| parsed.set_port(Some(port))) {
                Some(Ok(())) => parsed.to_string().trim_end_matches('/').to_string(),
                _ => url.clone(),
            }
        })
        .collect()
}

/// Refuses an advertised URL of port 0 that no port-0 listen URL on the same IP can give a
/// real port to: it would advertise a port nobody listens on.
fn check_port_zero(flag: &str, urls: &[String], listen_flag: &str, listen: &[SocketAddr]) -> Result<(), String> {
    for url in urls {
        let Ok(parsed) = url::Url::parse(url) else { continue };
        if parsed.port() != Some(0) {
            continue;
        }
        if port_zero_listener(&parsed, listen).is_none() {
            return Err(format!(
                "{flag}: {url} has port 0, but no {listen_flag} URL on the same IP has port 0 to take the bound \
                 port from"
            ));
        }
    }
    Ok(())
}

/// Which listen address gives a port-0 `url` its port: the first port-0 one on the URL's IP.
fn port_zero_listener(url: &url::Url, listen: &[SocketAddr]) -> Option<usize> {
    let ip = url_ip(url)?;
    listen.iter().position(|addr| addr.port() == 0 && addr.ip() == ip)
}

fn url_port(url: &str) -> Option<u16> {
    url::Url::parse(url).ok()?.port()
}

/// The IP a URL names (`localhost`: 127.0.0.1, as listen URLs take it), if it names one.
fn url_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host_str()? {
        "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
        host => host.trim_start_matches('[').trim_end_matches(']').parse().ok(),
    }
}

/// Where a member finds the cluster's peer secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSecretSource {
    /// `--peer-secret-file`: shared by every member of the cluster.
    File(PathBuf),
    /// A single-member cluster without the flag: a secret of its own, made at first start and
    /// kept in the data dir (a member added later is given that file).
    DataDir,
}

/// The largest `--max-request-bytes` accepted. etcd has no ceiling (it warns above 10 MiB); Keel
/// needs one because a peer message carries whole requests and has a bounded size too.
pub const REQUEST_BYTES_LIMIT_MAX: usize = 64 << 20;

/// etcd's `maxElectionMs`: a longer election timeout is refused ("too long").
const ELECTION_TIMEOUT_MAX_MS: u64 = 50_000;

/// The shortest watch progress interval: each watch stream wakes this often, so a tiny value
/// would spin a core per idle stream (and 0 cannot be a timer period at all).
const WATCH_PROGRESS_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// etcd's checks of the Raft timing flags, plus a heartbeat of at least 1 ms.
fn check_raft_timing(heartbeat_ms: u64, election_ms: u64) -> Result<(), String> {
    if heartbeat_ms == 0 {
        return Err("--heartbeat-interval must be greater than 0".into());
    }
    if election_ms < heartbeat_ms.saturating_mul(5) {
        return Err(format!(
            "--election-timeout[{election_ms}ms] should be at least 5 times as --heartbeat-interval[{heartbeat_ms}ms]"
        ));
    }
    if election_ms > ELECTION_TIMEOUT_MAX_MS {
        return Err(format!(
            "--election-timeout[{election_ms}ms] is too long, and should be set less than {ELECTION_TIMEOUT_MAX_MS}ms"
        ));
    }
    Ok(())
}

/// Parses a Go duration ("10m", "1m30s", "250ms"), as etcd's duration flags take them.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (examples: 10m, 30s, 250ms)");
    let units: [(&str, f64); 7] =
        [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_secs = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let (_, scale) = units.iter().find(|(unit, _)| *unit == &rest[..unit_len]).ok_or_else(invalid)?;
        total_secs += number * scale;
        rest = &rest[unit_len..];
    }
    if total_secs <= 0.0 {
        return Err(format!("duration {text:?} must be greater than 0"));
    }
    Duration::try_from_secs_f64(total_secs).map_err(|_| invalid())
}

fn sorted(urls: &[String]) -> Vec<String> {
    let mut urls = urls.to_vec();
    urls.sort();
    urls
}

/// Parses a comma-separated URL list; each must be http:// or https://host:port.
pub fn split_urls(flag: &str, list: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if urls.is_empty() {
        return Err(format!("{flag} must not be empty"));
    }
    for url in &urls {
        parse_url(flag, url)?;
    }
    Ok(urls)
}

fn parse_url(flag: &str, url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{flag}: invalid URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{flag}: URL scheme must be http or https, got {url:?}"));
    }
    if parsed.port().is_none() || parsed.host_str().is_none() {
        return Err(format!("{flag}: URL {url:?} must have a host and a port"));
    }
    Ok(parsed)
}

/// The socket addresses to bind for a list of listen URLs. `localhost` binds 127.0.0.1.
fn listen_addrs(flag: &str, list: &str) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = Vec::new();
    for url in split_urls(flag, list)? {
        let parsed = parse_url(flag, &url)?;
        let host = match parsed.host_str().unwrap_or_default() {
            "localhost" => "127.0.0.1",
            host => host.trim_start_matches('[').trim_end_matches(']'),
        };
        let ip: std::net::IpAddr =
            host.parse().map_err(|_| format!("{flag}: listen URL {url:?} must name an IP address or localhost"))?;
        addrs.push(SocketAddr::new(ip, parsed.port().unwrap_or_default()));
    }
    Ok(addrs)
}

/// Parses `name=url,name=url2,other=url3` into names with their peer URLs, in order.
pub fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) =
            item.split_once('=').ok_or_else(|| format!("--initial-cluster: {item:?} is not of the form name=url"))?;
        parse_url("--initial-cluster", url)?;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if members.is_empty() {
        return Err("--initial-cluster must not be empty".into());
    }
    let mut all_urls: Vec<&String> = members.iter().flat_map(|(_, urls)| urls).collect();
    all_urls.sort();
    if all_urls.windows(2).any(|w| w[0] == w[1]) {
        return Err("--initial-cluster has duplicate peer URLs".into());
    }
    Ok(members)
}

/// etcd derives a member's ID from its peer URLs and the cluster token; so do we (FNV-1a,
/// stable across builds, unlike std's hasher), so every member computes the same IDs.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut input = sorted(peer_urls).concat();
    input.push_str(cluster_token);
    fnv1a(input.as_bytes()).max(1)
}

/// The cluster ID: derived from the member IDs, as etcd does.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    fnv1a(&bytes).max(1)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

mod file;
mod operations;
mod tls;

pub use file::{fuzz_config_file, parse_flags, FlagsError, CONFIG_FILE_BYTES_MAX};
pub use operations::{AutoCompaction, DiskFlags};

#[cfg(test)]
mod tests;
