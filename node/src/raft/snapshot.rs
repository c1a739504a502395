//! Snapshot files: the state machine's tables streamed to disk, never held whole in memory.
//!
//! The magic's last byte is the file's format version (`KEELSNP2`: version 2); a file of a
//! version this build does not read is refused as such, not as "not a snapshot".
//!
//! Layout (version 2): `MAGIC`, a length-prefixed postcard `SnapshotMeta`, then records
//! `[table tag u8][key len u32][key][value len u32][value]`, a final `END` tag, and a trailer:
//! the length of everything before it (u64, big-endian) and its SHA-256. The same file is what
//! a leader streams to a lagging member in bounded chunks, so a stream cut short or a file
//! damaged on disk fails `verify` — which runs before an install touches anything — instead of
//! being installed as a smaller state. Version 1 files (no trailer) are still read: their
//! records must parse to the `END` tag with nothing after it.
// Outside bytes reach this module: an index out of range would be a panic on input.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::codec::{decode, encode};
use super::SnapshotMeta;
use crate::storage::{Durability, Engine, Table, WriteBatch};

const MAGIC: &[u8; 8] = b"KEELSNP2";
/// Files written before the trailer existed.
const MAGIC_V1: &[u8; 8] = b"KEELSNP1";
/// What every version's magic starts with; the version follows.
const MAGIC_PREFIX: &[u8; 7] = b"KEELSNP";
const END: u8 = 0;
/// Body length (u64) and SHA-256 of the body.
const TRAILER_BYTES: usize = 8 + 32;

/// The tables a snapshot carries: everything the state machine owns, nothing of the log.
const SNAPSHOT_TABLES: [(u8, Table); 2] = [(1, Table::Kv), (2, Table::StateMeta)];

/// Records per engine batch while installing: bounds memory for any snapshot size.
const INSTALL_BATCH_RECORDS: usize = 4096;

/// Bytes per chunk when a snapshot is sent to a peer.
pub const CHUNK_BYTES: usize = 1 << 20;

/// A snapshot on disk. Cheap to clone: it names the file, it does not hold its bytes.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

fn table_for_tag(tag: u8) -> Option<Table> {
    SNAPSHOT_TABLES.iter().find(|(t, _)| *t == tag).map(|(_, table)| *table)
}

/// The file name a snapshot of `meta` is stored under; names sort in log order.
pub fn file_name(meta: &SnapshotMeta) -> String {
    let index = meta.last_log_id.map_or(0, |id| id.index);
    format!("{index:020}.snap")
}

/// Writes the snapshot file of `engine`'s tables at `path`, as of the point in time at which
/// `fixed` is called (before anything is read): the state machine may apply more entries
/// meanwhile without them showing in the file. Written through a temp file, so a crash never
/// leaves a half-written snapshot under the final name.
pub fn write(engine: &Arc<dyn Engine>, meta: &SnapshotMeta, path: &Path, fixed: &mut dyn FnMut()) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = write_body(engine, meta, &tmp, fixed).and_then(|file| {
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        // Nothing half-written stays behind under any name.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes the whole file at `tmp` and returns it, not yet synced.
fn write_body(engine: &Arc<dyn Engine>, meta: &SnapshotMeta, tmp: &Path, fixed: &mut dyn FnMut()) -> io::Result<File> {
    let out = write_to(engine, meta, BufWriter::new(File::create(tmp)?), fixed)?;
    out.into_inner().map_err(|e| e.into_error())
}

/// Writes the snapshot of `engine` to `out`: header, records, `END` and trailer.
fn write_to<W: Write>(engine: &Arc<dyn Engine>, meta: &SnapshotMeta, out: W, fixed: &mut dyn FnMut()) -> io::Result<W> {
    let mut out = HashingWriter::new(out);
    out.write_all(MAGIC)?;
    write_chunk(&mut out, &encode(meta)?)?;
    let tables: Vec<Table> = SNAPSHOT_TABLES.iter().map(|(_, table)| *table).collect();
    let mut write_err = None;
    engine
        .scan_as_of_now(&tables, fixed, &mut |table, key, value| {
            let Some((tag, _)) = SNAPSHOT_TABLES.iter().find(|(_, t)| *t == table) else { return false };
            let res = out
                .write_all(&[*tag])
                .and_then(|_| write_chunk(&mut out, key))
                .and_then(|_| write_chunk(&mut out, value));
            match res {
                Ok(()) => true,
                Err(e) => {
                    write_err = Some(e);
                    false
                }
            }
        })
        .map_err(io::Error::other)?;
    if let Some(e) = write_err {
        return Err(e);
    }
    out.write_all(&[END])?;
    let (mut out, body_bytes, digest) = out.finish();
    out.write_all(&body_bytes.to_be_bytes())?;
    out.write_all(&digest)?;
    Ok(out)
}

/// A small valid snapshot file, for fuzzing and tests: two records, one in each table.
pub fn sample_file() -> Vec<u8> {
    let engine: Arc<dyn Engine> = Arc::new(crate::storage::MemoryEngine::new());
    let mut batch = WriteBatch::new();
    batch.put(Table::Kv, b"key".to_vec(), b"value".to_vec());
    batch.put(Table::StateMeta, b"meta".to_vec(), b"1".to_vec());
    let meta = SnapshotMeta { last_log_id: None, last_membership: Default::default() };
    let written = engine.write(batch, Durability::Sync).and_then(|()| {
        write_to(&engine, &meta, Vec::new(), &mut || {}).map_err(|e| crate::storage::StorageError(e.to_string()))
    });
    written.unwrap_or_default()
}

/// A writer that counts and hashes what goes through it: the trailer's two fields.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }

    fn finish(self) -> (W, u64, [u8; 32]) {
        (self.inner, self.bytes, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        let accepted = buf.get(..written).ok_or_else(|| io::Error::other("writer accepted more bytes than given"))?;
        self.hasher.update(accepted);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads only the metadata of a snapshot file.
pub fn read_meta(path: &Path) -> io::Result<SnapshotMeta> {
    let mut input = BufReader::new(File::open(path)?);
    read_header(&mut input)
}

/// Checks that the file at `path` is a whole snapshot, as it was written: the trailer's length
/// and SHA-256 match (version 2), and every record parses up to the `END` tag with nothing
/// after it. Reads the file twice at most, in bounded buffers. Answers its metadata.
pub fn verify(path: &Path) -> io::Result<SnapshotMeta> {
    let file_bytes = std::fs::metadata(path)?.len();
    verify_prefix(path, file_bytes)
}

/// `verify` of the first `length` bytes of the file at `path` (a snapshot inside a backup's
/// framing: `member::backup`).
pub fn verify_prefix(path: &Path, length: u64) -> io::Result<SnapshotMeta> {
    verify_from(BufReader::new(File::open(path)?), length)
}

/// `verify` over any seekable input of `total_bytes`.
pub fn verify_from(mut input: impl BufRead + Seek, total_bytes: u64) -> io::Result<SnapshotMeta> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(|_| invalid("snapshot file is truncated"))?;
    let body_bytes = match version(&magic)? {
        Version::Trailed => {
            let body_bytes =
                total_bytes.checked_sub(TRAILER_BYTES as u64).ok_or_else(|| invalid("snapshot file is truncated"))?;
            input.rewind()?;
            verify_digest(&mut input, body_bytes)?;
            input.seek(io::SeekFrom::Start(magic.len() as u64))?;
            body_bytes
        }
        Version::Untrailed => total_bytes,
    };
    let meta: SnapshotMeta = decode(&read_chunk(&mut input)?)?;
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag).map_err(|_| invalid("snapshot file is truncated"))?;
        if tag[0] == END {
            break;
        }
        table_for_tag(tag[0]).ok_or_else(|| invalid("unknown table tag in snapshot"))?;
        skip_chunk(&mut input)?;
        skip_chunk(&mut input)?;
    }
    if input.stream_position()? != body_bytes {
        return Err(invalid("snapshot file has bytes after its end"));
    }
    Ok(meta)
}

/// What a snapshot file holds, read record by record (call `verify` first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub meta: SnapshotMeta,
    /// Records of every table.
    pub records: u64,
    /// The keyspace's current revision as recorded (1, an empty keyspace's, if none is).
    pub revision: i64,
    /// The trailer's SHA-256 (zeros for a version 1 file, which has none).
    pub digest: [u8; 32],
}

/// Reads the records of the snapshot in the first `total_bytes` of `path`, in bounded buffers,
/// and summarises them.
pub fn summarize(path: &Path, total_bytes: u64) -> io::Result<Summary> {
    summarize_from(BufReader::new(File::open(path)?), total_bytes)
}

/// `summarize` over any seekable input holding the snapshot in its first `total_bytes`.
pub fn summarize_from(mut input: impl BufRead + Seek, total_bytes: u64) -> io::Result<Summary> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    let trailed = matches!(version(&magic)?, Version::Trailed);
    let meta: SnapshotMeta = decode(&read_chunk(&mut input)?)?;
    let (mut records, mut revision) = (0u64, 1i64);
    while let Some((table, key, value)) = next_record(&mut input)? {
        if table == Table::StateMeta {
            revision = crate::mvcc::current_revision_record(&key, &value).unwrap_or(revision);
        }
        records = records.saturating_add(1);
    }
    let mut digest = [0u8; 32];
    if trailed {
        input.seek(io::SeekFrom::Start(total_bytes.saturating_sub(32)))?;
        input.read_exact(&mut digest)?;
    }
    Ok(Summary { meta, records, revision, digest })
}

/// The trailer at `body_bytes` holds the body's length and SHA-256; `input` is at the start.
fn verify_digest(input: &mut impl Read, body_bytes: u64) -> io::Result<()> {
    let mut hasher = Sha256::new();
    if io::copy(&mut input.by_ref().take(body_bytes), &mut hasher)? != body_bytes {
        return Err(invalid("snapshot file is truncated"));
    }
    let mut length = [0u8; 8];
    let mut digest = [0u8; 32];
    input.read_exact(&mut length)?;
    input.read_exact(&mut digest)?;
    if u64::from_be_bytes(length) != body_bytes || <[u8; 32]>::from(hasher.finalize()) != digest {
        return Err(invalid("snapshot file is damaged or incomplete (length or checksum mismatch)"));
    }
    Ok(())
}

/// Replaces the state machine's tables with the snapshot's contents, in bounded batches.
/// The caller writes the applied log id afterwards: until then a crash leaves a state that
/// claims nothing newer than before, and the snapshot is installed again.
pub fn install(engine: &Arc<dyn Engine>, path: &Path) -> io::Result<SnapshotMeta> {
    install_prefix(engine, path, std::fs::metadata(path)?.len())
}

/// `install` of the snapshot in the first `length` bytes of the file at `path`.
pub fn install_prefix(engine: &Arc<dyn Engine>, path: &Path, length: u64) -> io::Result<SnapshotMeta> {
    // Before anything is deleted: a damaged file must leave the state as it was.
    verify_prefix(path, length)?;
    let mut input = BufReader::new(File::open(path)?);
    let meta = read_header(&mut input)?;
    let mut batch = WriteBatch::new();
    for (_, table) in SNAPSHOT_TABLES {
        delete_whole_table(engine, table, &mut batch)?;
    }
    while let Some((table, key, value)) = next_record(&mut input)? {
        batch.put(table, key, value);
        if batch.len() >= INSTALL_BATCH_RECORDS {
            engine.write(std::mem::take(&mut batch), Durability::Buffered).map_err(io::Error::other)?;
        }
    }
    engine.write(batch, Durability::Buffered).map_err(io::Error::other)?;
    engine.sync().map_err(io::Error::other)?;
    Ok(meta)
}

/// Adds to `batch` the deletion of every key `table` holds now. The engine's ranges need an
/// end, and no fixed key is above every key (a key of 64 0xff bytes is below one of 65): the
/// end is the table's last key followed by a zero byte, the least key above it. Nothing else
/// writes the state machine's tables while a snapshot is installed.
fn delete_whole_table(engine: &Arc<dyn Engine>, table: Table, batch: &mut WriteBatch) -> io::Result<()> {
    if let Some(mut end) = engine.last_key(table).map_err(io::Error::other)? {
        end.push(0);
        batch.delete_range(table, Vec::new(), end);
    }
    Ok(())
}

/// One record of a snapshot: its table, key and value.
type Record = (Table, Vec<u8>, Vec<u8>);

/// The next record after the header; `None` at the `END` tag.
fn next_record(input: &mut impl Read) -> io::Result<Option<Record>> {
    let mut tag = [0u8; 1];
    input.read_exact(&mut tag)?;
    if tag[0] == END {
        return Ok(None);
    }
    let table = table_for_tag(tag[0]).ok_or_else(|| invalid("unknown table tag in snapshot"))?;
    let key = read_chunk(input)?;
    let value = read_chunk(input)?;
    Ok(Some((table, key, value)))
}

fn read_header(input: &mut impl Read) -> io::Result<SnapshotMeta> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    version(&magic)?;
    decode(&read_chunk(input)?)
}

/// The format versions this build reads.
enum Version {
    /// 1: no trailer.
    Untrailed,
    /// 2: length and SHA-256 trailer.
    Trailed,
}

/// The version `magic` names, or an error saying it is not a snapshot or not a version this
/// build reads.
fn version(magic: &[u8; 8]) -> io::Result<Version> {
    match magic {
        MAGIC => Ok(Version::Trailed),
        MAGIC_V1 => Ok(Version::Untrailed),
        [prefix @ .., version] if prefix == MAGIC_PREFIX => Err(invalid(&format!(
            "snapshot file format version {} is not one this keel reads (it reads versions 1 and 2): the file \
             was written by another version of Keel",
            char::from(*version).escape_default()
        ))),
        _ => Err(invalid("not a Keel snapshot file")),
    }
}

/// Largest key or value a snapshot record may hold: a corrupt length fails instead of
/// allocating gigabytes.
const RECORD_BYTES_MAX: usize = 64 << 20;

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| invalid("snapshot record too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

fn read_chunk(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > RECORD_BYTES_MAX {
        return Err(invalid("snapshot record length out of bounds"));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

fn skip_chunk(input: &mut impl BufRead) -> io::Result<()> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(|_| invalid("snapshot file is truncated"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > RECORD_BYTES_MAX {
        return Err(invalid("snapshot record length out of bounds"));
    }
    let skipped = io::copy(&mut input.take(len as u64), &mut io::sink())?;
    if skipped != len as u64 {
        return Err(invalid("snapshot file is truncated"));
    }
    Ok(())
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::LogId;
    use crate::storage::MemoryEngine;

    fn meta(index: u64) -> SnapshotMeta {
        let leader = openraft::vote::leader_id_adv::LeaderId { term: 2, node_id: 1 };
        SnapshotMeta { last_log_id: Some(LogId::new(leader, index)), last_membership: Default::default() }
    }

    /// An engine with a few records in both snapshot tables, and its snapshot file.
    fn snapshot_of_a_small_state(dir: &Path) -> (Arc<dyn Engine>, PathBuf) {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut batch = WriteBatch::new();
        for i in 0..200u32 {
            batch.put(Table::Kv, i.to_be_bytes(), vec![b'v'; 100]);
        }
        batch.put(Table::StateMeta, b"k".to_vec(), b"v".to_vec());
        engine.write(batch, Durability::Sync).expect("write");
        std::fs::create_dir_all(dir).expect("dir");
        let path = dir.join("00000000000000000007.snap");
        write(&engine, &meta(7), &path, &mut || {}).expect("snapshot");
        (engine, path)
    }

    fn kv_count(engine: &Arc<dyn Engine>) -> usize {
        let mut count = 0;
        engine
            .scan(Table::Kv, crate::storage::KeyRange::all(), crate::storage::Direction::Forward, &mut |_, _| {
                count += 1;
                true
            })
            .expect("scan");
        count
    }

    #[test]
    fn a_whole_snapshot_verifies_and_installs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, path) = snapshot_of_a_small_state(dir.path());
        assert_eq!(verify(&path).expect("verifies"), meta(7));
        let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        assert_eq!(install(&target, &path).expect("installs"), meta(7));
        assert_eq!(kv_count(&target), 200);
    }

    #[test]
    fn a_cut_or_damaged_snapshot_is_refused_and_the_state_stays_as_it_was() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, path) = snapshot_of_a_small_state(dir.path());
        let whole = std::fs::read(&path).expect("read");
        // The receiving member's state, which a bad install must not touch.
        let (target, _) = snapshot_of_a_small_state(&dir.path().join("target"));
        let damaged = dir.path().join("damaged.snap");
        let cuts = (0..whole.len()).step_by(97).chain([whole.len() - 1]);
        for cut in cuts {
            std::fs::write(&damaged, &whole[..cut]).expect("write");
            assert!(verify(&damaged).is_err(), "cut at {cut} of {}", whole.len());
            assert!(install(&target, &damaged).is_err());
            assert_eq!(kv_count(&target), 200, "cut at {cut}: the state was touched");
        }
        for at in (0..whole.len()).step_by(131) {
            let mut flipped = whole.clone();
            flipped[at] ^= 0x20;
            std::fs::write(&damaged, &flipped).expect("write");
            assert!(verify(&damaged).is_err(), "byte {at} flipped");
        }
        let mut longer = whole.clone();
        longer.push(0);
        std::fs::write(&damaged, &longer).expect("write");
        assert!(verify(&damaged).is_err(), "a byte appended");
    }

    #[test]
    fn an_install_replaces_every_key_however_high() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, path) = snapshot_of_a_small_state(dir.path());
        let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut stale = WriteBatch::new();
        for table in [Table::Kv, Table::StateMeta] {
            // At and above 64 0xff bytes, where the fixed range installs deleted once ended.
            stale.put(table, vec![0xff; 65], b"stale".to_vec());
            stale.put(table, vec![0xff; 64], b"stale".to_vec());
            stale.put(table, Vec::new(), b"stale".to_vec());
        }
        target.write(stale, Durability::Sync).expect("write");
        install(&target, &path).expect("installs");
        assert_eq!(kv_count(&target), 200);
        for table in [Table::Kv, Table::StateMeta] {
            for key in [vec![0xff; 65], vec![0xff; 64], Vec::new()] {
                assert_eq!(target.get(table, &key).expect("get"), None, "{table:?} {} bytes", key.len());
            }
        }
        assert_eq!(target.get(Table::StateMeta, b"k").expect("get"), Some(b"v".to_vec()));
    }

    /// Lease ids at the edges of i64: negative ones are stored with a first byte of 0xff.
    #[test]
    fn leases_with_ids_at_the_edges_and_their_keys_come_through_a_snapshot() {
        use crate::command::{Command, CommandResponse, LeaseGrantRequest, LeaseRevokeRequest, PutRequest};
        use crate::mvcc::MvccStore;

        const IDS: [i64; 5] = [i64::MIN, -5, -1, 1, i64::MAX];
        let source: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut store = MvccStore::open(source.clone()).expect("open");
        for id in IDS {
            let granted = store.apply(&Command::LeaseGrant(LeaseGrantRequest { id, ttl_secs: 30 })).expect("grant");
            assert!(matches!(granted, CommandResponse::LeaseGrant(_)), "grant {id}: {granted:?}");
            let put = PutRequest { key: format!("k{id}").into_bytes(), lease: id, ..PutRequest::default() };
            assert!(matches!(store.apply(&Command::Put(put)).expect("put"), CommandResponse::Put(_)));
        }
        store.commit(WriteBatch::new()).expect("commit");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("00000000000000000009.snap");
        write(&source, &meta(9), &path, &mut || {}).expect("snapshot");

        let target: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        install(&target, &path).expect("installs");
        let mut installed = MvccStore::open(target).expect("open the installed state");
        assert_eq!(installed.leases(), store.leases());
        for id in IDS {
            let key = format!("k{id}").into_bytes();
            let keys: Vec<Vec<u8>> =
                installed.lease(id).map(|lease| lease.keys.iter().cloned().collect()).unwrap_or_default();
            assert_eq!(keys, vec![key.clone()], "keys of lease {id}");
            let revoked = installed.apply(&Command::LeaseRevoke(LeaseRevokeRequest { id })).expect("revoke");
            assert!(matches!(revoked, CommandResponse::LeaseRevoke(_)), "revoke {id}: {revoked:?}");
            assert!(installed.lease(id).is_none());
        }
        assert_eq!(installed.key_count(), 0, "every leased key went with its lease");
    }

    #[test]
    fn a_file_of_another_version_is_refused_as_such() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (target, path) = snapshot_of_a_small_state(dir.path());
        let mut newer = std::fs::read(&path).expect("read");
        newer[..8].copy_from_slice(b"KEELSNP3");
        std::fs::write(&path, &newer).expect("write");
        for error in [verify(&path).expect_err("verify"), read_meta(&path).expect_err("read_meta")] {
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains("format version 3 is not one this keel reads"), "{error}");
            assert!(error.to_string().contains("versions 1 and 2"), "{error}");
        }
        assert!(install(&target, &path).is_err());
        assert_eq!(kv_count(&target), 200, "the state was touched");
        newer[..8].copy_from_slice(b"NOTASNAP");
        std::fs::write(&path, &newer).expect("write");
        assert!(verify(&path).expect_err("verify").to_string().contains("not a Keel snapshot file"));
    }

    #[test]
    fn files_from_before_the_trailer_still_install_when_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, path) = snapshot_of_a_small_state(dir.path());
        let mut v1 = std::fs::read(&path).expect("read");
        v1.truncate(v1.len() - TRAILER_BYTES);
        v1[..8].copy_from_slice(MAGIC_V1);
        std::fs::write(&path, &v1).expect("write");
        assert_eq!(verify(&path).expect("a whole v1 file"), meta(7));
        std::fs::write(&path, &v1[..v1.len() - 1]).expect("write");
        assert!(verify(&path).is_err(), "a v1 file without its END tag");
    }
}
