//! `--config-file`: etcd's YAML configuration file. Its keys are the flags' names
//! (`listen-client-urls: http://…`), plus etcd's `client-transport-security` and
//! `peer-transport-security` sections for the TLS flags. Each value becomes its flag's default,
//! so a flag on the command line or a `KEEL_*` variable still wins: flag > env > file > default.
//! Keys Keel does not have (etcd's `wal-dir`, `logger`, …) are reported and skipped,
//! as etcd skips keys it does not know.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde_yaml_ng::Value;

use super::Flags;

/// The largest configuration file read: etcd's sample is 6 KiB.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// etcd's TLS sections and the flags their keys stand for.
const SECTIONS: [(&str, &str); 2] = [("client-transport-security", ""), ("peer-transport-security", "peer-")];

/// The flags from `args` and the environment, with `--config-file`'s values as defaults.
/// `Err` is clap's own error (help, version, bad flags: `exit()` prints it) or a message about
/// the file. Unknown keys come back as warnings, for the caller to print.
pub fn parse_flags<I, T>(args: I) -> Result<(Flags, Vec<String>), FlagsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let flags = Flags::try_parse_from(&args).map_err(FlagsError::Clap)?;
    let Some(path) = flags.config_file.clone() else { return Ok((flags, Vec::new())) };
    let (defaults, warnings) =
        read(&path).map_err(|e| FlagsError::File(format!("--config-file {}: {e}", path.display())))?;
    let mut command = Flags::command();
    for (id, value) in defaults {
        command = command.mut_arg(id, |arg| arg.default_value(value));
    }
    let matches = command.try_get_matches_from(&args).map_err(FlagsError::Clap)?;
    let flags = Flags::from_arg_matches(&matches).map_err(FlagsError::Clap)?;
    Ok((flags, warnings))
}

/// A file's values by flag id, and a warning per key skipped.
type FileValues = (Vec<(String, String)>, Vec<String>);

/// Why the flags could not be read.
#[derive(Debug)]
pub enum FlagsError {
    Clap(clap::Error),
    File(String),
}

/// The file's values by flag id (`listen_client_urls`), and a warning per key skipped.
fn read(path: &Path) -> Result<FileValues, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(CONFIG_FILE_BYTES_MAX + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read it: {e}"))?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(format!("larger than {CONFIG_FILE_BYTES_MAX} bytes"));
    }
    parse(&text)
}

/// A file's text: values by flag id, and warnings.
fn parse(text: &str) -> Result<FileValues, String> {
    let document: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let mapping = match document {
        Value::Mapping(mapping) => mapping,
        Value::Null => return Ok((Vec::new(), Vec::new())),
        _ => return Err("not a mapping of keys to values".into()),
    };
    let known = flag_ids();
    let (mut values, mut warnings) = (Vec::new(), Vec::new());
    for (key, value) in mapping {
        let key = key.as_str().ok_or("a key that is not text")?.to_string();
        match SECTIONS.iter().find(|(section, _)| *section == key) {
            Some((_, prefix)) => {
                let Value::Mapping(section) = value else {
                    if value.is_null() {
                        continue;
                    }
                    return Err(format!("{key} must hold keys such as cert-file and key-file"));
                };
                for (inner, value) in section {
                    let inner = inner.as_str().ok_or("a key that is not text")?;
                    let name = format!("{prefix}{inner}");
                    add(&known, &name, &format!("{key}.{inner}"), value, &mut values, &mut warnings)?;
                }
            }
            None => add(&known, &key, &key, value, &mut values, &mut warnings)?,
        }
    }
    Ok((values, warnings))
}

/// Adds the flag `name`'s value (named `shown` in messages), or a warning if Keel has no such
/// flag. An empty value leaves the flag at its default, as etcd's sample file expects.
fn add(
    known: &[String],
    name: &str,
    shown: &str,
    value: Value,
    values: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let id = name.replace('-', "_");
    if id == "config_file" || !known.contains(&id) {
        warnings.push(format!("--config-file: {shown:?} is not a keel setting; skipped"));
        return Ok(());
    }
    let text = match value {
        Value::Null => return Ok(()),
        Value::String(text) if text.is_empty() => return Ok(()),
        Value::String(text) => text,
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        _ => return Err(format!("{shown} must be a single value (a list of URLs is one comma-separated string)")),
    };
    values.push((id, text));
    Ok(())
}

/// The ids of every flag (`listen_client_urls`).
fn flag_ids() -> Vec<String> {
    Flags::command().get_arguments().map(|arg| arg.get_id().to_string()).collect()
}

/// Fuzz target: arbitrary bytes as a configuration file's text.
pub fn fuzz_config_file(data: &[u8]) {
    let _ = parse(&String::from_utf8_lossy(data));
}
