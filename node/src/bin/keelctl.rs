//! keelctl: Keel's admin CLI: the service registry (`keelctl registry ...`), the key-value store
//! (`keelctl store ...`), dynamic configuration (`keelctl config ...`) and event logs
//! (`keelctl events ...`), through keel-client's
//! gRPC implementations, so it fails over between members like any Keel client.
//!
//! Exit codes: 0 success (and after Ctrl-C / SIGTERM of a foreground command), 1 an error
//! (one `Error: ...` line on stderr), 2 bad flags (clap's message). It never panics on input.

// A binary's root resolves modules beside it (src/bin/), so point into keelctl/ explicitly.
#[path = "keelctl/config.rs"]
mod config;
#[path = "keelctl/events.rs"]
mod events;
#[path = "keelctl/output.rs"]
mod output;
#[path = "keelctl/output_events.rs"]
mod output_events;
#[path = "keelctl/registry.rs"]
mod registry;
#[path = "keelctl/shared.rs"]
mod shared;
#[path = "keelctl/store.rs"]
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
        match cli.command {
            Command::Registry(command) => registry::run(command, &cli.endpoints, cli.output).await,
            Command::Store(command) => store::run(command, &cli.endpoints, cli.output).await,
            Command::Config(command) => config::run(command, &cli.endpoints, cli.output).await,
            Command::Events(command) => events::run(command, &cli.endpoints, cli.output).await,
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

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|error| error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
