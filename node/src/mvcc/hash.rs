//! etcd's Hash and HashKV: checksums that are equal on every member holding the same state,
//! so that a divergent replica shows. CRC-32C (Castagnoli), as etcd computes them.
//!
//! HashKV covers the MVCC records up to a revision. etcd skips records that its asynchronous
//! compaction has scheduled for deletion; here compaction removes them when it is applied, so
//! the records in the `Kv` table are exactly the ones etcd would hash. Both scans read the engine
//! as of one point, taken under the caller's read lock, which is released before the scan runs:
//! a hash of a large keyspace never stalls writes.

use std::sync::RwLockReadGuard;

use crc::{Crc, CRC_32_ISCSI};

use super::revision::{RecordKind, Revision};
use super::store::MvccStore;
use super::{MvccError, ReadError};
use crate::storage::{StorageError, Table};

const CASTAGNOLI: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// What HashKV answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The current revision when the hash was taken (the response header's).
    pub current_revision: i64,
    /// etcd's `compactMainRev`: -1 if the keyspace was never compacted.
    pub compact_revision: i64,
    /// The revision hashed up to (etcd 3.5's `hash_revision`).
    pub hashed_revision: i64,
}

/// What Hash answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateHash {
    pub hash: u32,
    pub current_revision: i64,
}

/// `StateMeta` keys that say how far this member has applied, not what it holds (etcd's Hash
/// ignores its consistent index the same way).
pub type BookkeepingKeys = &'static [&'static [u8]];

/// etcd's `HashByRev`: the hash of every MVCC record up to `revision` (0 = the current one).
/// A revision at or below the compaction point is `Compacted` (etcd's rule, stricter than
/// Range's), one above the current revision is `FutureRevision`.
pub fn hash_kv(store: RwLockReadGuard<'_, MvccStore>, revision: i64) -> Result<KvHash, ReadError> {
    let (current_revision, compact_revision) = (store.current_revision(), store.compact_main_revision());
    if revision > 0 && revision <= compact_revision {
        return Err(ReadError::Rejected(MvccError::Compacted { compact_revision }));
    }
    if revision > current_revision {
        return Err(ReadError::Rejected(MvccError::FutureRevision { current_revision }));
    }
    let upto = if revision == 0 { current_revision } else { revision };
    let upper = Revision::new(upto.saturating_add(1), 0).engine_key(RecordKind::Value);
    let mut digest = CASTAGNOLI.digest();
    digest.update(b"key");
    let engine = store.keyspace.engine_handle();
    let mut store = Some(store);
    engine
        .scan_as_of_now(&[Table::Kv], &mut || drop(store.take()), &mut |_, key, value| {
            if key >= upper.as_slice() {
                return false;
            }
            digest.update(key);
            digest.update(value);
            true
        })
        .map_err(ReadError::Storage)?;
    Ok(KvHash { hash: digest.finalize(), current_revision, compact_revision, hashed_revision: upto })
}

/// etcd's Hash: every record of the replicated state (the keyspace and the state machine's
/// metadata) except `bookkeeping`, table by table.
pub fn hash_state(
    store: RwLockReadGuard<'_, MvccStore>,
    bookkeeping: BookkeepingKeys,
) -> Result<StateHash, StorageError> {
    let current_revision = store.current_revision();
    let mut digest = CASTAGNOLI.digest();
    let engine = store.keyspace.engine_handle();
    let mut store = Some(store);
    let mut last_table = None;
    engine.scan_as_of_now(&[Table::Kv, Table::StateMeta], &mut || drop(store.take()), &mut |table, key, value| {
        if last_table != Some(table) {
            digest.update(table.name().as_bytes());
            last_table = Some(table);
        }
        if table == Table::StateMeta && bookkeeping.contains(&key) {
            return true;
        }
        digest.update(key);
        digest.update(value);
        true
    })?;
    Ok(StateHash { hash: digest.finalize(), current_revision })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;
    use crate::command::{Command, CompactRequest, PutRequest};
    use crate::storage::{Engine, MemoryEngine};

    fn store_with(puts: &[(&str, &str)]) -> RwLock<MvccStore> {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let mut store = MvccStore::open(engine).expect("open");
        for (key, value) in puts {
            let put =
                PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), ..Default::default() };
            store.apply(&Command::Put(put)).expect("put");
            store.commit(Default::default()).expect("commit");
        }
        RwLock::new(store)
    }

    fn kv_hash(store: &RwLock<MvccStore>, revision: i64) -> Result<KvHash, MvccError> {
        hash_kv(store.read().expect("lock"), revision).map_err(ReadError::rejected)
    }

    #[test]
    fn equal_state_hashes_equal_and_any_difference_shows() {
        let a = store_with(&[("a", "1"), ("b", "2")]);
        let b = store_with(&[("a", "1"), ("b", "2")]);
        let c = store_with(&[("a", "1"), ("b", "3")]);
        assert_eq!(kv_hash(&a, 0), kv_hash(&b, 0));
        assert_ne!(kv_hash(&a, 0).expect("hash").hash, kv_hash(&c, 0).expect("hash").hash);
        // Up to the first put, the two differ in nothing.
        assert_eq!(kv_hash(&a, 2).expect("hash").hash, kv_hash(&c, 2).expect("hash").hash);
        let (a, c) = (hash_state(a.read().expect("lock"), &[]), hash_state(c.read().expect("lock"), &[]));
        assert_ne!(a.expect("hash").hash, c.expect("hash").hash);
    }

    #[test]
    fn revisions_follow_etcds_rules() {
        let store = store_with(&[("a", "1"), ("a", "2"), ("a", "3")]);
        let now = kv_hash(&store, 0).expect("hash");
        assert_eq!((now.current_revision, now.compact_revision), (4, -1));
        assert_eq!(kv_hash(&store, 4), Ok(now));
        assert_eq!(kv_hash(&store, 5), Err(MvccError::FutureRevision { current_revision: 4 }));
        {
            let mut writer = store.write().expect("lock");
            writer.apply(&Command::Compact(CompactRequest { revision: 3, physical: false })).expect("compact");
            writer.commit(Default::default()).expect("commit");
        }
        // etcd refuses the compaction point itself, unlike Range.
        assert_eq!(kv_hash(&store, 3), Err(MvccError::Compacted { compact_revision: 3 }));
        let after = kv_hash(&store, 4).expect("hash");
        assert_eq!(after.compact_revision, 3);
        assert_ne!(after.hash, now.hash, "compacted records are no longer hashed");
    }
}
