//! How keelctl prints: aligned columns for people, go-micro's JSON for programs. Every
//! function writes whole lines to stdout and returns the write error (a closed pipe included)
//! rather than panicking as `println!` would.

use std::io::{self, Write};
use std::time::Duration;

use keel_client::registry::{go_json, Service, WatchResult};
use serde::Serialize;

use crate::Format;

const HEADER: [&str; 5] = ["SERVICE", "VERSION", "NODE", "ADDRESS", "METADATA"];

/// Services as an aligned table (one row per node) or as one JSON array.
pub fn services(format: Format, services: &[Service]) -> anyhow::Result<()> {
    match format {
        Format::Json => line(&go_json::to_string(services)?),
        Format::Table => {
            let rows: Vec<[String; 5]> = services.iter().flat_map(rows_of).collect();
            let mut stdout = io::stdout().lock();
            write_table(&mut stdout, &rows)?;
            Ok(stdout.flush()?)
        }
    }
}

/// One watch result: `create  greeter  1.0.0  node-1  127.0.0.1:8080  k=v`, or as JSON
/// `{"action":"create","service":{...}}`.
pub fn watch_result(format: Format, result: &WatchResult) -> anyhow::Result<()> {
    match format {
        Format::Json => line(&go_json::to_string(result)?),
        Format::Table => {
            let cells: Vec<String> = rows_of(&result.service).into_iter().next().unwrap_or_default().into();
            line(&format!("{:<6}  {}", result.action, cells.join("  ")))
        }
    }
}

/// The line `registry register` prints once registered.
pub fn registered(format: Format, service: &Service, lease_id: i64, ttl: Duration) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Registered<'a> {
                action: &'a str,
                lease_id: i64,
                ttl_seconds: u64,
                service: &'a Service,
            }
            let registered = Registered { action: "register", lease_id, ttl_seconds: ttl.as_secs(), service };
            line(&go_json::to_string(&registered)?)
        }
        Format::Table => {
            let node = service.nodes.first().map(|node| (cell(&node.id), cell(&node.address))).unwrap_or_default();
            let lease = if lease_id == 0 { "no lease".to_string() } else { format!("lease {lease_id:x}") };
            line(&format!(
                "registered {} {} node {} at {} ({lease}, TTL {}s); Ctrl-C to deregister",
                cell(&service.name),
                cell(&service.version),
                node.0,
                node.1,
                ttl.as_secs()
            ))
        }
    }
}

/// The line `registry deregister` prints.
pub fn deregistered(format: Format, service: &Service) -> anyhow::Result<()> {
    let node_id = service.nodes.first().map(|node| node.id.as_str()).unwrap_or_default();
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Deregistered<'a> {
                action: &'a str,
                service: &'a str,
                node_id: &'a str,
            }
            line(&go_json::to_string(&Deregistered { action: "deregister", service: &service.name, node_id })?)
        }
        Format::Table => line(&format!("deregistered {} node {}", cell(&service.name), cell(node_id))),
    }
}

fn line(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")?;
    Ok(stdout.flush()?)
}

/// One row per node; a service without nodes still gets a row.
fn rows_of(service: &Service) -> Vec<[String; 5]> {
    let version = if service.version.is_empty() { "-".to_string() } else { cell(&service.version) };
    if service.nodes.is_empty() {
        return vec![[cell(&service.name), version, "-".into(), "-".into(), "-".into()]];
    }
    service
        .nodes
        .iter()
        .map(|node| {
            let metadata: Vec<String> = node.metadata.iter().map(|(key, value)| format!("{key}={value}")).collect();
            let metadata = if metadata.is_empty() { "-".to_string() } else { cell(&metadata.join(",")) };
            [cell(&service.name), version.clone(), cell(&node.id), cell(&node.address), metadata]
        })
        .collect()
}

fn write_table(out: &mut impl Write, rows: &[[String; 5]]) -> io::Result<()> {
    let mut widths = HEADER.map(|title| title.chars().count());
    for row in rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let header = HEADER.map(String::from);
    for row in std::iter::once(&header).chain(rows) {
        let mut text = String::new();
        for (column, (value, width)) in row.iter().zip(widths).enumerate() {
            if column + 1 == row.len() {
                text.push_str(value);
            } else {
                text.push_str(&format!("{value:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

/// A value made safe for a terminal: control characters (escape sequences included) are
/// shown escaped instead of being interpreted.
fn cell(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(
            |character| {
                if character.is_control() {
                    character.escape_default().to_string()
                } else {
                    character.to_string()
                }
            },
        )
        .collect()
}
