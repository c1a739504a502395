//! How keelctl prints event logs: offsets, events (one JSON object per line), deliveries as
//! they are consumed, topics and consumer groups. Built on `output`'s lines and tables.

use std::collections::BTreeMap;
use std::io::{self, Write};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keel_client::events::{Event, GroupInfo, Published, TopicInfo};
use serde::Serialize;

use crate::output::{bytes_cell, cell, line, metadata_cell, rfc3339_millis, table};
use crate::Format;

const EVENT_HEADER: [&str; 4] = ["OFFSET", "TIMESTAMP", "METADATA", "PAYLOAD"];
const TOPIC_HEADER: [&str; 5] = ["TOPIC", "FIRST OFFSET", "NEXT OFFSET", "SIZE", "GROUPS"];
const GROUP_HEADER: [&str; 5] = ["GROUP", "ACKED BELOW", "NEXT NEW", "PENDING", "LAG"];

/// What `events publish` prints: the offset, or `{"topic","offset","duplicate"}`.
pub fn published(format: Format, topic: &str, published: Published) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct PublishedJson<'a> {
                topic: &'a str,
                offset: u64,
                duplicate: bool,
            }
            let json = PublishedJson { topic, offset: published.offset, duplicate: published.duplicate };
            line(&serde_json::to_string(&json)?)
        }
        Format::Table => {
            if published.duplicate {
                // On stderr: stdout stays just the offset, for `offset=$(keelctl events publish ...)`.
                eprintln!("duplicate: the id was already published to {}; nothing appended", cell(topic));
            }
            line(&published.offset.to_string())
        }
    }
}

/// Events: a table, or one JSON object per event per line with `topic`, `offset`, `id` (when it
/// has one), `timestamp` (RFC 3339, milliseconds), `metadata` and `payload`: the text when the
/// bytes are UTF-8, else base64 with `"payload_encoding":"base64"`.
pub fn events(format: Format, events: &[Event]) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let mut stdout = io::stdout().lock();
            for event in events {
                writeln!(stdout, "{}", event_json(event, None)?)?;
            }
            Ok(stdout.flush()?)
        }
        Format::Table => {
            let rows: Vec<[String; 4]> = events.iter().map(event_row).collect();
            table(EVENT_HEADER, &rows)
        }
    }
}

/// One consumed event, on one line as it arrives: the JSON of [`events`] plus `deliveries`,
/// or the table's columns separated by tabs (with the delivery count when it is a redelivery).
pub fn delivery(format: Format, event: &Event, deliveries: u32) -> anyhow::Result<()> {
    match format {
        Format::Json => line(&event_json(event, Some(deliveries))?),
        Format::Table => {
            let mut columns = event_row(event).to_vec();
            if deliveries > 1 {
                columns.push(format!("(delivery {deliveries})"));
            }
            line(&columns.join("\t"))
        }
    }
}

fn event_json(event: &Event, deliveries: Option<u32>) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct EventJson<'a> {
        topic: &'a str,
        offset: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        timestamp: String,
        metadata: &'a BTreeMap<String, String>,
        payload: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        payload_encoding: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        deliveries: Option<u32>,
    }
    let (payload, payload_encoding) = match std::str::from_utf8(&event.payload) {
        Ok(text) => (text.to_string(), None),
        Err(_) => (BASE64.encode(&event.payload), Some("base64")),
    };
    let json = EventJson {
        topic: &event.topic,
        offset: event.offset,
        id: event.id.as_deref(),
        timestamp: rfc3339_millis(event.timestamp),
        metadata: &event.metadata,
        payload,
        payload_encoding,
        deliveries,
    };
    Ok(serde_json::to_string(&json)?)
}

/// Consumer groups: a table, or one JSON array of objects.
pub fn groups(format: Format, groups: &[GroupInfo]) -> anyhow::Result<()> {
    match format {
        Format::Json => line(&serde_json::to_string(&groups.iter().map(GroupJson::from).collect::<Vec<_>>())?),
        Format::Table => {
            let rows: Vec<[String; 5]> = groups
                .iter()
                .map(|g| {
                    [
                        cell(&g.group),
                        g.ack_floor.to_string(),
                        g.cursor.to_string(),
                        g.pending.to_string(),
                        g.lag.to_string(),
                    ]
                })
                .collect();
            table(GROUP_HEADER, &rows)
        }
    }
}

#[derive(Serialize)]
struct GroupJson<'a> {
    group: &'a str,
    ack_floor: u64,
    cursor: u64,
    pending: u64,
    lag: u64,
    ack_wait_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_limit: Option<u32>,
    max_in_flight: u32,
}

impl<'a> From<&'a GroupInfo> for GroupJson<'a> {
    fn from(g: &'a GroupInfo) -> Self {
        GroupJson {
            group: &g.group,
            ack_floor: g.ack_floor,
            cursor: g.cursor,
            pending: g.pending,
            lag: g.lag,
            ack_wait_ms: g.ack_wait.as_millis(),
            retry_limit: g.retry_limit,
            max_in_flight: g.max_in_flight,
        }
    }
}

/// Topics: a table (groups as `name (lag N)`), or one JSON array of objects with `topic`,
/// `first_offset`, `next_offset`, `size_bytes` and `groups`.
pub fn topics(format: Format, topics: &[TopicInfo]) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct TopicJson<'a> {
                topic: &'a str,
                first_offset: u64,
                next_offset: u64,
                size_bytes: u64,
                groups: Vec<GroupJson<'a>>,
            }
            let topics: Vec<TopicJson<'_>> = topics
                .iter()
                .map(|info| TopicJson {
                    topic: &info.topic,
                    first_offset: info.first_offset,
                    next_offset: info.next_offset,
                    size_bytes: info.size_bytes,
                    groups: info.groups.iter().map(GroupJson::from).collect(),
                })
                .collect();
            line(&serde_json::to_string(&topics)?)
        }
        Format::Table => {
            let rows: Vec<[String; 5]> = topics
                .iter()
                .map(|info| {
                    let groups: Vec<String> =
                        info.groups.iter().map(|g| format!("{} (lag {})", cell(&g.group), g.lag)).collect();
                    [
                        cell(&info.topic),
                        info.first_offset.to_string(),
                        info.next_offset.to_string(),
                        info.size_bytes.to_string(),
                        groups.join(", "),
                    ]
                })
                .collect();
            table(TOPIC_HEADER, &rows)
        }
    }
}

fn event_row(event: &Event) -> [String; 4] {
    [
        event.offset.to_string(),
        rfc3339_millis(event.timestamp),
        metadata_cell(&event.metadata),
        bytes_cell(&event.payload),
    ]
}
