//! keelctl: Keel's admin CLI: the service registry (`keelctl registry ...`), the key-value store
//! (`keelctl store ...`), dynamic configuration (`keelctl config ...`), event logs
//! (`keelctl events ...`) and micro's accounts and rules (`keelctl auth ...`), through keel-client's
//! gRPC implementations, so it fails over between members like any Keel client; and backups
//! (`keelctl snapshot save|status|restore`).
//!
//! Exit codes: 0 success (and after Ctrl-C / SIGTERM of a foreground command), 1 an error
//! (one `Error: ...` line on stderr), 2 bad flags (clap's message). It never panics on input.

// A binary's root resolves modules beside it (src/bin/), so point into keelctl/ explicitly.
#[path = "keelctl/auth.rs"]
mod auth;
#[path = "keelctl/config.rs"]
mod config;
#[path = "keelctl/events.rs"]
mod events;
#[path = "keelctl/gateway.rs"]
mod gateway;
#[path = "keelctl/output.rs"]
mod output;
#[path = "keelctl/output_events.rs"]
mod output_events;
#[path = "keelctl/registry.rs"]
mod registry;
#[path = "keelctl/shared.rs"]
mod shared;
#[path = "keelctl/snapshot.rs"]
mod snapshot;
#[path = "keelctl/store.rs"]
mod store;

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use keel_client::{ConnectOptions, Tls};

#[derive(Debug, Parser)]
#[command(name = "keelctl", version, about = "Keel's admin CLI")]
struct Cli {
    /// Cluster members to talk to, comma-separated; the first that answers is used.
    #[arg(
        long,
        global = true,
        env = "KEELCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Verify https:// members with this CA bundle (PEM), as etcdctl's --cacert.
    #[arg(long, global = true, env = "KEELCTL_CACERT")]
    cacert: Option<PathBuf>,
    /// Present this client certificate (PEM) to members that ask for one; with
    /// --client-cert-auth and auth on, its CN is the user.
    #[arg(long, global = true, env = "KEELCTL_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "KEELCTL_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns, for people.
    Table,
    /// JSON, one document per line, for programs (go-micro's shapes for the registry).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The service registry: register, deregister, get, list, watch.
    #[command(subcommand)]
    Registry(registry::Command),
    /// The key-value store: write, read, delete, list, databases, tables.
    #[command(subcommand)]
    Store(store::Command),
    /// Dynamic configuration: get, set, delete, watch.
    #[command(subcommand)]
    Config(config::Command),
    /// Event logs: publish, read, topics.
    #[command(subcommand)]
    Events(events::Command),
    /// micro's accounts, tokens and rules: generate, token, inspect, grant, verify.
    #[command(subcommand)]
    Auth(auth::Command),
    /// Backups: save one from the cluster, show what a file holds, restore a member from one.
    #[command(subcommand)]
    Snapshot(snapshot::Command),
    /// The front door (keel gateway, keel proxy): where a path goes, and why.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// The front door's rate limits (Config gateway:limits): get, set, delete.
    #[command(subcommand)]
    Limits(gateway::LimitsCommand),
}

fn main() -> ExitCode {
    // Bad flags: clap prints why and exits 2 (0 for --help / --version).
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let options = connect_options(&cli)?;
        let (endpoints, format) = (&cli.endpoints, cli.output);
        match cli.command {
            Command::Registry(command) => registry::run(command, endpoints, &options, format).await,
            Command::Store(command) => store::run(command, endpoints, &options, format).await,
            Command::Config(command) => config::run(command, endpoints, &options, format).await,
            Command::Events(command) => events::run(command, endpoints, &options, format).await,
            Command::Auth(command) => auth::run(command, endpoints, &options, format).await,
            Command::Snapshot(command) => snapshot::run(command, endpoints, &options, format).await,
            Command::Gateway(command) => gateway::routes(command, endpoints, &options, format).await,
            Command::Limits(command) => gateway::limits(command, endpoints, &options, format).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`keelctl config watch | head -1`): nothing left to say.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// TLS from --cacert/--cert/--key; an https:// endpoint without --cacert is refused by the
/// client with a message naming the flag.
fn connect_options(cli: &Cli) -> anyhow::Result<ConnectOptions> {
    let Some(ca) = &cli.cacert else {
        if cli.cert.is_some() {
            anyhow::bail!("--cert needs --cacert: the CA that signed the members' certificates");
        }
        return Ok(ConnectOptions::new());
    };
    Ok(ConnectOptions::new().with_tls(Tls::from_files(ca, cli.cert.as_deref(), cli.key.as_deref())?))
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
