//! The data dir's format version: the file `<data-dir>/keel-format`, one decimal number and a
//! newline. It is read before anything else at every start, so a data dir that a newer Keel
//! wrote is refused before RocksDB or Raft touch it, instead of being misread.
//!
//! Version 1 is the format of every data dir written before this file existed: a data dir that
//! holds a database but no file is version 1, and gets the file. A new data dir gets it before
//! the database is created, so a database without the file always predates it.
//!
//! The file only ever holds a number: a later format changes the number, never the spelling,
//! so any binary can tell "newer" from "damaged". It knows nothing of what the versions mean;
//! a version bump comes with a migration here (or a refusal), see ARCHITECTURE.md, "Formats".

use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// The file's name in the member's data dir.
pub const FILE_NAME: &str = "keel-format";

/// The format this binary writes.
pub const CURRENT: u32 = 1;

/// The formats this binary reads. Starting on an older one than `CURRENT` migrates it first.
pub const READABLE: RangeInclusive<u32> = 1..=CURRENT;

/// The format of data dirs written before this file existed.
const BEFORE_THE_FILE: u32 = 1;

/// A version file longer than this is not one Keel wrote (the largest u32 and a newline are 11
/// bytes): it is read no further.
const FILE_BYTES_MAX: u64 = 64;

/// Why a data dir cannot be started on.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Written by a newer Keel (or a much older one): this binary would misread it.
    #[error(
        "{path} says format version {found}, and this keel reads format {readable} only: the data directory \
         was written by another version of Keel; run a Keel that reads format version {found} on it",
        readable = readable_versions()
    )]
    Unreadable { path: PathBuf, found: u32 },
    /// Not a version number at all.
    #[error("{path} holds {content:?}, not a format version number")]
    Damaged { path: PathBuf, content: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn readable_versions() -> String {
    match (READABLE.start(), READABLE.end()) {
        (first, last) if first == last => format!("version {first}"),
        (first, last) => format!("versions {first} to {last}"),
    }
}

/// What the data dir held when this start found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The file, with a version this binary reads.
    Recorded(u32),
    /// A database but no file: written before the file existed. The file now says so.
    BeforeTheFile,
    /// Neither: a new data dir. The file now says `CURRENT`.
    New,
}

/// Checks that this binary can read the data dir at `data_dir`, whose database lives at
/// `database`, and makes sure its format file exists. Call before the database is opened.
pub fn check(data_dir: &Path, database: &Path) -> Result<Found, FormatError> {
    let path = data_dir.join(FILE_NAME);
    let io_error = |source: io::Error| FormatError::Io { path: path.clone(), source };
    match read_limited(&path) {
        Ok(content) => {
            let found = parse(&content).ok_or_else(|| FormatError::Damaged {
                path: path.clone(),
                content: String::from_utf8_lossy(&content).into(),
            })?;
            if !READABLE.contains(&found) {
                return Err(FormatError::Unreadable { path, found });
            }
            // Only one format exists so far: nothing to migrate. A later CURRENT migrates the
            // older readable versions here, then records CURRENT.
            Ok(Found::Recorded(found))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (found, version) =
                if database.exists() { (Found::BeforeTheFile, BEFORE_THE_FILE) } else { (Found::New, CURRENT) };
            write(data_dir, version).map_err(io_error)?;
            Ok(found)
        }
        Err(e) => Err(io_error(e)),
    }
}

fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let mut content = Vec::new();
    File::open(path)?.take(FILE_BYTES_MAX).read_to_end(&mut content)?;
    Ok(content)
}

/// The version a file holding `content` records: decimal digits, then optional white space
/// (the newline Keel writes, or an editor's).
pub fn parse(content: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(content).ok()?.trim_end();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// What the file holds for `version`.
pub fn encode(version: u32) -> Vec<u8> {
    format!("{version}\n").into_bytes()
}

/// Writes the file for `version` atomically: a temporary file, fsynced, renamed over the
/// name, and the directory fsynced, so a crash leaves the old file or the new one, never a
/// part of one.
fn write(data_dir: &Path, version: u32) -> io::Result<()> {
    let path = data_dir.join(FILE_NAME);
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&encode(version))?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    File::open(data_dir)?.sync_all()
}

/// Fuzzing entry point: `data` as the file's content. Must never panic.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    if let Some(version) = parse(data) {
        // Whatever parses, Keel's own spelling of it parses to the same version.
        assert_eq!(parse(&encode(version)), Some(version), "a parsed version re-encodes differently");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_new_data_dir_gets_the_current_version_and_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = dir.path().join("db");
        assert_eq!(check(dir.path(), &database).expect("new"), Found::New);
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).expect("written"), encode(CURRENT));
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists(), "no temporary file left");
        std::fs::create_dir(&database).expect("db");
        assert_eq!(check(dir.path(), &database).expect("again"), Found::Recorded(CURRENT));
    }

    #[test]
    fn a_data_dir_from_before_the_file_is_version_1_and_gets_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = dir.path().join("db");
        std::fs::create_dir(&database).expect("db");
        assert_eq!(check(dir.path(), &database).expect("legacy"), Found::BeforeTheFile);
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).expect("written"), b"1\n");
        assert_eq!(check(dir.path(), &database).expect("again"), Found::Recorded(1));
    }

    #[test]
    fn an_unknown_version_is_refused_naming_the_file_and_both_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        for found in [0, CURRENT + 1, u32::MAX] {
            std::fs::write(&path, encode(found)).expect("write");
            let error = check(dir.path(), &dir.path().join("db")).expect_err("refused");
            assert!(matches!(error, FormatError::Unreadable { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains(&format!("format version {found}")), "{message}");
            assert!(message.contains(&format!("reads format version {CURRENT} only")), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
            assert_eq!(std::fs::read(&path).expect("kept"), encode(found), "a refused file is left as it was");
        }
    }

    #[test]
    fn anything_but_a_number_is_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        for content in
            [&b""[..], b"\n", b"one\n", b"-1\n", b"+1", b"1 2\n", b"99999999999\n", &[0xff, b'1'], &[b'1'; 100]]
        {
            std::fs::write(&path, content).expect("write");
            let error = check(dir.path(), &dir.path().join("db")).expect_err("refused");
            assert!(matches!(error, FormatError::Damaged { .. }), "{content:?}: {error:?}");
        }
        assert_eq!(parse(b"1"), Some(1));
        assert_eq!(parse(b"1\r\n"), Some(1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn fuzz_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..24)) {
            fuzz_parse(&data);
        }

        #[test]
        fn every_version_round_trips(version in any::<u32>()) {
            prop_assert_eq!(parse(&encode(version)), Some(version));
        }
    }
}
