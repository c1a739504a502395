//! How keelctl prints: aligned columns for people, JSON for programs (go-micro's shapes for the
//! registry). Events print through `output_events`, on the same helpers. Every function writes whole lines to stdout and returns the write error (a
//! closed pipe included) rather than panicking as `println!` would.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keel_client::config::{Value, DEFAULT_NAMESPACE};
use keel_client::registry::{go_json, Service, WatchResult};
use keel_client::store::Record;
use serde::Serialize;

use crate::Format;

const HEADER: [&str; 5] = ["SERVICE", "VERSION", "NODE", "ADDRESS", "METADATA"];
const RECORD_HEADER: [&str; 5] = ["KEY", "VALUE", "METADATA", "TTL", "EXPIRES"];

/// Services as an aligned table (one row per node) or as one JSON array.
pub fn services(format: Format, services: &[Service]) -> anyhow::Result<()> {
    match format {
        Format::Json => line(&go_json::to_string(services)?),
        Format::Table => {
            let rows: Vec<[String; 5]> = services.iter().flat_map(rows_of).collect();
            table(HEADER, &rows)
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

/// Store records: a table, or a JSON array of objects with `key`, `value` (the text, when the
/// bytes are UTF-8) or `value_base64` (when not), `metadata`, `ttl_seconds` and `expiry` (Unix
/// seconds; both null when the record does not expire).
pub fn records(format: Format, records: &[Record]) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct RecordJson<'a> {
                key: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                value: Option<&'a str>,
                #[serde(skip_serializing_if = "Option::is_none")]
                value_base64: Option<String>,
                metadata: &'a BTreeMap<String, String>,
                ttl_seconds: Option<u64>,
                expiry: Option<u64>,
            }
            let records: Vec<RecordJson<'_>> = records
                .iter()
                .map(|record| {
                    let text = std::str::from_utf8(&record.value).ok();
                    RecordJson {
                        key: &record.key,
                        value: text,
                        value_base64: text.is_none().then(|| BASE64.encode(&record.value)),
                        metadata: &record.metadata,
                        ttl_seconds: record.ttl.map(|ttl| ttl.as_secs()),
                        expiry: record.expiry.map(unix_seconds),
                    }
                })
                .collect();
            line(&serde_json::to_string(&records)?)
        }
        Format::Table => {
            let rows: Vec<[String; 5]> = records.iter().map(record_row).collect();
            table(RECORD_HEADER, &rows)
        }
    }
}

/// A list of names (keys, databases, tables): one column titled `title`, or a JSON array.
pub fn names(format: Format, title: &str, names: &[String]) -> anyhow::Result<()> {
    match format {
        Format::Json => line(&serde_json::to_string(names)?),
        Format::Table => {
            let rows: Vec<[String; 1]> = names.iter().map(|name| [cell(name)]).collect();
            table([title], &rows)
        }
    }
}

/// The line `store write` / `store delete` prints.
pub fn store_done(format: Format, action: &str, key: &str, table: &str) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Done<'a> {
                action: &'a str,
                key: &'a str,
                table: &'a str,
            }
            line(&serde_json::to_string(&Done { action, key, table })?)
        }
        Format::Table => line(&format!("{action} {} in {}: done", cell(key), cell(table))),
    }
}

/// A configuration value: its JSON text, or with `-o json` an object with the namespace, path,
/// value and revision. One line either way, so `config watch` prints one line per change.
pub fn config_value(format: Format, namespace: &str, path: &str, value: &Value) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct ValueJson<'a> {
                namespace: &'a str,
                path: &'a str,
                value: &'a serde_json::Value,
                revision: i64,
            }
            let json = ValueJson {
                namespace: self::namespace(namespace),
                path,
                value: value.json(),
                revision: value.revision(),
            };
            line(&serde_json::to_string(&json)?)
        }
        // serde_json escapes control characters: the text is safe for a terminal as it is.
        Format::Table => line(&value.to_string()),
    }
}

/// The line `config set` / `config delete` prints.
pub fn config_done(format: Format, action: &str, namespace: &str, path: &str, revision: i64) -> anyhow::Result<()> {
    let namespace = self::namespace(namespace);
    match format {
        Format::Json => {
            #[derive(Serialize)]
            struct Done<'a> {
                action: &'a str,
                namespace: &'a str,
                path: &'a str,
                revision: i64,
            }
            line(&serde_json::to_string(&Done { action, namespace, path, revision })?)
        }
        Format::Table => {
            let path = if path.is_empty() { "(the whole namespace)".to_string() } else { cell(path) };
            line(&format!("{action} {path} in namespace {}: revision {revision}", cell(namespace)))
        }
    }
}

/// A namespace as the cluster names it: empty is the default.
pub fn namespace(namespace: &str) -> &str {
    if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    }
}

fn record_row(record: &Record) -> [String; 5] {
    let value = bytes_cell(&record.value);
    let metadata = metadata_cell(&record.metadata);
    let ttl = record.ttl.map_or("-".to_string(), |ttl| format!("{}s", ttl.as_secs()));
    let expiry = record.expiry.map_or("-".to_string(), rfc3339);
    [cell(&record.key), value, metadata, ttl, expiry]
}

/// Bytes as text when they are UTF-8 (made safe for a terminal), else `base64:...`.
pub(crate) fn bytes_cell(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => cell(text),
        Err(_) => format!("base64:{}", BASE64.encode(bytes)),
    }
}

/// `k=v,k2=v2`, or `-` for none.
pub(crate) fn metadata_cell(metadata: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = metadata.iter().map(|(key, value)| format!("{key}={value}")).collect();
    if pairs.is_empty() {
        "-".to_string()
    } else {
        cell(&pairs.join(","))
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// `time` as RFC 3339 in UTC, to the second: 2026-11-24T00:43:43Z.
fn rfc3339(time: SystemTime) -> String {
    let seconds = unix_seconds(time);
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// `time` as RFC 3339 in UTC, to the millisecond: 2026-11-24T00:43:43.120Z.
pub(crate) fn rfc3339_millis(time: SystemTime) -> String {
    let milliseconds = time.duration_since(UNIX_EPOCH).map_or(0, |since| since.subsec_millis());
    let seconds = rfc3339(time);
    format!("{}.{milliseconds:03}Z", seconds.trim_end_matches('Z'))
}

/// Parses RFC 3339: `2026-11-24T00:43:43Z`, `2026-11-24T01:43:43.5+01:00` (a space or lower
/// case `t`/`z` too, as RFC 3339 allows). `None` for anything else and for times before 1970.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.bytes().all(|byte| byte.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if bytes.len() < 20 || separators.iter().any(|(at, separator)| bytes[*at] != *separator) {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Fractional seconds, kept to the nanosecond.
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        for (index, digit) in fraction.bytes().take(digits.min(9)).enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - index as u32);
        }
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (number(text.len() - 5..text.len() - 3)?, number(text.len() - 2..text.len())?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil: days since 1970-01-01.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    let seconds = u64::try_from(seconds).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// An aligned table with a header row, to stdout.
pub(crate) fn table<const COLUMNS: usize>(header: [&str; COLUMNS], rows: &[[String; COLUMNS]]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    write_table(&mut stdout, header, rows)?;
    Ok(stdout.flush()?)
}

pub(crate) fn line(text: &str) -> anyhow::Result<()> {
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

fn write_table<const COLUMNS: usize>(
    out: &mut impl Write,
    header: [&str; COLUMNS],
    rows: &[[String; COLUMNS]],
) -> io::Result<()> {
    let mut widths = header.map(|title| title.chars().count());
    for row in rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let header = header.map(String::from);
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
pub(crate) fn cell(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339_utc() {
        let at = |seconds| rfc3339(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_481_023), "2026-11-24T00:43:43Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH + Duration::from_millis(1_795_481_023_120)), "2026-11-24T00:43:43.120Z");
    }

    #[test]
    fn rfc3339_times_parse() {
        let at = |seconds, nanos| Some(UNIX_EPOCH + Duration::new(seconds, nanos));
        let cases = [
            ("1970-01-01T00:00:00Z", at(0, 0)),
            ("2000-02-29T00:00:00Z", at(951_782_400, 0)),
            ("2026-11-24T00:43:43Z", at(1_795_481_023, 0)),
            ("2026-11-24t00:43:43.12z", at(1_795_481_023, 120_000_000)),
            ("2026-11-24 01:43:43.000000001+01:00", at(1_795_481_023, 1)),
            ("2026-11-23T23:13:43-01:30", at(1_795_481_023, 0)),
            ("2026-11-24T00:43:43", None),
            ("2026-02-29T00:00:00Z", None),
            ("2026-11-24T24:00:00Z", None),
            ("2026-11-24T00:43:43.Z", None),
            ("1969-12-31T23:59:59Z", None),
            ("yesterday", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rfc3339(text), expected, "{text}");
        }
    }
}
