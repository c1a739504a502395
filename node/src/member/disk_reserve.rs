//! `--min-free-disk-bytes`: the free space a member keeps on its data dir's filesystem. A disk
//! that fills under RocksDB fails a write of the Raft log, and openraft stops for good on a
//! storage error: the member would have to exit. So a member stops taking writes before that:
//! while its filesystem has less than the reserve free, writes that add data are refused with
//! etcd's `etcdserver: mvcc: database space exceeded` and the member raises its NOSPACE alarm,
//! exactly as when `--quota-backend-bytes` is exceeded. Reads, deletes and compactions go on;
//! once an operator has made room, `etcdctl alarm disarm` lets writes in again, without a
//! restart. The reserve leaves room for what still must be written: the alarm itself, the
//! Raft log of writes already accepted, RocksDB's flushes and compactions.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The reserve when the flag is not given: room for RocksDB to flush all its memtables (48 MiB
/// at most, `storage::rocks`), with margin. A large compaction can need more; running out then
/// stops the member as before (nothing acknowledged is lost), so the reserve is a guard for the
/// common case, kept small enough not to refuse writes on a small but healthy disk.
pub const DISK_RESERVE_BYTES_DEFAULT: u64 = 64 << 20;

/// How long a measured free space that had room is reused (a `statvfs` per write would be cheap,
/// but one per applied batch on every member adds up for nothing: space moves slowly).
const FREE_REUSED_FOR: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct DiskReserve {
    dir: PathBuf,
    /// 0: no reserve.
    bytes: u64,
    measured: Mutex<Option<(Instant, u64)>>,
}

/// The filesystem has less free than the reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shortfall {
    pub free: u64,
    pub reserve: u64,
}

impl DiskReserve {
    pub fn new(dir: &Path, bytes: u64) -> Self {
        DiskReserve { dir: dir.to_path_buf(), bytes, measured: Mutex::new(None) }
    }

    pub fn is_on(&self) -> bool {
        self.bytes > 0
    }

    /// `Err` when writing `cost` more bytes would leave less than the reserve free. A
    /// filesystem that cannot be measured is not refused (the write fails on its own if the
    /// disk is the problem).
    pub fn check(&self, cost: usize) -> Result<(), Shortfall> {
        if !self.is_on() {
            return Ok(());
        }
        let cost = u64::try_from(cost).unwrap_or(u64::MAX);
        let fits = |free: u64| free.saturating_sub(cost) >= self.bytes;
        let mut measured = self.measured.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, free)) = *measured {
            if at.elapsed() < FREE_REUSED_FOR && fits(free) {
                return Ok(());
            }
        }
        // Measured afresh whenever the last measure is old or says no: once an operator has
        // made room, the very next write sees it.
        let Some(free) = free_bytes(&self.dir) else { return Ok(()) };
        *measured = Some((Instant::now(), free));
        if fits(free) {
            Ok(())
        } else {
            Err(Shortfall { free, reserve: self.bytes })
        }
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(stat) => stat.blocks_available().checked_mul(stat.fragment_size()),
        Err(error) => {
            tracing::debug!(dir = %dir.display(), "cannot measure free disk space: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_none_never_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let free = free_bytes(dir.path()).expect("a temp dir's filesystem can be measured");
        assert!(DiskReserve::new(dir.path(), 0).check(usize::MAX).is_ok(), "no reserve, no refusal");
        assert!(DiskReserve::new(dir.path(), 1).check(0).is_ok() || free == 0);
        let shortfall = DiskReserve::new(dir.path(), u64::MAX).check(0).expect_err("no disk is that large");
        assert_eq!(shortfall.reserve, u64::MAX);
    }
}
