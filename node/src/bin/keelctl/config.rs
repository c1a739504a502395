//! `keelctl config ...`: one function per subcommand, each parse → call → print.

use anyhow::Context;
use clap::Subcommand;
use keel_client::config::{Config, DeleteOptions, GetOptions, GrpcConfig, SetOptions, WatchOptions};
use keel_client::ConnectOptions;

use crate::output;
use crate::shared::StopSignals;
use crate::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints the JSON at a dotted path (e.g. app.db.host; "" or nothing: the whole namespace).
    Get {
        #[arg(default_value = "")]
        path: String,
        /// Namespace (default: micro).
        #[arg(long, default_value = "")]
        namespace: String,
        /// Show secrets in clear rather than as "[secret]".
        #[arg(long)]
        secret: bool,
    },
    /// Sets a dotted path to a JSON value: an object merges leaf by leaf, anything else
    /// replaces what is there. Quote strings as JSON: '"db1"'.
    Set {
        path: String,
        /// The value as JSON, e.g. '"db1"', 5432 or '{"host":"db1"}'.
        json: String,
        /// Namespace (default: micro).
        #[arg(long, default_value = "")]
        namespace: String,
        /// Store every leaf as a secret: encrypted, shown as "[secret]" unless asked for.
        #[arg(long)]
        secret: bool,
    },
    /// Deletes a dotted path and everything below it.
    Delete {
        path: String,
        /// Namespace (default: micro).
        #[arg(long, default_value = "")]
        namespace: String,
    },
    /// Prints the JSON at a dotted path now, then again after every change, until Ctrl-C.
    Watch {
        #[arg(default_value = "")]
        path: String,
        /// Namespace (default: micro).
        #[arg(long, default_value = "")]
        namespace: String,
        /// Show secrets in clear rather than as "[secret]".
        #[arg(long)]
        secret: bool,
    },
}

pub async fn run(
    command: Command,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    // Parsed before connecting: invalid JSON sends nothing.
    if let Command::Set { json, .. } = &command {
        serde_json::from_str::<serde_json::Value>(json).with_context(|| {
            format!("the value {json:?} is not valid JSON (quote strings as JSON: '\"db1\"'; numbers, true, false, null, [...] and {{...}} as they are)")
        })?;
    }
    let config = GrpcConfig::connect_with(endpoints, options).await?;
    match command {
        Command::Get { path, namespace, secret } => {
            let options = GetOptions { namespace: namespace.clone(), secrets: secret, revision: None };
            match config.get_with(&path, options).await {
                Ok(value) => output::config_value(format, &namespace, &path, &value),
                Err(keel_client::Error::NotFound) => {
                    anyhow::bail!("config: nothing at {path:?} in namespace {}", output::namespace(&namespace))
                }
                Err(error) => Err(error.into()),
            }
        }
        Command::Set { path, json, namespace, secret } => {
            let value = serde_json::from_str(&json).context("parsing the value")?;
            let options = SetOptions { namespace: namespace.clone(), secret };
            let revision = config.set(&path, value, options).await?;
            output::config_done(format, "set", &namespace, &path, revision)
        }
        Command::Delete { path, namespace } => {
            let revision = config.delete(&path, DeleteOptions { namespace: namespace.clone() }).await?;
            output::config_done(format, "delete", &namespace, &path, revision)
        }
        Command::Watch { path, namespace, secret } => {
            let mut stop = StopSignals::install()?;
            let options = WatchOptions { namespace: namespace.clone(), secrets: secret };
            let mut watcher = config.watch(&path, options).await?;
            loop {
                tokio::select! {
                    () = stop.recv() => return Ok(()),
                    value = watcher.next() => output::config_value(format, &namespace, &path, &value?)?,
                }
            }
        }
    }
}
