//! Golden bytes: a committed encoded sample (`node/golden/<name>.hex`) of every command and
//! every record Keel keeps in a data dir, and of its log entries and files. Each sample is
//! decoded and must equal its value (built in `samples.rs`), and this build must write that
//! value as exactly the committed bytes. A change to a type, a field order, an enum's
//! variants, a key layout or a dependency's encoding (openraft's `Vote`, `LogId` and
//! `Membership` are on disk too) fails here before it can misread an existing data dir.
//!
//! The rule (ARCHITECTURE.md, "Formats"): a sample changes only with a format version bump
//! and a migration, or a refusal, for data dirs of the old version. To regenerate the samples
//! deliberately: `KEEL_BLESS_GOLDEN=1 cargo test -p keel-node --lib golden`. Samples of bytes
//! only an older build wrote (`Sample::older`) are never rewritten, only created when missing.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

mod auth_samples;
mod command_samples;
mod samples;

use samples::all_samples;

/// Set to 1 to rewrite the samples from this build's encodings.
const BLESS_VAR: &str = "KEEL_BLESS_GOLDEN";

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// One committed sample.
struct Sample {
    name: String,
    about: &'static str,
    /// The key it is stored under, where the key holds data of its own.
    key: Option<Vec<u8>>,
    written: Written,
    check: Check,
}

enum Written {
    /// What this build writes for the value: the sample must be exactly these bytes.
    Now(Vec<u8>),
    /// Bytes only an older build wrote, which this build must still read; used once, to create
    /// the sample.
    Before(Vec<u8>),
}

/// Decodes committed bytes and compares them with the value; says how they differ.
type Check = Box<dyn Fn(&[u8]) -> Result<(), String>>;
type Encode<T> = fn(&T) -> io::Result<Vec<u8>>;
type Decode<T> = fn(&[u8]) -> io::Result<T>;

impl Sample {
    /// A value this build writes with `encode` and reads with `decode`.
    fn new<T: PartialEq + Debug + 'static>(
        name: &str,
        about: &'static str,
        key: Option<Vec<u8>>,
        value: T,
        encode: Encode<T>,
        decode: Decode<T>,
    ) -> Sample {
        let bytes = encode(&value).unwrap_or_else(|e| panic!("{name}: cannot encode the sample: {e}"));
        Sample { name: name.into(), about, key, written: Written::Now(bytes), check: checker(value, decode) }
    }

    /// Bytes an older build wrote (`as_written`), which this build must read as `value`.
    fn older<T: PartialEq + Debug + 'static>(
        name: &str,
        about: &'static str,
        key: Option<Vec<u8>>,
        as_written: Vec<u8>,
        value: T,
        decode: Decode<T>,
    ) -> Sample {
        Sample { name: name.into(), about, key, written: Written::Before(as_written), check: checker(value, decode) }
    }

    fn path(&self) -> PathBuf {
        samples_dir().join(format!("{}.hex", self.name))
    }
}

fn checker<T: PartialEq + Debug + 'static>(value: T, decode: Decode<T>) -> Check {
    Box::new(move |bytes| match decode(bytes) {
        Ok(decoded) if decoded == value => Ok(()),
        Ok(decoded) => Err(format!("decodes to {decoded:#?}\nexpected {value:#?}")),
        Err(e) => Err(format!("does not decode: {e}")),
    })
}

/// postcard as the member writes its records (`raft::encode` is `postcard::to_stdvec`; the
/// `mvcc` module's `postcard::to_allocvec` writes the same bytes).
fn postcard_encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    crate::raft::encode(value)
}

fn postcard_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    crate::raft::decode(bytes)
}

fn json_encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

fn json_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes).map_err(io::Error::other)
}

// ---- The sample files: `#` comments, then a `key` section (optional) and a `value` section
// of hex lines. ----

const HEX_BYTES_PER_LINE: usize = 32;

fn render(sample: &Sample, value: &[u8]) -> String {
    let mut text = format!(
        "# {}: {}.\n# Golden bytes, checked by node/src/golden/: never edit by hand; a change needs a format\n# version bump (ARCHITECTURE.md, \"Formats\").\n",
        sample.name, sample.about
    );
    let mut section = |name: &str, bytes: &[u8]| {
        text.push_str(name);
        text.push('\n');
        for line in bytes.chunks(HEX_BYTES_PER_LINE) {
            text.extend(line.iter().map(|b| format!("{b:02x}")));
            text.push('\n');
        }
    };
    if let Some(key) = &sample.key {
        section("key", key);
    }
    section("value", value);
    text
}

/// The (key, value) a sample file holds.
fn parse(text: &str) -> Result<(Option<Vec<u8>>, Vec<u8>), String> {
    let (mut key, mut value) = (None, None);
    let mut current: Option<&mut Vec<u8>> = None;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        match line {
            "key" => current = Some(key.insert(Vec::new())),
            "value" => current = Some(value.insert(Vec::new())),
            hex => {
                let bytes = current.as_mut().ok_or("hex before a `key` or `value` line")?;
                if !hex.is_ascii() || hex.len() % 2 != 0 {
                    return Err(format!("not pairs of hex digits: {hex}"));
                }
                for at in (0..hex.len()).step_by(2) {
                    let byte = u8::from_str_radix(&hex[at..at + 2], 16).map_err(|e| format!("{hex}: {e}"))?;
                    bytes.push(byte);
                }
            }
        }
    }
    Ok((key, value.ok_or("no `value` section")?))
}

fn bless() -> bool {
    std::env::var(BLESS_VAR).is_ok_and(|value| value == "1")
}

/// What is wrong with `sample`'s committed file, if anything.
fn check(sample: &Sample) -> Result<(), String> {
    let path = sample.path();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (key, value) = parse(&text)?;
    if key != sample.key {
        return Err(format!("the key is {key:02x?}, this build uses {:02x?}", sample.key));
    }
    (sample.check)(&value)?;
    match &sample.written {
        Written::Now(bytes) if *bytes != value => Err(format!("this build writes it as\n{}", render(sample, bytes))),
        _ => Ok(()),
    }
}

#[test]
fn every_sample_decodes_to_its_value_and_this_build_writes_it_byte_for_byte() {
    let samples = all_samples();
    if bless() {
        std::fs::create_dir_all(samples_dir()).expect("the samples directory");
        for sample in &samples {
            match &sample.written {
                Written::Now(bytes) => std::fs::write(sample.path(), render(sample, bytes)).expect("write"),
                Written::Before(bytes) if !sample.path().exists() => {
                    std::fs::write(sample.path(), render(sample, bytes)).expect("write")
                }
                Written::Before(_) => {}
            }
        }
    }
    let failures: Vec<String> = samples
        .iter()
        .filter_map(|sample| check(sample).err().map(|why| format!("{}: {why}", sample.path().display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden samples fail:\n\n{}\n\nA format changed: data dirs written before would be misread. If that \
         is intended, bump the format version, add a migration or a refusal for the old one, and only then \
         regenerate the samples with {BLESS_VAR}=1 (ARCHITECTURE.md, \"Formats\").",
        failures.len(),
        samples.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_sample_file_has_its_sample_and_names_are_unique() {
    let names: Vec<String> = all_samples().into_iter().map(|sample| sample.name).collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "two samples share a name: {names:?}");
    let dir = samples_dir();
    let orphans: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|file| !file.strip_suffix(".hex").is_some_and(|name| unique.iter().any(|n| n.as_str() == name)))
        .collect();
    assert!(orphans.is_empty(), "files in {} that no sample checks: {orphans:?}", dir.display());
}

#[test]
fn a_sample_file_parses_back_to_what_was_rendered() {
    let sample = Sample::new("render", "a test", Some(vec![0, 0xff]), 7_u8, |v| Ok(vec![*v; 70]), |b| Ok(b[0]));
    let text = render(&sample, &[7; 70]);
    assert_eq!(parse(&text), Ok((Some(vec![0, 0xff]), vec![7; 70])));
    assert!(parse("00\n").is_err(), "hex outside a section");
    assert!(parse("value\n0").is_err(), "odd digits");
    assert!(parse("key\n00\n").is_err(), "no value");
}
