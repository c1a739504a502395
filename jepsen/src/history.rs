//! The register workload's recorded history: what each client asked for, when, and what it
//! was told. ([`Outcome`] is shared by every workload.)
//!
//! Plain data with serde, saved as JSON lines (one [`Operation`] per line) so a failed run
//! can be re-checked offline. This module records; it never judges a history.

use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

/// One client call on one key, with its real-time window and what the client learned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The client process that issued the call; a process has at most one call in flight.
    pub process: u64,
    pub key: String,
    /// When the client sent the request, in nanoseconds on the recorder's monotonic clock.
    pub call_ns: u64,
    /// When the client got the answer; `None` when it never returned (crash, abandoned).
    pub return_ns: Option<u64>,
    pub kind: OpKind,
    pub outcome: Outcome,
}

/// What the call asked the register to do, with the value a read returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OpKind {
    /// `value` is what the read returned (`None`: the key did not exist).
    Read {
        value: Option<String>,
    },
    Write {
        value: String,
    },
    /// Sets `new` if and only if the register holds `expected`. An `Ok` CAS swapped; a CAS
    /// whose comparison failed is recorded as `Fail` (it did not take effect).
    Cas {
        expected: String,
        new: String,
    },
}

/// What the client knows about whether the call took effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect, between `call_ns` and `return_ns`.
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// It may or may not have taken effect, at any time after `call_ns`: a timeout, a broken
    /// connection, a "may have been applied" error.
    Indeterminate,
}

/// A JSON-lines history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading history: {0}")]
    Io(#[from] io::Error),
    #[error("history line {line_number}: {source}")]
    Parse { line_number: usize, source: serde_json::Error },
}

/// Writes `history` as JSON lines, one operation per line.
pub fn write_json_lines(mut writer: impl Write, history: &[Operation]) -> io::Result<()> {
    for operation in history {
        serde_json::to_writer(&mut writer, operation)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

/// Reads a history written by [`write_json_lines`]; blank lines are skipped.
pub fn read_json_lines(reader: impl BufRead) -> Result<Vec<Operation>, HistoryError> {
    let mut history = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let operation =
            serde_json::from_str(&line).map_err(|source| HistoryError::Parse { line_number: index + 1, source })?;
        history.push(operation);
    }
    Ok(history)
}

/// `p3 [120, 340] write "a" ok`; `∞` for a call that never returned.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let return_ns = match self.return_ns {
            Some(return_ns) => return_ns.to_string(),
            None => "∞".to_string(),
        };
        write!(f, "p{} [{}, {}] {} {}", self.process, self.call_ns, return_ns, self.kind, self.outcome)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Read { value } => write!(f, "read -> {}", DisplayValue(value.as_deref())),
            OpKind::Write { value } => write!(f, "write {value:?}"),
            OpKind::Cas { expected, new } => write!(f, "cas {expected:?} -> {new:?}"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Indeterminate => "indeterminate",
        })
    }
}

/// A register value for reports: the quoted string, or `nil` for an absent key.
pub(crate) struct DisplayValue<'a>(pub(crate) Option<&'a str>);

impl fmt::Display for DisplayValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value:?}"),
            None => f.write_str("nil"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_round_trip() {
        let history = vec![
            Operation {
                process: 1,
                key: "k".to_string(),
                call_ns: 10,
                return_ns: Some(20),
                kind: OpKind::Cas { expected: "a".to_string(), new: "b".to_string() },
                outcome: Outcome::Ok,
            },
            Operation {
                process: 2,
                key: "k".to_string(),
                call_ns: 15,
                return_ns: None,
                kind: OpKind::Read { value: None },
                outcome: Outcome::Indeterminate,
            },
        ];
        let mut bytes = Vec::new();
        write_json_lines(&mut bytes, &history).expect("writing to a Vec cannot fail");
        let text = String::from_utf8(bytes.clone()).expect("serde_json writes UTF-8");
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(r#""kind":{"type":"cas","expected":"a","new":"b"}"#), "{text}");
        assert!(text.contains(r#""outcome":"indeterminate""#), "{text}");
        let read = read_json_lines(&bytes[..]).expect("the bytes were just written");
        assert_eq!(read, history);
    }

    #[test]
    fn parse_error_names_the_line() {
        let error = read_json_lines(&b"\n{not json}\n"[..]).expect_err("line 2 is not JSON");
        assert!(error.to_string().starts_with("history line 2:"), "{error}");
    }
}
