//! Leases as the keyspace sees them: which exist, their granted TTL, and which keys each holds.
//!
//! Only the replicated part lives here. When a lease expires is not replicated state: the
//! leader's `lease::Lessor` decides that and proposes a `LeaseRevoke`, which lands here like a
//! client's revoke. Nothing here reads a clock.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::command::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeasedPutRequest,
    LeasedPutResponse, RegisterRequest, RegisterResponse,
};
use crate::storage::{Engine, StorageError, Table};

use super::range::KeySpan;
use super::store::{decode_record, MvccStore, OpError};
use super::MvccError;

/// `Table::StateMeta` prefix of lease records, followed by the big-endian lease id.
const LEASE_PREFIX: &[u8] = b"mvcc/lease/";

/// What is stored per lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub(crate) id: i64,
    pub(crate) ttl_secs: i64,
}

/// A lease and the keys attached to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub ttl_secs: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// Every lease, and the reverse map from key to lease for keys that have one.
#[derive(Debug, Default)]
pub(super) struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
    attached: HashMap<Vec<u8>, i64>,
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

    fn insert(&mut self, id: i64, ttl_secs: i64) {
        self.leases.insert(id, Lease { ttl_secs, keys: BTreeSet::new() });
    }

    fn remove(&mut self, id: i64) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        for key in &lease.keys {
            self.attached.remove(key);
        }
        Some(lease)
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

    /// etcd's LeaseGrant: the id is chosen by the proposer, so applying is deterministic.
    pub(super) fn apply_lease_grant(&mut self, request: &LeaseGrantRequest) -> Result<LeaseGrantResponse, OpError> {
        if self.leases.contains(request.id) {
            return Err(MvccError::LeaseExists.into());
        }
        self.grant(request.id, request.ttl_secs)?;
        Ok(LeaseGrantResponse { header_revision: self.current_revision, id: request.id, ttl_secs: request.ttl_secs })
    }

    /// etcd's lessor Revoke: the lease's keys are deleted in key order, all at one revision,
    /// then the lease is forgotten.
    pub(super) fn apply_lease_revoke(&mut self, request: &LeaseRevokeRequest) -> Result<LeaseRevokeResponse, OpError> {
        let Some(lease) = self.leases.get(request.id) else {
            return Err(MvccError::LeaseNotFound.into());
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let mut txn = self.begin_write();
        let mut deleted = Ok(0);
        for key in &keys {
            deleted = self.delete_span(&mut txn, KeySpan::Single(key));
            if deleted.is_err() {
                break;
            }
        }
        self.end_write(txn);
        deleted?;
        self.forget_lease(request.id);
        Ok(LeaseRevokeResponse { header_revision: self.current_revision })
    }

    /// A service registration: puts every key on one lease, reusing the lease the keys already
    /// share when it has the same TTL, otherwise granting `request.lease_id`. A reused lease
    /// with unchanged values writes nothing. A lease left with no key by the move is forgotten.
    pub(super) fn apply_register(&mut self, request: &RegisterRequest) -> Result<RegisterResponse, OpError> {
        let reusable = self.reusable_lease(request);
        let lease = match (request.ttl_secs, reusable) {
            (0, _) => 0,
            (_, Some(lease)) => lease,
            (ttl_secs, None) => {
                if self.leases.contains(request.lease_id) {
                    return Err(MvccError::LeaseExists.into());
                }
                self.grant(request.lease_id, ttl_secs)?;
                request.lease_id
            }
        };
        let unchanged = reusable.is_some() && self.values_equal(&request.puts)?;
        let previous_leases: BTreeSet<i64> =
            request.puts.iter().filter_map(|(key, _)| self.leases.lease_of(key)).collect();
        if !unchanged {
            let mut txn = self.begin_write();
            let mut written = Ok(());
            for (key, value) in &request.puts {
                written = self.put_key(&mut txn, key, value.clone(), lease);
                if written.is_err() {
                    break;
                }
            }
            self.end_write(txn);
            written?;
        }
        for previous in previous_leases {
            if previous != lease && self.leases.get(previous).is_some_and(|l| l.keys.is_empty()) {
                self.forget_lease(previous);
            }
        }
        Ok(RegisterResponse { header_revision: self.current_revision, lease_id: lease, reused: reusable.is_some() })
    }

    /// A put on a shared lease: `reuse` if it exists, else a new `grant_id` of `ttl_secs`.
    pub(super) fn apply_leased_put(&mut self, request: &LeasedPutRequest) -> Result<LeasedPutResponse, OpError> {
        let lease = if request.reuse != 0 && self.leases.contains(request.reuse) {
            request.reuse
        } else {
            if self.leases.contains(request.grant_id) {
                return Err(MvccError::LeaseExists.into());
            }
            self.grant(request.grant_id, request.ttl_secs)?;
            request.grant_id
        };
        let mut txn = self.begin_write();
        let written = self.put_key(&mut txn, &request.key, request.value.clone(), lease);
        self.end_write(txn);
        written?;
        Ok(LeasedPutResponse { header_revision: self.current_revision, lease_id: lease })
    }

    /// The lease every key of the registration holds now, if they share one that has the
    /// registration's TTL.
    fn reusable_lease(&self, request: &RegisterRequest) -> Option<i64> {
        if request.ttl_secs == 0 {
            return None;
        }
        let mut leases = request.puts.iter().map(|(key, _)| self.leases.lease_of(key));
        let first = leases.next()??;
        let shared = leases.all(|lease| lease == Some(first));
        let same_ttl = self.leases.get(first).is_some_and(|lease| lease.ttl_secs == request.ttl_secs);
        (shared && same_ttl).then_some(first)
    }

    fn values_equal(&self, puts: &[crate::command::KeyValuePair]) -> Result<bool, StorageError> {
        for (key, value) in puts {
            let current = self.kvs_at(KeySpan::Single(key), self.current_revision)?;
            if current.first().is_none_or(|kv| &kv.value != value) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn grant(&mut self, id: i64, ttl_secs: i64) -> Result<(), StorageError> {
        let record = LeaseRecord { id, ttl_secs };
        let bytes = postcard::to_allocvec(&record)
            .map_err(|error| StorageError(format!("mvcc: cannot encode lease: {error}")))?;
        self.stage_meta(record_key(id), Some(bytes));
        self.leases.insert(id, ttl_secs);
        Ok(())
    }

    fn forget_lease(&mut self, id: i64) {
        self.leases.remove(id);
        self.stage_meta(record_key(id), None);
    }
}
