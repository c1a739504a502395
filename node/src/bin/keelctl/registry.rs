//! `keelctl registry ...`: one function per subcommand, each parse → call → print.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use keel_client::registry::{GrpcRegistry, Node, RegisterOptions, Registry, Service, WatchOptions};
use keel_client::ConnectOptions;

use crate::output;
use crate::shared::{parse_key_value, StopSignals};
use crate::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Registers a node and keeps it registered (lease kept alive, registered again if lost)
    /// until Ctrl-C or SIGTERM, then deregisters it.
    Register {
        /// Service name.
        #[arg(long)]
        service: String,
        /// Service version.
        #[arg(long)]
        version: String,
        /// Node id, unique within the service.
        #[arg(long)]
        node_id: String,
        /// Address callers reach the node at, e.g. 127.0.0.1:8080.
        #[arg(long)]
        address: String,
        /// Node metadata as key=value; repeat for more.
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        metadata: Vec<(String, String)>,
        /// Seconds the registration outlives its last keep-alive (0: until deregistered).
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        ttl: u64,
    },
    /// Removes one node of a service.
    Deregister {
        /// Service name.
        #[arg(long)]
        service: String,
        /// Node id.
        #[arg(long)]
        node_id: String,
    },
    /// Shows every version and node of one service.
    Get {
        /// Service name.
        name: String,
    },
    /// Shows every registered service, version and node.
    List,
    /// Prints each change (create, update, delete) as it happens, until Ctrl-C.
    Watch {
        /// Only this service (default: every service).
        name: Option<String>,
    },
}

pub async fn run(
    command: Command,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    let registry = GrpcRegistry::connect_with(endpoints, options).await?;
    match command {
        Command::Register { service, version, node_id, address, metadata, ttl } => {
            let node = Node { id: node_id, address, metadata: metadata.into_iter().collect(), ..Node::default() };
            let service = Service { name: service, version, nodes: vec![node], ..Service::default() };
            register(&registry, service, Duration::from_secs(ttl), format).await
        }
        Command::Deregister { service, node_id } => {
            let service = Service::with_node(service, "", Node::new(node_id, ""));
            registry.deregister(&service).await?;
            output::deregistered(format, &service)
        }
        Command::Get { name } => match registry.get_service(&name).await {
            Ok(services) => output::services(format, &services),
            Err(keel_client::Error::NotFound) => {
                anyhow::bail!("service {name:?} not found: no node of it is registered")
            }
            Err(error) => Err(error.into()),
        },
        Command::List => output::services(format, &registry.list_services().await?),
        Command::Watch { name } => watch(&registry, WatchOptions { service: name }, format).await,
    }
}

async fn register(registry: &GrpcRegistry, service: Service, ttl: Duration, format: Format) -> anyhow::Result<()> {
    // Before registering: a signal arriving right after must deregister, not kill the process.
    let mut stop = StopSignals::install()?;
    let registration = registry.keep_registered(&service, RegisterOptions::with_ttl(ttl)).await?;
    output::registered(format, &service, registration.status().lease_id, ttl)?;
    stop.recv().await;
    registration.shutdown().await.context("deregistering on exit")
}

async fn watch(registry: &GrpcRegistry, options: WatchOptions, format: Format) -> anyhow::Result<()> {
    let mut stop = StopSignals::install()?;
    let mut watcher = registry.watch(options).await?;
    loop {
        tokio::select! {
            () = stop.recv() => return Ok(()),
            result = watcher.next() => output::watch_result(format, &result?)?,
        }
    }
}
