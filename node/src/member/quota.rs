//! `--quota-backend-bytes`: the space a member's database (its state's tables, not the Raft
//! log: etcd counts its backend, not its WAL) may take. A write that adds data and
//! would take the database past it is refused on the member that received it, which raises its
//! NOSPACE alarm through the log (etcd's `quotaKVServer`); from then on every member refuses such
//! writes at apply until an operator makes room (compact, defragment) and disarms the alarm.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::storage::Engine;

/// etcd's default quota when the flag is 0: 2 GiB.
pub const QUOTA_BYTES_DEFAULT: u64 = 2 << 30;

/// How long a measured database size is reused: measuring asks RocksDB for properties of every
/// table, too dear for every write, and the size moves slowly.
const SIZE_REUSED_FOR: Duration = Duration::from_millis(100);

/// The quota and the database size last measured.
#[derive(Debug)]
pub(crate) struct Quota {
    limit: Option<u64>,
    measured: Mutex<Option<(Instant, u64)>>,
}

impl Quota {
    /// `limit`: `None` when the quota is off (a negative `--quota-backend-bytes`).
    pub fn new(limit: Option<u64>) -> Self {
        Quota { limit, measured: Mutex::new(None) }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Whether a write of `cost` more bytes keeps the database under the quota (etcd's
    /// `backendQuota.Available`: size + cost < quota).
    pub fn fits(&self, engine: &dyn Engine, cost: usize) -> bool {
        let Some(limit) = self.limit else { return true };
        let size = self.size(engine);
        size.saturating_add(cost as u64) < limit
    }

    fn size(&self, engine: &dyn Engine) -> u64 {
        let mut measured = self.measured.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *measured {
            Some((at, bytes)) if at.elapsed() < SIZE_REUSED_FOR => bytes,
            _ => {
                let bytes = engine.state_size_bytes();
                *measured = Some((Instant::now(), bytes));
                bytes
            }
        }
    }

    /// Forgets the last measurement, after a defragment changed the size at once.
    pub fn forget_size(&self) {
        *self.measured.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Durability, MemoryEngine, Table, WriteBatch};

    #[test]
    fn writes_fit_below_the_quota_and_always_without_one() {
        let engine = MemoryEngine::default();
        let mut batch = WriteBatch::new();
        batch.put(Table::Kv, b"k".to_vec(), vec![0; 1000]);
        engine.write(batch, Durability::Buffered).expect("write");
        let size = engine.state_size_bytes();
        assert!(size > 0, "the memory engine reports its size");
        let quota = Quota::new(Some(size + 100));
        assert!(quota.fits(&engine, 99));
        assert!(!quota.fits(&engine, 100), "size + cost must stay below the quota, as etcd's");
        assert!(Quota::new(None).fits(&engine, usize::MAX));
    }
}
