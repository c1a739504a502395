//! The durability watermark: a tiny file beside the database that remembers how far the Raft
//! log was made durable and the highest term this member voted in, so that a member whose
//! write-ahead log lost its end refuses to start instead of silently serving less.
//!
//! RocksDB cannot tell a write-ahead log that lost its end (truncated, or its last block
//! damaged) from one whose last write was torn by a crash: both end in an incomplete record, and
//! the second must start (nothing in it was acknowledged). This file tells them apart. After
//! each fsync of the log, the highest index that fsync made durable is written here with one
//! `pwrite` and no fsync: the page cache survives a kill -9, and after a power loss the file can
//! only lag behind the log, which is safe. At start, a log that ends below the mark lost
//! acknowledged entries, and a vote below the mark's term lost a promise.
//!
//! It must never be ahead of the disk: it is raised only after the fsync that covers what it
//! names, and lowered (with an fsync, before the deletion is written) when the log is truncated.
//! It knows nothing of RocksDB; the log store decides when to move it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name in the member's data dir.
pub const FILE_NAME: &str = "raft-watermark";

/// Says what the file is and which layout follows; a later layout takes a new magic.
const MAGIC: [u8; 8] = *b"keel-wm1";

/// magic, log end, vote term, checksum: 8 bytes each. Well inside one disk sector, so a power
/// loss leaves either the old record or the new one, never a mix.
const RECORD_BYTES: usize = 32;

/// What the file records. Both only ever grow, except `log_end` when the log is truncated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// One past the highest log index known to be durable (0: none yet).
    pub log_end: u64,
    /// The highest term of a vote known to be durable (0: none yet).
    pub vote_term: u64,
}

/// The file holds something that is not a record this build wrote: damaged.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct WatermarkDamaged {
    pub path: PathBuf,
    pub what: &'static str,
}

/// The open watermark file and the mark it holds now.
pub struct Watermark {
    path: PathBuf,
    /// std Mutex: held for one `pwrite`, never across an await. It orders the writes with the
    /// values, so the file never goes back to an older record.
    state: Mutex<State>,
}

struct State {
    file: File,
    mark: Mark,
}

impl std::fmt::Debug for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermark").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Reads the mark recorded at `path`: `None` when there is no file or it is empty (a data dir
/// from before this file existed, or one created just before a power loss).
pub fn read(path: &Path) -> Result<Option<Mark>, io::Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode(&bytes)
        .map_err(|what| io::Error::new(io::ErrorKind::InvalidData, WatermarkDamaged { path: path.into(), what }))
}

impl Watermark {
    /// Opens (creating it) the file at `path`, starting from `mark`, what `read` found there
    /// (or nothing). Writes `mark` at once, so that a new file is never left empty.
    pub fn open(path: &Path, mark: Mark) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        file.write_all_at(&encode(mark), 0)?;
        Ok(Self { path: path.to_path_buf(), state: Mutex::new(State { file, mark }) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the log is durable up to `log_end` (exclusive). Call only after the fsync
    /// that covers it returned. One `pwrite`, no fsync (see the module comment).
    pub fn raise_log_end(&self, log_end: u64) -> io::Result<()> {
        self.update(|mark| mark.log_end = mark.log_end.max(log_end), Flush::No)
    }

    /// Records that the log will end at `log_end` (exclusive) at most: call before the
    /// truncation is written. Made durable before it returns, or a power loss could leave the
    /// higher mark above a shorter log and stop a sound member from starting.
    pub fn lower_log_end(&self, log_end: u64) -> io::Result<()> {
        self.update(|mark| mark.log_end = mark.log_end.min(log_end), Flush::Yes)
    }

    /// Records that a vote of `term` is durable. Call only after it was written with an fsync.
    pub fn raise_vote_term(&self, term: u64) -> io::Result<()> {
        self.update(|mark| mark.vote_term = mark.vote_term.max(term), Flush::No)
    }

    fn update(&self, change: impl FnOnce(&mut Mark), flush: Flush) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut mark = state.mark;
        change(&mut mark);
        if mark == state.mark {
            return Ok(());
        }
        state.file.write_all_at(&encode(mark), 0)?;
        if flush == Flush::Yes {
            state.file.sync_data()?;
        }
        state.mark = mark;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flush {
    Yes,
    No,
}

fn encode(mark: Mark) -> [u8; RECORD_BYTES] {
    let mut record = [0u8; RECORD_BYTES];
    record[0..8].copy_from_slice(&MAGIC);
    record[8..16].copy_from_slice(&mark.log_end.to_le_bytes());
    record[16..24].copy_from_slice(&mark.vote_term.to_le_bytes());
    let checksum = fnv1a(&record[0..24]);
    record[24..32].copy_from_slice(&checksum.to_le_bytes());
    record
}

/// The mark in `bytes`; `None` for an empty file; an error saying what is wrong otherwise.
fn decode(bytes: &[u8]) -> Result<Option<Mark>, &'static str> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let record: &[u8; RECORD_BYTES] = bytes.try_into().map_err(|_| "not one watermark record (wrong length)")?;
    let (body, checksum) = record.split_at(24);
    if body[0..8] != MAGIC {
        return Err("not a watermark record (unknown magic)");
    }
    if fnv1a(body).to_le_bytes() != checksum {
        return Err("the watermark record fails its checksum");
    }
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    Ok(Some(Mark { log_end: word(8), vote_term: word(16) }))
}

/// FNV-1a, 64 bits: enough to tell a damaged 24-byte record from a sound one; no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Fuzzing entry point: decodes `data` as a watermark file's content. Must never panic.
#[doc(hidden)]
pub fn fuzz_watermark(data: &[u8]) {
    if let Ok(Some(mark)) = decode(data) {
        // Whatever decodes re-encodes to the same bytes: the layout has one spelling per mark.
        assert_eq!(encode(mark).as_slice(), data, "a decoded watermark re-encodes differently");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_mark_round_trips_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        assert_eq!(read(&path).expect("read"), None, "no file: nothing recorded");
        let watermark = Watermark::open(&path, Mark::default()).expect("open");
        assert_eq!(read(&path).expect("read"), Some(Mark::default()), "a new file is written at once");
        watermark.raise_log_end(10).expect("raise");
        watermark.raise_vote_term(3).expect("raise");
        watermark.raise_log_end(7).expect("a lower raise changes nothing");
        watermark.raise_vote_term(2).expect("a lower raise changes nothing");
        assert_eq!(read(&path).expect("read"), Some(Mark { log_end: 10, vote_term: 3 }));
        watermark.lower_log_end(5).expect("lower");
        watermark.lower_log_end(8).expect("a higher lowering changes nothing");
        assert_eq!(read(&path).expect("read"), Some(Mark { log_end: 5, vote_term: 3 }));

        let reopened = Watermark::open(&path, Mark { log_end: 5, vote_term: 3 }).expect("reopen");
        reopened.raise_log_end(6).expect("raise");
        assert_eq!(read(&path).expect("read"), Some(Mark { log_end: 6, vote_term: 3 }));
    }

    #[test]
    fn an_empty_file_records_nothing_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"").expect("write");
        assert_eq!(read(&path).expect("read"), None);

        let mut record = encode(Mark { log_end: 42, vote_term: 7 });
        record[9] ^= 0x01;
        std::fs::write(&path, record).expect("write");
        let error = read(&path).expect_err("a flipped bit is damage");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        assert!(error.to_string().contains("checksum"), "{error}");

        std::fs::write(&path, &record[..31]).expect("write");
        assert!(read(&path).expect_err("short").to_string().contains("length"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn fuzz_watermark_never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            fuzz_watermark(&data);
        }

        #[test]
        fn fuzz_watermark_never_panics_on_mutated_records(
            log_end in any::<u64>(),
            vote_term in any::<u64>(),
            flips in proptest::collection::vec((0usize..RECORD_BYTES, any::<u8>()), 0..4),
            cut in 0usize..=RECORD_BYTES,
        ) {
            let mut record = encode(Mark { log_end, vote_term }).to_vec();
            prop_assert_eq!(decode(&record), Ok(Some(Mark { log_end, vote_term })));
            for (at, xor) in flips {
                record[at] ^= xor;
            }
            record.truncate(cut);
            fuzz_watermark(&record);
        }
    }
}
