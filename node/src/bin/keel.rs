//! `keel`: one cluster member. With no flags, a single-member cluster on 127.0.0.1:2379/2380
//! with its data in ./default.keel, as `etcd` does. `keel gateway …` runs the API
//! gateway, `keel proxy …` the gRPC proxy.

use tracing_subscriber::EnvFilter;

/// Many small allocations per request (gRPC frames, commands, keys): mimalloc serves them with
/// less CPU than glibc's allocator, which showed as ~8% of a member's profile under load.
/// Built with `no_thp`: with transparent huge pages, its arenas kept whole 2 MiB pages resident
/// for a few live objects (50 MiB of an idle member's 72 MiB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a member that cannot go on (its Raft core stopped) tries to stop cleanly before it
/// exits anyway: a failed disk may keep a flush from finishing, and exiting, so that a
/// supervisor restarts the member, matters more than a clean stop. Long enough for the
/// servers to close their connections and RocksDB to cancel its background work.
const FATAL_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    // `keel gateway …` and `keel proxy …`: the stateless front door, not a member (etcd's
    // flags do not apply).
    match std::env::args_os().nth(1) {
        Some(first) if first == "gateway" => {
            return keel_node::gateway::cli::main(keel_node::gateway::Mode::Gateway, std::env::args_os())
        }
        Some(first) if first == "proxy" => {
            return keel_node::gateway::cli::main(keel_node::gateway::Mode::Proxy, std::env::args_os())
        }
        _ => {}
    }
    let flags = match keel_node::config::parse_flags(std::env::args_os()) {
        Ok((flags, warnings)) => {
            for warning in warnings {
                eprintln!("keel: {warning}");
            }
            flags
        }
        Err(keel_node::config::FlagsError::Clap(error)) => error.exit(),
        Err(keel_node::config::FlagsError::File(message)) => {
            eprintln!("keel: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let config = match flags.validate() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("keel: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(format!("{},openraft=warn", flags.log_level));
    let Ok(filter) = filter else {
        eprintln!("keel: --log-level: unknown level {:?} (error, warn, info, debug, trace)", flags.log_level);
        return std::process::ExitCode::from(2);
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keel: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    // Stop every task before the process exits, so none still uses storage during exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keel: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: keel_node::config::MemberConfig) -> Result<(), String> {
    let name = config.name.clone();
    let mut running = keel_node::member::start(config).await.map_err(|e| e.to_string())?;
    for addr in &running.client_addrs {
        tracing::info!(%name, "serving client requests on {addr}");
    }
    for addr in &running.peer_addrs {
        tracing::info!(%name, "serving peer traffic on {addr}");
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot install SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
        _ = sigterm.recv() => tracing::info!("received SIGTERM, shutting down"),
        _ = running.removed() => {
            tracing::warn!("the member has been permanently removed from the cluster; shutting down");
        }
        failure = running.failed() => {
            tracing::error!("fatal: {failure}; this member exits so that a supervisor can restart it");
            if tokio::time::timeout(FATAL_SHUTDOWN_TIMEOUT, running.shutdown()).await.is_err() {
                tracing::error!("shutdown did not finish within {FATAL_SHUTDOWN_TIMEOUT:?}; exiting anyway");
            }
            return Err(failure);
        }
    }
    running.shutdown().await;
    Ok(())
}
