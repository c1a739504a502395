//! The leases sub-store: which leases exist, their granted TTL, and which keys each holds. It
//! owns the `mvcc/lease/` records of `Table::StateMeta` and stages its own changes to them;
//! the commands that grant, revoke and use leases live in `crate::apply`.
//!
//! Only the replicated part lives here. When a lease expires is not replicated state: the
//! leader's `lease::Lessor` decides that and proposes a `LeaseRevoke`, which lands here like a
//! client's revoke. Nothing here reads a clock.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub(crate) use keel_model::stored::LeaseRecord;

use crate::storage::{Engine, StorageError, Table, WriteBatch};

use super::keyspace::decode_record;
use super::store::MvccStore;

/// `Table::StateMeta` prefix of lease records, followed by the big-endian lease id.
const LEASE_PREFIX: &[u8] = b"mvcc/lease/";

/// A lease and the keys attached to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub ttl_secs: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// Every lease, and the reverse map from key to lease for keys that have one.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
    attached: HashMap<Vec<u8>, i64>,
    /// Lease records granted (`Some`) or forgotten (`None`) since the last commit.
    staged: BTreeMap<i64, Option<LeaseRecord>>,
}

impl LeaseTable {
    /// Loads the lease records; keys are attached afterwards from the live key records.
    pub fn load(engine: &dyn Engine) -> Result<Self, StorageError> {
        let mut table = LeaseTable::default();
        let mut failure = None;
        engine.scan_prefix(Table::StateMeta, LEASE_PREFIX, &mut |key, value| match decode_record::<LeaseRecord>(
            value,
            format_args!("lease record {key:?}"),
        ) {
            Ok(record) => {
                table.leases.insert(record.id, Lease { ttl_secs: record.ttl_secs, keys: BTreeSet::new() });
                true
            }
            Err(error) => {
                failure = Some(error);
                false
            }
        })?;
        failure.map_or(Ok(table), Err)
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = (i64, &Lease)> {
        self.leases.iter().map(|(id, lease)| (*id, lease))
    }

    pub fn lease_of(&self, key: &[u8]) -> Option<i64> {
        self.attached.get(key).copied()
    }

    /// Records that `key` now belongs to `lease` (0 = none), leaving its previous lease.
    pub fn attach(&mut self, key: &[u8], lease: i64) {
        self.detach(key);
        if lease == 0 {
            return;
        }
        if let Some(entry) = self.leases.get_mut(&lease) {
            entry.keys.insert(key.to_vec());
            self.attached.insert(key.to_vec(), lease);
        }
    }

    pub fn detach(&mut self, key: &[u8]) {
        if let Some(previous) = self.attached.remove(key) {
            if let Some(entry) = self.leases.get_mut(&previous) {
                entry.keys.remove(key);
            }
        }
    }

    /// Grants lease `id` with no keys. The caller has checked that it does not exist.
    pub fn grant(&mut self, id: i64, ttl_secs: i64) {
        self.leases.insert(id, Lease { ttl_secs, keys: BTreeSet::new() });
        self.staged.insert(id, Some(LeaseRecord { id, ttl_secs }));
    }

    /// Forgets lease `id` and which keys it held (the caller deletes those keys).
    pub fn forget(&mut self, id: i64) {
        if let Some(lease) = self.leases.remove(&id) {
            for key in &lease.keys {
                self.attached.remove(key);
            }
        }
        self.staged.insert(id, None);
    }

    /// Moves the records staged since the last call into `batch`.
    pub fn take_staged(&mut self, batch: &mut WriteBatch) -> Result<(), StorageError> {
        for (id, record) in std::mem::take(&mut self.staged) {
            match record {
                Some(record) => {
                    let bytes = postcard::to_allocvec(&record)
                        .map_err(|error| StorageError(format!("mvcc: cannot encode lease: {error}")))?;
                    batch.put(Table::StateMeta, record_key(id), bytes);
                }
                None => batch.delete(Table::StateMeta, record_key(id)),
            }
        }
        Ok(())
    }
}

pub(crate) fn record_key(id: i64) -> Vec<u8> {
    let mut key = LEASE_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl MvccStore {
    /// The lease `id`, if it exists.
    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// Every lease with its granted TTL, by id.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.leases.ids().map(|(id, lease)| (id, lease.ttl_secs)).collect()
    }
}
