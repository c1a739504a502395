//! How the dashboard writes keys, bytes and times: keys travel in URLs as text when they are
//! printable UTF-8 and as hex otherwise, so that any key (etcd keys are bytes) can be linked to
//! and read back exactly.

use std::fmt::Write as _;
use std::time::Duration;

/// A key's (or prefix's) query parameter: `name=<text>` when the key is printable UTF-8, else
/// `name_hex=<hex>`; percent-encoded.
pub(super) fn key_param(name: &str, key: &[u8]) -> String {
    match printable(key) {
        Some(text) => format!("{name}={}", encode(text)),
        None => format!("{name}_hex={}", hex(key)),
    }
}

/// Reads back what [`key_param`] wrote: the text form, or the hex one, or neither.
pub(super) fn key_from(text: Option<&str>, hex_text: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    match (text, hex_text) {
        (_, Some(hex_text)) => from_hex(hex_text).map(Some),
        (Some(text), None) => Ok(Some(text.as_bytes().to_vec())),
        (None, None) => Ok(None),
    }
}

/// Percent-encodes `text` for a query value.
pub(super) fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The key as text when it is UTF-8 without control characters.
fn printable(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key).ok().filter(|text| !text.chars().any(char::is_control))
}

/// How a key is shown: its text, or its bytes escaped where they are not printable UTF-8.
pub(super) fn display_key(key: &[u8]) -> String {
    match printable(key) {
        Some(text) => text.to_string(),
        None => key.escape_ascii().to_string(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err("a hex key has an even number of digits".into());
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let [high, low] = pair else { return Err("a hex key has an even number of digits".to_string()) };
            match ((*high as char).to_digit(16), (*low as char).to_digit(16)) {
                (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
                _ => Err(format!("not a hex key: {}", text.escape_debug())),
            }
        })
        .collect()
}

/// The first `chars` characters of `bytes` read as UTF-8 (what is not, replaced).
pub(super) fn preview(bytes: &[u8], chars: usize) -> String {
    String::from_utf8_lossy(bytes).chars().take(chars).collect()
}

/// Bytes as people read them: `512 B`, `1.5 KiB`, `48.0 MiB`.
pub(super) fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{count} B")
    } else {
        format!("{value:.1} {}", UNITS.get(unit).unwrap_or(&"B"))
    }
}

/// A duration as people read them: `850 ms`, `42 s`, `3 min 5 s`, `2 h 10 min`.
pub(super) fn duration(took: Duration) -> String {
    let secs = took.as_secs();
    match secs {
        0 => format!("{} ms", took.as_millis()),
        1..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Unix milliseconds as UTC, ISO 8601 to the millisecond.
pub(super) fn unix_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        ),
        Err(_) => format!("{ms} ms after 1970"),
    }
}

/// Fuzz entry point: whatever a URL carries as a key decodes without panicking, and every key
/// survives its own link (`key_param` then `key_from`).
pub fn fuzz_key_param(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = key_from(Some(&text), None);
    let _ = key_from(None, Some(&text));
    let param = key_param("k", data);
    let decoded: Vec<(String, String)> = url::form_urlencoded::parse(param.as_bytes()).into_owned().collect();
    let (name, value) = decoded.first().expect("one parameter");
    let back = match name.as_str() {
        "k" => key_from(Some(value), None),
        _ => key_from(None, Some(value)),
    };
    assert_eq!(back, Ok(Some(data.to_vec())), "{param}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_their_links() {
        for key in [&b"/micro/registry/a"[..], b"", b"\xff\x00/x", "é/ü".as_bytes(), b"a b&c=d%"] {
            fuzz_key_param(key);
        }
        assert!(key_param("k", b"\x00").starts_with("k_hex="));
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!(key_from(None, Some("abc")).is_err());
        assert!(key_from(None, Some("zz")).is_err());
        assert_eq!(key_from(None, Some("4142")), Ok(Some(b"AB".to_vec())));
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(unix_ms(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(unix_ms(1_796_688_000_123), "2026-12-08 00:00:00.123 UTC");
    }
}
