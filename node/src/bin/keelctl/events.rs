//! `keelctl events ...`: one function per subcommand, each parse → call → print.

use std::time::{Duration, SystemTime};

use clap::Subcommand;
use futures::StreamExt;
use keel_client::events::{
    ConsumeOptions, ConsumeStart, Events, GrpcEvents, PublishOptions, ReadOptions, Retention, Start,
};
use keel_client::ConnectOptions;

use crate::shared::parse_key_value;
use crate::Format;
use crate::{output, output_events};

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
    /// Shows every topic with its first and next offsets, size and groups.
    Topics,
    /// Receives events of TOPIC as they come, one line each, acknowledging each once printed;
    /// with --group, each event goes to one consumer of the group, which resumes where it
    /// left off. Runs until interrupted, or until --count events.
    Consume {
        topic: String,
        /// A consumer group; without one, this consumer alone sees every event from --start.
        #[arg(long)]
        group: Option<String>,
        /// Where a new group (or a consumer without group) starts: earliest, latest, an offset
        /// or an RFC 3339 time. An existing group keeps its place.
        #[arg(long, value_name = "earliest|latest|OFFSET|RFC3339", default_value = "earliest", value_parser = parse_start)]
        start: ConsumeStart,
        /// Seconds an event waits for its acknowledgement before it is delivered again.
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        ack_wait: Option<Duration>,
        /// Deliveries after the first before an event goes to TOPIC.dead-letter.
        #[arg(long, value_name = "N")]
        retry_limit: Option<u32>,
        /// Exit after N events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Do not acknowledge: count events as acknowledged when they are delivered.
        #[arg(long)]
        auto_ack: bool,
    },
    /// Shows the consumer groups of TOPIC: acknowledged position, pending events and lag.
    Groups { topic: String },
    /// Sets how much of TOPIC is kept (0: no limit); the oldest events beyond go.
    Retention {
        topic: String,
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_events: u64,
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        max_age: u64,
        #[arg(long, value_name = "BYTES", default_value_t = 0)]
        max_bytes: u64,
    },
}

pub async fn run(
    command: Command,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    let events = GrpcEvents::connect_with(endpoints, options).await?;
    match command {
        Command::Publish { topic, payload, metadata, id } => {
            let options = PublishOptions { metadata: metadata.into_iter().collect(), id };
            let published = events.publish(&topic, payload.into_bytes(), options).await?;
            output_events::published(format, &topic, published)
        }
        Command::Read { topic, offset, since, limit } => {
            let start = match (offset, since) {
                (_, Some(time)) => Start::Since(time),
                (Some(offset), None) => Start::Offset(offset),
                (None, None) => Start::Earliest,
            };
            match events.read(&topic, ReadOptions { start, limit }).await {
                Ok(read) => output_events::events(format, &read),
                Err(keel_client::Error::NotFound) => anyhow::bail!("events: no such topic {topic:?}"),
                Err(error) => Err(error.into()),
            }
        }
        Command::Topics => output_events::topics(format, &events.topics().await?),
        Command::Consume { topic, group, start, ack_wait, retry_limit, count, auto_ack } => {
            let options = ConsumeOptions { group, start, auto_ack, ack_wait, retry_limit, ..ConsumeOptions::default() };
            consume(&events, &topic, options, count, format).await
        }
        Command::Groups { topic } => match events.groups(&topic).await {
            Ok(groups) => output_events::groups(format, &groups),
            Err(keel_client::Error::NotFound) => anyhow::bail!("events: no such topic {topic:?}"),
            Err(error) => Err(error.into()),
        },
        Command::Retention { topic, max_events, max_age, max_bytes } => {
            let nonzero = |n: u64| (n > 0).then_some(n);
            let retention = Retention {
                max_events: nonzero(max_events),
                max_age: nonzero(max_age).map(Duration::from_secs),
                max_bytes: nonzero(max_bytes),
            };
            events.set_retention(&topic, retention).await?;
            Ok(())
        }
    }
}

/// Prints each delivery, then acknowledges it; stops after `count` events. An event is printed
/// before its ack is replicated, so one printed just before a crash may come again: at least
/// once, never lost. An ack that settles nothing (the event was settled elsewhere) is reported
/// on stderr, not an error.
async fn consume(
    events: &GrpcEvents,
    topic: &str,
    options: ConsumeOptions,
    count: Option<u64>,
    format: Format,
) -> anyhow::Result<()> {
    let mut subscription = events.consume(topic, options).await?;
    let mut received = 0;
    while count.is_none_or(|count| received < count) {
        let Some(delivery) = subscription.next().await else { break };
        let delivery = delivery?;
        output_events::delivery(format, &delivery.event, delivery.deliveries)?;
        match delivery.ack().await {
            // Settled before this ack: another delivery of it was acknowledged (its ack wait ran
            // out meanwhile) or it went to the dead letters. Nothing to redo here.
            Err(keel_client::Error::NotPending { offset }) => {
                eprintln!("events: offset {offset} was no longer pending when acknowledged; it was settled elsewhere");
            }
            answer => answer?,
        }
        received += 1;
    }
    Ok(())
}

fn parse_start(text: &str) -> Result<ConsumeStart, String> {
    match text {
        "earliest" => Ok(ConsumeStart::Earliest),
        "latest" => Ok(ConsumeStart::Latest),
        _ => match text.parse::<u64>() {
            Ok(offset) => Ok(ConsumeStart::Offset(offset)),
            Err(_) => parse_rfc3339(text)
                .map(ConsumeStart::Since)
                .map_err(|_| format!("{text:?} is not earliest, latest, an offset or an RFC 3339 time")),
        },
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

/// An RFC 3339 time: `2026-11-24T00:43:43Z`, with optional fractional seconds and a `Z` or
/// `±HH:MM` offset.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    output::parse_rfc3339(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time; expected e.g. 2026-11-24T00:43:43Z"))
}
