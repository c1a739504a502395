//! `keelctl gateway routes` and `keelctl limits ...`: what the front door does with a path,
//! and its rate limits in Config, read and changed as every gateway and proxy sees them.

use anyhow::Context;
use clap::Subcommand;
use keel_client::config::{Config, DeleteOptions, GetOptions, GrpcConfig, SetOptions};
use keel_client::registry::{GrpcRegistry, Registry};
use keel_client::ConnectOptions;
use keel_node::gateway::directory;
use keel_node::gateway::limits::{self, EndpointRate, LimitsDocument, Rate};
use keel_node::gateway::route::{self, RequestLine};

use crate::{output, Format};

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Where paths go: each path resolved as keel gateway resolves it (and why); without a
    /// path, every route the registered endpoints declare.
    Routes {
        paths: Vec<String>,
        /// The request's method (registered routes may name some).
        #[arg(long, default_value = "POST")]
        method: String,
        /// The request's Host (registered routes may name some).
        #[arg(long, default_value = "")]
        host: String,
        /// The Micro-Namespace the request carries.
        #[arg(long, default_value = "")]
        namespace: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// The rate limits every gateway and proxy applies (Config gateway:limits).
    Get,
    /// Sets one limit: a service's (--service, optionally --endpoint) or each caller's (--caller).
    Set {
        #[command(flatten)]
        which: Which,
        /// Requests per second, on average.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        per_second: u32,
        /// Requests at once after a quiet spell [default: per-second].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        burst: Option<u32>,
    },
    /// Removes one limit.
    Delete {
        #[command(flatten)]
        which: Which,
    },
}

#[derive(Debug, clap::Args)]
pub struct Which {
    /// Each caller's own limit (its account, else its address).
    #[arg(long, required_unless_present = "service", conflicts_with = "service")]
    caller: bool,
    /// A service's limit (with --endpoint: one endpoint's; without: the whole service's).
    #[arg(long)]
    service: Option<String>,
    /// micro's `Service.Method`; only with --service.
    #[arg(long, requires = "service")]
    endpoint: Option<String>,
}

pub async fn routes(
    command: GatewayCommand,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    let GatewayCommand::Routes { paths, method, host, namespace } = command;
    let registry = GrpcRegistry::connect_with(endpoints, options).await?;
    let snapshot = directory::snapshot_from(registry.list_services().await?);
    if paths.is_empty() {
        for route in &snapshot.routes {
            print(
                format,
                &route.describe(),
                serde_json::json!({ "service": route.service, "endpoint": route.endpoint, "route": route.describe() }),
            )?;
        }
        return Ok(());
    }
    for path in &paths {
        let line =
            RequestLine { method: &method.to_uppercase(), path, host: &host.to_lowercase(), namespace: &namespace };
        match route::resolve(&snapshot.routes, &line) {
            Ok(target) => {
                let nodes = snapshot.instances(&target.service).len();
                let text = format!(
                    "{path} -> service {} endpoint {} ({:?}; {}; {nodes} node(s))",
                    target.service, target.endpoint, target.handler, target.why
                );
                let json = serde_json::json!({
                    "path": path, "service": target.service, "endpoint": target.endpoint,
                    "handler": format!("{:?}", target.handler).to_lowercase(), "why": target.why.to_string(), "nodes": nodes,
                });
                print(format, &text, json)?;
            }
            Err(error) => print(
                format,
                &format!("{path} -> refused (400): {error}"),
                serde_json::json!({ "path": path, "error": error.to_string() }),
            )?,
        }
    }
    Ok(())
}

pub async fn limits(
    command: LimitsCommand,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    let config = GrpcConfig::connect_with(endpoints, options).await?;
    let mut document = current(&config).await?;
    match command {
        LimitsCommand::Get => {
            let json = serde_json::to_value(&document)?;
            return print(format, &json.to_string(), json);
        }
        LimitsCommand::Set { which, per_second, burst } => match which.service {
            None => document.caller = Some(Rate { per_second, burst }),
            Some(service) => {
                let endpoint = which.endpoint.unwrap_or_else(|| "*".into());
                document
                    .endpoints
                    .retain(|e| (e.service.as_str(), e.endpoint.as_str()) != (service.as_str(), endpoint.as_str()));
                document.endpoints.push(EndpointRate { service, endpoint, per_second, burst });
            }
        },
        LimitsCommand::Delete { which } => match which.service {
            None => document.caller = None,
            Some(service) => {
                let endpoint = which.endpoint.unwrap_or_else(|| "*".into());
                let before = document.endpoints.len();
                document
                    .endpoints
                    .retain(|e| (e.service.as_str(), e.endpoint.as_str()) != (service.as_str(), endpoint.as_str()));
                anyhow::ensure!(document.endpoints.len() < before, "limits: no limit on {service} {endpoint}");
            }
        },
    }
    // Checked as a gateway will check it, before anything is written.
    limits::Limits::default().apply(&document).map_err(|e| anyhow::anyhow!("limits: {e}"))?;
    let namespace = limits::CONFIG_NAMESPACE.to_string();
    // Written as a whole: Config merges objects leaf by leaf, so a removed caller limit would
    // otherwise stay.
    config.delete(limits::CONFIG_PATH, DeleteOptions { namespace: namespace.clone() }).await?;
    let json = serde_json::to_value(&document)?;
    let revision = config.set(limits::CONFIG_PATH, json.clone(), SetOptions { namespace, secret: false }).await?;
    print(
        format,
        &format!("limits: {json} (revision {revision})"),
        serde_json::json!({ "limits": json, "revision": revision }),
    )
}

async fn current(config: &GrpcConfig) -> anyhow::Result<LimitsDocument> {
    let options = GetOptions { namespace: limits::CONFIG_NAMESPACE.into(), ..Default::default() };
    match config.get_with(limits::CONFIG_PATH, options).await {
        Ok(value) => serde_json::from_value(value.into_json())
            .context("the limits in Config do not parse; fix them with keelctl config"),
        Err(keel_client::Error::NotFound) => Ok(LimitsDocument::default()),
        Err(error) => Err(error.into()),
    }
}

fn print(format: Format, text: &str, json: serde_json::Value) -> anyhow::Result<()> {
    match format {
        Format::Table => output::line(text),
        Format::Json => output::line(&json.to_string()),
    }
}
