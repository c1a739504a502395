//! `keel gateway`'s command line: where the cluster is, where to listen, and the gateway's
//! limits. Everything else (routes, services) comes from the cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use keel_client::auth::layers::TokenSource;
use keel_client::auth::{Auth, GrpcAuth};
use keel_client::config::GrpcConfig;
use keel_client::registry::{GrpcRegistry, Registry, Strategy};
use keel_client::{ConnectOptions, Tls};

use super::identity::Identity;
use super::{Mode, Options, Sources};

/// How often the gateway's own access token is renewed.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// More worker threads than this cannot be configured.
const WORKERS_LIMIT: usize = 256;

/// A body larger than this cannot be configured: the gateway holds a body in memory.
const MAX_BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// `keel gateway` and `keel proxy` take the same flags.
#[derive(Debug, Parser)]
#[command(
    name = "keel gateway",
    about = "micro's API gateway (keel gateway: HTTP/JSON to gRPC) and proxy (keel proxy: gRPC through) over Keel's registry"
)]
pub struct Flags {
    /// Cluster members to follow the registry on, comma-separated.
    #[arg(long, env = "KEEL_ENDPOINTS", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Verify https:// members with this CA bundle (PEM).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Check every caller: its bearer token (micro's access token) and the cluster's rules for
    /// `service:<name>:<endpoint>` (401 without an account, 403 without a rule).
    #[arg(long)]
    pub auth: bool,
    /// The gateway's own account, to read the registry when the cluster's auth is on.
    #[arg(long, env = "KEEL_AUTH_ID", requires = "auth_secret")]
    pub auth_id: Option<String>,
    /// The secret of --auth-id (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "KEEL_AUTH_SECRET", hide_env_values = true, requires = "auth_id")]
    pub auth_secret: Option<String>,
    /// Where to serve HTTP (port 0: any free port, printed on start); default
    /// 127.0.0.1:8080 for the gateway, 127.0.0.1:8081 for the proxy.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Prefix of the services micro's rule names (`<namespace>.<service>`); a request's
    /// Micro-Namespace header overrides it.
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// How a node of a service is chosen.
    #[arg(long, value_enum, default_value_t = SelectorFlag::RoundRobin)]
    pub selector: SelectorFlag,
    /// The largest request body accepted (413 past it).
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=MAX_BODY_BYTES_LIMIT as u64))]
    pub max_body_bytes: u64,
    /// How long a client may take to send its body, in milliseconds (408 past it).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub body_timeout_ms: u64,
    /// How long a service may take to answer, in milliseconds (504 past it).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout_ms: u64,
    /// Threads serving requests, each with its own single-threaded runtime [default: one per
    /// core].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=WORKERS_LIMIT as u64))]
    pub workers: Option<u64>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SelectorFlag {
    RoundRobin,
    Random,
}

impl Flags {
    fn options(&self) -> Options {
        Options {
            namespace: self.namespace.clone(),
            strategy: match self.selector {
                SelectorFlag::RoundRobin => Strategy::RoundRobin,
                SelectorFlag::Random => Strategy::Random,
            },
            // At most MAX_BODY_BYTES_LIMIT (the flag's range), so it fits any usize.
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(MAX_BODY_BYTES_LIMIT),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
        }
    }
}

/// `keel gateway …` or `keel proxy …`: `args` starts with the program name, then the mode.
pub fn main(mode: Mode, args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let mut args = args.collect::<Vec<_>>();
    if args.len() > 1 {
        args.remove(1);
    }
    if let Some(program) = args.first_mut() {
        *program = name(mode).into();
    }
    let flags = match Flags::try_parse_from(args) {
        Ok(flags) => flags,
        Err(error) => error.exit(),
    };
    let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&flags.log_level) else {
        eprintln!("keel gateway: --log-level: unknown level {:?} (error, warn, info, debug, trace)", flags.log_level);
        return ExitCode::from(2);
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keel gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(mode, flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{}: {message}", name(mode));
            ExitCode::FAILURE
        }
    }
}

fn name(mode: Mode) -> &'static str {
    mode.name()
}

fn workers(flags: &Flags) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // At most WORKERS_LIMIT (the flag's range), so it fits any usize.
    flags.workers.map_or(cores, |workers| usize::try_from(workers).unwrap_or(1)).min(WORKERS_LIMIT)
}

async fn run(mode: Mode, flags: Flags) -> Result<(), String> {
    let mut connect = match &flags.cacert {
        Some(ca) => ConnectOptions::new().with_tls(Tls::from_files(ca, None, None).map_err(|e| e.to_string())?),
        None => ConnectOptions::new(),
    };
    let auth: Arc<dyn Auth> =
        Arc::new(GrpcAuth::connect_with(&flags.endpoints, &connect).await.map_err(|e| e.to_string())?);
    if let (Some(id), Some(secret)) = (&flags.auth_id, &flags.auth_secret) {
        connect = connect.with_token(TokenSource::new(auth.clone(), id.clone(), secret.clone(), TOKEN_REFRESH));
    }
    let registry = GrpcRegistry::connect_with(&flags.endpoints, &connect).await.map_err(|e| e.to_string())?;
    let registry: Arc<dyn Registry> = Arc::new(registry);
    let identity = flags.auth.then(|| Identity::new(auth));
    let config = GrpcConfig::connect_with(&flags.endpoints, &connect).await.map_err(|e| e.to_string())?;
    let sources = Sources { registry, config: Some(Arc::new(config)), identity };
    let default_listen = match mode {
        Mode::Gateway => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Mode::Proxy => SocketAddr::from(([127, 0, 0, 1], 8081)),
    };
    let listen = flags.listen.unwrap_or(default_listen);
    let listeners =
        super::listen_per_worker(listen, workers(&flags)).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listeners[0].local_addr().map_err(|e| e.to_string())?;
    // On stdout, for scripts (and tests) that asked for port 0.
    println!("{} listening on http://{address}", name(mode));
    tracing::info!(endpoints = flags.endpoints.join(","), "gateway following the registry");
    let shutdown = async {
        let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(sigterm) => sigterm,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    };
    super::serve(mode, sources, flags.options(), listeners, shutdown).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bounds_are_checked() {
        let flags =
            Flags::try_parse_from(["keel gateway", "--listen", "127.0.0.1:0", "--selector", "random"]).expect("parses");
        assert_eq!(flags.options().strategy, Strategy::Random);
        assert!(Flags::try_parse_from(["keel gateway", "--max-body-bytes", "0"]).is_err());
        assert!(Flags::try_parse_from(["keel gateway", "--max-body-bytes", "99999999999999999999"]).is_err());
        assert!(Flags::try_parse_from(["keel gateway", "--listen", "nowhere"]).is_err());
    }
}
