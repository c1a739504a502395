//! [`Value`]: a configuration value with go-micro's typed accessors. Each accessor takes the
//! default to use when the value is missing or of another type, so reading configuration never
//! fails halfway through a service's start; [`Value::scan`] is the strict alternative.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A JSON value read from the configuration, with the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    json: serde_json::Value,
    revision: i64,
}

impl Value {
    /// A value not read from a cluster (revision 0).
    pub fn new(json: serde_json::Value) -> Value {
        Value { json, revision: 0 }
    }

    pub(crate) fn at_revision(json: serde_json::Value, revision: i64) -> Value {
        Value { json, revision }
    }

    /// The cluster revision the value was read at (0 when not read from a cluster).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }

    pub fn into_json(self) -> serde_json::Value {
        self.json
    }

    /// Whether anything is there: false for JSON `null`, which a watch reports after a delete.
    pub fn exists(&self) -> bool {
        !self.json.is_null()
    }

    /// The value at a dotted `path` below this one (`"db.host"`); a value that does not exist
    /// when there is none.
    pub fn get(&self, path: &str) -> Value {
        let mut json = &self.json;
        for segment in path.split('.').filter(|segment| !segment.is_empty()) {
            match json.get(segment) {
                Some(child) => json = child,
                None => return Value::at_revision(serde_json::Value::Null, self.revision),
            }
        }
        Value::at_revision(json.clone(), self.revision)
    }

    /// A string, or the text of a number or boolean; `default` otherwise.
    pub fn string(&self, default: &str) -> String {
        match &self.json {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Number(number) => number.to_string(),
            serde_json::Value::Bool(flag) => flag.to_string(),
            _ => default.to_string(),
        }
    }

    /// An integer: a whole JSON number or a string holding one; `default` otherwise.
    pub fn int(&self, default: i64) -> i64 {
        match &self.json {
            serde_json::Value::Number(number) => number.as_i64().or_else(|| whole(number.as_f64()?)).unwrap_or(default),
            serde_json::Value::String(text) => text.trim().parse().unwrap_or(default),
            _ => default,
        }
    }

    /// A number, or a string holding one; `default` otherwise.
    pub fn float(&self, default: f64) -> f64 {
        match &self.json {
            serde_json::Value::Number(number) => number.as_f64().unwrap_or(default),
            serde_json::Value::String(text) => text.trim().parse().unwrap_or(default),
            _ => default,
        }
    }

    /// A boolean, or a string Go's `strconv.ParseBool` accepts ("true", "1", "F"...);
    /// `default` otherwise.
    pub fn bool(&self, default: bool) -> bool {
        match &self.json {
            serde_json::Value::Bool(flag) => *flag,
            serde_json::Value::String(text) => match text.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                _ => default,
            },
            _ => default,
        }
    }

    /// A duration: a Go duration string ("10s", "1h30m", "250ms") or a number of seconds;
    /// `default` otherwise (negative durations included).
    pub fn duration(&self, default: Duration) -> Duration {
        match &self.json {
            serde_json::Value::String(text) => parse_go_duration(text).unwrap_or(default),
            serde_json::Value::Number(number) => {
                number.as_f64().and_then(|seconds| Duration::try_from_secs_f64(seconds).ok()).unwrap_or(default)
            }
            _ => default,
        }
    }

    /// The value decoded into `T`, strictly: [`Error::Decode`] says what does not fit.
    pub fn scan<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.json).map_err(|error| Error::Decode(error.to_string()))
    }
}

/// The JSON text.
impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.json)
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Value {
        Value::new(json)
    }
}

fn whole(number: f64) -> Option<i64> {
    // i64::MAX as f64 rounds up to 2^63, so the bound is exclusive.
    (number.fract() == 0.0 && number >= i64::MIN as f64 && number < i64::MAX as f64).then_some(number as i64)
}

/// A non-negative duration in Go's `time.ParseDuration` syntax: a sequence of decimal numbers,
/// each with a unit (ns, us, µs, ms, s, m, h), e.g. "1h30m" or "1.5s"; "0" alone is zero.
/// `None` when it is not one (or negative).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let mut rest = text;
    let mut nanoseconds = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() || number == "." {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        let unit_end =
            after.find(|character: char| character.is_ascii_digit() || character == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit_nanoseconds = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanoseconds += number * unit_nanoseconds;
        rest = after;
    }
    Duration::try_from_secs_f64(nanoseconds / 1e9).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("10s", Some(Duration::from_secs(10))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("250ms", Some(Duration::from_millis(250))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("2us", Some(Duration::from_micros(2))),
            ("3µs", Some(Duration::from_micros(3))),
            ("0", Some(Duration::ZERO)),
            ("+5m", Some(Duration::from_secs(300))),
            ("", None),
            ("10", None),
            ("-1s", None),
            ("1d", None),
            ("s", None),
            ("1.s", Some(Duration::from_secs(1))),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_duration(text), expected, "{text:?}");
        }
    }

    #[test]
    fn typed_accessors_fall_back_to_the_default() {
        let value = Value::new(json!({
            "host": "db1", "port": 5432, "ratio": 0.5, "port_text": "5433", "on": true, "on_text": "T",
            "timeout": "10s", "retry_secs": 3, "whole": 7.0,
        }));
        assert_eq!(value.get("host").string("x"), "db1");
        assert_eq!(value.get("port").string("x"), "5432");
        assert_eq!(value.get("missing").string("x"), "x");
        assert_eq!(value.get("port").int(0), 5432);
        assert_eq!(value.get("port_text").int(0), 5433);
        assert_eq!(value.get("whole").int(0), 7);
        assert_eq!(value.get("ratio").int(9), 9, "a fraction is not an integer");
        assert_eq!(value.get("ratio").float(0.0), 0.5);
        assert!(value.get("on").bool(false));
        assert!(value.get("on_text").bool(false));
        assert!(value.get("host").bool(true), "not a boolean: the default");
        assert_eq!(value.get("timeout").duration(Duration::ZERO), Duration::from_secs(10));
        assert_eq!(value.get("retry_secs").duration(Duration::ZERO), Duration::from_secs(3));
        assert_eq!(value.get("host").duration(Duration::from_secs(1)), Duration::from_secs(1));
        assert!(value.exists() && !value.get("missing").exists() && !value.get("host.deeper").exists());
        assert_eq!(value.get("").json(), value.json(), "the empty path is the value itself");
    }

    #[test]
    fn scan_is_strict() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Database {
            host: String,
            port: u16,
        }
        let value = Value::new(json!({"host": "db1", "port": 5432}));
        assert_eq!(value.scan::<Database>(), Ok(Database { host: "db1".into(), port: 5432 }));
        let wrong = Value::new(json!({"host": "db1", "port": "x"}));
        assert!(matches!(wrong.scan::<Database>(), Err(Error::Decode(_))));
        assert_eq!(value.to_string(), r#"{"host":"db1","port":5432}"#);
    }
}
