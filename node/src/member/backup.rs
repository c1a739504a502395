//! Maintenance.Snapshot's backups: a snapshot file of the replicated state written to the
//! member's `<data-dir>/backups/`, streamed to the client, and removed once the stream ends
//! (finished, failed or dropped). Leftovers of a crash are removed at start.
//!
//! The file is framed as etcd frames its snapshots, so that `etcdctl snapshot save` accepts it:
//! etcdctl 3.4 checks that the stream's length is 32 past a multiple of 512 and takes the last
//! 32 bytes as a SHA-256 of the rest. A backup is therefore
//! `snapshot file ‖ zero padding ‖ snapshot file's length (u64, big-endian) ‖ SHA-256 of all
//! before`, the padding making everything before the hash a multiple of 512 bytes. The inner
//! snapshot file keeps its own trailer; `snapshot_length` finds it again.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::error::ServerError;

use super::Member;

/// The directory backups are written in, under the data dir.
pub(super) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// Empties (or makes) the backup directory: a backup file never outlives its stream.
pub(super) fn clear(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)
}

/// A backup on disk, removed when dropped.
#[derive(Debug)]
pub struct BackupFile {
    pub path: PathBuf,
    pub bytes: u64,
}

impl Drop for BackupFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), "cannot remove a streamed backup: {e}");
        }
    }
}

/// Names each backup of this process apart.
static NEXT_BACKUP: AtomicU64 = AtomicU64::new(0);

impl Member {
    /// Writes a backup of the replicated state as this member has applied it (the caller
    /// decides whether a read barrier comes first), off the async threads.
    pub async fn backup(&self) -> Result<BackupFile, ServerError> {
        let number = NEXT_BACKUP.fetch_add(1, Ordering::Relaxed);
        let path = self.backup_dir.join(format!("backup-{number}.snap"));
        let (shared, target) = (self.shared.clone(), path.clone());
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || shared.backup(&target))
            .await
            .map_err(|e| ServerError::Storage(format!("backup: {e}")))?;
        let failed = |e: std::io::Error| {
            let _ = std::fs::remove_file(&path);
            ServerError::Storage(format!("backup: {e}"))
        };
        let meta = written.map_err(failed)?;
        frame(&path).map_err(failed)?;
        let bytes = std::fs::metadata(&path).map_err(failed)?.len();
        tracing::info!(bytes, applied = ?meta.last_log_id, took = ?started.elapsed(), "wrote a backup");
        Ok(BackupFile { path, bytes })
    }
}

/// etcd's snapshot sector: the stream before the hash is a multiple of it.
const SECTOR_BYTES: u64 = 512;
const HASH_BYTES: u64 = 32;
const LENGTH_BYTES: u64 = 8;

/// Appends the framing to the snapshot file at `path`.
fn frame(path: &Path) -> io::Result<()> {
    let length = std::fs::metadata(path)?.len();
    let padding = (SECTOR_BYTES - (length + LENGTH_BYTES) % SECTOR_BYTES) % SECTOR_BYTES;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    io::copy(&mut io::repeat(0).take(padding), &mut file)?;
    file.write_all(&length.to_be_bytes())?;
    let digest = digest_of(path, length + padding + LENGTH_BYTES)?;
    file.write_all(&digest)?;
    file.sync_all()
}

fn digest_of(path: &Path, bytes: u64) -> io::Result<[u8; 32]> {
    digest_of_input(&mut File::open(path)?, bytes)
}

fn digest_of_input(input: &mut impl Read, bytes: u64) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let copied = io::copy(&mut input.take(bytes), &mut hasher)?;
    if copied != bytes {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "backup file is truncated"));
    }
    Ok(hasher.finalize().into())
}

/// The length of the snapshot file inside the backup at `path`: the framed length when the
/// framing is whole (etcd's length rule and the outer SHA-256 hold), else the whole file (a bare
/// snapshot file, or a damaged backup, which the snapshot's own checks then refuse).
pub fn snapshot_length(path: &Path) -> io::Result<u64> {
    let total = std::fs::metadata(path)?.len();
    snapshot_length_from(&mut io::BufReader::new(File::open(path)?), total)
}

/// `snapshot_length` over any seekable input of `total` bytes.
pub fn snapshot_length_from(input: &mut (impl Read + Seek), total: u64) -> io::Result<u64> {
    if total % SECTOR_BYTES != HASH_BYTES || total < SECTOR_BYTES + HASH_BYTES {
        return Ok(total);
    }
    let hashed = total - HASH_BYTES;
    input.seek(SeekFrom::Start(hashed - LENGTH_BYTES))?;
    let mut length = [0u8; 8];
    let mut digest = [0u8; 32];
    input.read_exact(&mut length)?;
    input.read_exact(&mut digest)?;
    let length = u64::from_be_bytes(length);
    input.seek(SeekFrom::Start(0))?;
    if length > hashed - LENGTH_BYTES || digest_of_input(input, hashed)? != digest {
        return Ok(total);
    }
    Ok(length)
}

/// A small framed backup (the sample snapshot file inside), for fuzzing and tests.
pub fn sample_backup() -> Vec<u8> {
    let mut bytes = crate::raft::snapshot::sample_file();
    let length = bytes.len() as u64;
    let padding = (SECTOR_BYTES - (length + LENGTH_BYTES) % SECTOR_BYTES) % SECTOR_BYTES;
    bytes.resize(bytes.len() + padding as usize, 0);
    bytes.extend_from_slice(&length.to_be_bytes());
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    bytes.extend_from_slice(&digest);
    bytes
}

/// Fuzz entry point: a backup file's framing and the snapshot inside, as `keelctl snapshot
/// status` reads them.
pub fn fuzz_backup_file(data: &[u8]) {
    let total = data.len() as u64;
    let Ok(length) = snapshot_length_from(&mut io::Cursor::new(data), total) else { return };
    if crate::raft::snapshot::verify_from(io::Cursor::new(data), length).is_ok() {
        let _ = crate::raft::snapshot::summarize_from(io::Cursor::new(data), length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_backup_has_etcds_length_and_hash_and_gives_its_snapshot_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("b.snap");
        let snapshot = crate::raft::snapshot::sample_file();
        std::fs::write(&path, &snapshot).expect("write");
        assert_eq!(snapshot_length(&path).expect("bare"), snapshot.len() as u64, "a bare file is itself");
        frame(&path).expect("frame");
        let framed = std::fs::read(&path).expect("read");
        assert_eq!(framed, sample_backup(), "framed on disk as in memory");
        assert_eq!(framed.len() as u64 % SECTOR_BYTES, HASH_BYTES, "etcdctl's hasChecksum");
        let (body, hash) = framed.split_at(framed.len() - 32);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(body)).as_slice(), hash, "etcd's trailing SHA-256");
        let length = snapshot_length(&path).expect("framed");
        assert_eq!(length, snapshot.len() as u64);
        crate::raft::snapshot::verify_prefix(&path, length).expect("the snapshot inside verifies");

        let mut damaged = framed.clone();
        damaged[framed.len() - 40] ^= 1;
        std::fs::write(&path, &damaged).expect("write");
        assert_eq!(snapshot_length(&path).expect("damaged"), framed.len() as u64, "damaged framing: the whole file");
        assert!(crate::raft::snapshot::verify(&path).is_err(), "which its own checks refuse");
    }
}
