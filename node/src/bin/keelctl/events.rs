//! `keelctl events ...`: one function per subcommand, each parse → call → print.

use std::time::SystemTime;

use clap::Subcommand;
use keel_client::events::{Events, GrpcEvents, PublishOptions, ReadOptions, Start};

use crate::output;
use crate::shared::parse_key_value;
use crate::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Appends one event to TOPIC and prints its offset.
    Publish {
        topic: String,
        /// The payload, as text.
        payload: String,
        /// Event metadata as key=value; repeat for more.
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        metadata: Vec<(String, String)>,
        /// A de-duplication id: publishing the same id to TOPIC again within two minutes
        /// appends nothing and prints the first offset. Makes a retried publish safe.
        #[arg(long)]
        id: Option<String>,
    },
    /// Shows events of TOPIC, from the first one, an offset (--offset) or a time (--since).
    Read {
        topic: String,
        /// The first offset to show.
        #[arg(long, value_name = "N", conflicts_with = "since")]
        offset: Option<u64>,
        /// The first event stamped at or after this time, e.g. 2026-11-24T00:43:43Z.
        #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
        since: Option<SystemTime>,
        /// At most N events (default 1000, at most 10000).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Shows every topic with its first and next offsets.
    Topics,
}

pub async fn run(command: Command, endpoints: &[String], format: Format) -> anyhow::Result<()> {
    let events = GrpcEvents::connect(endpoints).await?;
    match command {
        Command::Publish { topic, payload, metadata, id } => {
            let options = PublishOptions { metadata: metadata.into_iter().collect(), id };
            let published = events.publish(&topic, payload.into_bytes(), options).await?;
            output::published(format, &topic, published)
        }
        Command::Read { topic, offset, since, limit } => {
            let start = match (offset, since) {
                (_, Some(time)) => Start::Since(time),
                (Some(offset), None) => Start::Offset(offset),
                (None, None) => Start::Earliest,
            };
            match events.read(&topic, ReadOptions { start, limit }).await {
                Ok(read) => output::events(format, &read),
                Err(keel_client::Error::NotFound) => anyhow::bail!("events: no such topic {topic:?}"),
                Err(error) => Err(error.into()),
            }
        }
        Command::Topics => output::topics(format, &events.topics().await?),
    }
}

/// An RFC 3339 time: `2026-11-24T00:43:43Z`, with optional fractional seconds and a `Z` or
/// `±HH:MM` offset.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    output::parse_rfc3339(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time; expected e.g. 2026-11-24T00:43:43Z"))
}
