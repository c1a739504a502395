//! micro's key-value Store as a typed view over the keyspace: records at
//! `/micro/store/<database>/<table>/<key>`, each value a JSON envelope with the record's bytes,
//! metadata and expiry.
//!
//! Expiry has two halves. Reads hide a record from the second its expiry passes (each record
//! carries its exact expiry). Removal rides on leases shared by every record whose expiry
//! falls in the same `EXPIRY_BUCKET_SECS` bucket, granted to end at the bucket's end, so a
//! record is never removed before its expiry and a burst of writes costs a few leases, not one
//! each.
//!
//! Pure apart from the bucket cache: keys, envelopes, validation, filtering and paging.
// Times, TTLs, offsets and counts here come from clients: arithmetic is checked or saturating.
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keel_client::names::{self, NameError, NameRule};
use serde::{Deserialize, Serialize};

use crate::command::KeyValue;

pub const PREFIX: &str = "/micro/store/";
pub const DEFAULT_NAME: &str = keel_client::store::DEFAULT_NAME;

/// Records expiring within the same bucket of this many seconds share one lease.
pub const EXPIRY_BUCKET_SECS: i64 = 10;

/// A record's value may be at most this large (1 MiB): it must fit a request with its key
/// and metadata under etcd's 1.5 MiB request limit.
pub const VALUE_BYTES_MAX: usize = keel_client::store::VALUE_BYTES_MAX;

/// Keys longer than this are refused (etcd's practical bound is the request size; records
/// are addressed by key in every read, so keep them small).
pub const KEY_BYTES_MAX: usize = keel_client::store::KEY_BYTES_MAX;

/// Database and table names: path segments of every record key.
pub const NAME_BYTES_MAX: usize = keel_client::store::NAME_BYTES_MAX;

/// The longest lifetime of a record, in seconds: etcd's MaxLeaseTTL less two expiry buckets,
/// so the bucket's lease (which ends up to a bucket after the record) stays within MaxLeaseTTL.
pub const TTL_MAX_SECS: i64 = keel_client::store::TTL_MAX_SECS;
const _: () = assert!(TTL_MAX_SECS + 2 * EXPIRY_BUCKET_SECS <= crate::lease::LEASE_TTL_MAX_SECS);

/// Keys per List response message.
pub const LIST_PAGE_KEYS: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store: key is empty")]
    EmptyKey,
    #[error("store: key is longer than {KEY_BYTES_MAX} bytes")]
    KeyTooLong,
    /// A database or table name that breaks the one rule of `keel_client::names`.
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("store: value is larger than {VALUE_BYTES_MAX} bytes")]
    ValueTooLarge,
    #[error("store: ttl must be greater than 0 seconds")]
    BadTtl,
    #[error("store: ttl must be at most {TTL_MAX_SECS} seconds")]
    TtlTooLarge,
    #[error("store: expiry must be at most {TTL_MAX_SECS} seconds from now")]
    ExpiryTooFar,
    #[error("store: expiry must be in the future")]
    ExpiryInPast,
    #[error("store: give ttl or expiry, not both")]
    TtlAndExpiry,
    #[error("store: not found")]
    NotFound,
}

/// A database and table, defaults applied and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub database: String,
    pub table: String,
}

impl Table {
    pub fn new(database: &str, table: &str) -> Result<Table, StoreError> {
        Ok(Table { database: name(&names::STORE_DATABASE, database)?, table: name(&names::STORE_TABLE, table)? })
    }

    /// The prefix of every record of this table.
    pub fn prefix(&self) -> Vec<u8> {
        format!("{PREFIX}{}/{}/", self.database, self.table).into_bytes()
    }

    pub fn record_key(&self, key: &str) -> Vec<u8> {
        let mut full = self.prefix();
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The record key of a full keyspace key of this table.
    pub fn key_of<'k>(&self, full: &'k [u8]) -> Option<&'k str> {
        std::str::from_utf8(full.strip_prefix(self.prefix().as_slice())?).ok()
    }
}

fn name(rule: &NameRule, name: &str) -> Result<String, StoreError> {
    let name = if name.is_empty() { DEFAULT_NAME } else { name };
    rule.check(name)?;
    Ok(name.to_string())
}

pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(StoreError::KeyTooLong);
    }
    Ok(())
}

/// What is stored at a record's key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The record's bytes, base64 (JSON has no bytes).
    pub value: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Unix milliseconds; 0 = never. Milliseconds so that a record lives its whole TTL, not
    /// its TTL less the fraction of the second it was written in.
    #[serde(default)]
    pub expiry_ms: i64,
}

/// A record as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
    /// Unix milliseconds; 0 = never.
    pub expiry_ms: i64,
}

impl Record {
    /// Seconds left at `now_ms` (rounded up; 0 when it does not expire).
    pub fn ttl_secs(&self, now_ms: i64) -> i64 {
        if self.expiry_ms == 0 {
            return 0;
        }
        ms_to_secs_ceil(self.expiry_ms.saturating_sub(now_ms).max(0))
    }

    /// The expiry in Unix seconds, rounded up (0 = never).
    pub fn expiry_secs(&self) -> i64 {
        ms_to_secs_ceil(self.expiry_ms)
    }
}

/// Milliseconds to whole seconds, rounded up (for non-negative values).
pub fn ms_to_secs_ceil(ms: i64) -> i64 {
    ms.saturating_add(999).div_euclid(1000)
}

pub fn encode(value: &[u8], metadata: BTreeMap<String, String>, expiry_ms: i64) -> Vec<u8> {
    let envelope = Envelope { value: BASE64.encode(value), metadata, expiry_ms };
    // A struct of strings and integers always serialises.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// The live record at `kv` in `table`, if it is one and has not expired at `now_ms`.
pub fn decode(table: &Table, kv: &KeyValue, now_ms: i64) -> Option<Record> {
    let key = table.key_of(&kv.key)?;
    let envelope: Envelope = serde_json::from_slice(&kv.value).ok()?;
    if envelope.expiry_ms != 0 && envelope.expiry_ms <= now_ms {
        return None;
    }
    let value = BASE64.decode(envelope.value).ok()?;
    Some(Record { key: key.to_string(), value, metadata: envelope.metadata, expiry_ms: envelope.expiry_ms })
}

/// Whether `kv` holds a record that has not expired at `now_ms`.
pub fn is_live(kv: &KeyValue, now_ms: i64) -> bool {
    serde_json::from_slice::<Envelope>(&kv.value).is_ok_and(|e| e.expiry_ms == 0 || e.expiry_ms > now_ms)
}

/// The absolute expiry (Unix ms) of a write: `ttl_secs` from now, or at `expiry_secs`;
/// 0 = none. Either at most [`TTL_MAX_SECS`] from now.
pub fn expiry_of(ttl_secs: Option<i64>, expiry_secs: Option<i64>, now_ms: i64) -> Result<i64, StoreError> {
    const TTL_MAX_MS: i64 = TTL_MAX_SECS * 1000;
    match (ttl_secs, expiry_secs) {
        (None, None) => Ok(0),
        (Some(ttl), None) if ttl <= 0 => Err(StoreError::BadTtl),
        (Some(ttl), None) if ttl > TTL_MAX_SECS => Err(StoreError::TtlTooLarge),
        (Some(ttl), None) => Ok(now_ms.saturating_add(ttl.saturating_mul(1000))),
        (None, Some(at)) => {
            let at_ms = at.saturating_mul(1000);
            if at_ms <= now_ms {
                Err(StoreError::ExpiryInPast)
            } else if at_ms.saturating_sub(now_ms) > TTL_MAX_MS {
                Err(StoreError::ExpiryTooFar)
            } else {
                Ok(at_ms)
            }
        }
        (Some(_), Some(_)) => Err(StoreError::TtlAndExpiry),
    }
}

/// Filters for a read or a list.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub descending: bool,
    pub offset: usize,
    /// 0 = no limit.
    pub limit: usize,
}

impl Selection {
    /// Keeps the records matching prefix and suffix, in order, then applies offset and limit.
    pub fn apply<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
        items.retain(|item| {
            let k = key(item);
            self.prefix.as_deref().is_none_or(|p| k.starts_with(p))
                && self.suffix.as_deref().is_none_or(|s| k.ends_with(s))
        });
        if self.descending {
            items.reverse();
        }
        let limit = if self.limit == 0 { usize::MAX } else { self.limit };
        items.into_iter().skip(self.offset).take(limit).collect()
    }
}

/// Which lease each expiry bucket uses, as this member last learnt it. Only a hint: the
/// command reuses the lease if it still exists, else grants a new one, atomically.
#[derive(Debug, Default)]
pub struct ExpiryBuckets {
    // std Mutex: held for a map lookup, never across an await.
    leases: Mutex<BTreeMap<i64, i64>>,
}

impl ExpiryBuckets {
    /// The end of the bucket `expiry` falls in: the lease for it must not fire before.
    pub fn bucket_end(expiry: i64) -> i64 {
        expiry.div_euclid(EXPIRY_BUCKET_SECS).saturating_add(1).saturating_mul(EXPIRY_BUCKET_SECS)
    }

    pub fn lease_for(&self, bucket_end: i64) -> i64 {
        self.lock().get(&bucket_end).copied().unwrap_or(0)
    }

    /// Remembers the lease of a bucket and forgets buckets already over.
    pub fn remember(&self, bucket_end: i64, lease_id: i64, now_unix_secs: i64) {
        let mut leases = self.lock();
        leases.retain(|end, _| *end > now_unix_secs);
        leases.insert(bucket_end, lease_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, i64>> {
        self.leases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Distinct `index`-th segments (0 = database, 1 = table) of store keys, sorted.
pub fn segments(kvs: &[KeyValue], index: usize) -> Vec<String> {
    let mut names: Vec<String> = kvs
        .iter()
        .filter_map(|kv| std::str::from_utf8(kv.key.strip_prefix(PREFIX.as_bytes())?).ok())
        .filter_map(|rest| rest.split('/').nth(index).map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Fuzz entry point for a store record as the etcd API can write it: `data` is the value at a
/// record's key (the envelope's JSON, or anything), decoded and measured at a few clocks as
/// reads do. Must never panic, whatever the envelope's expiry.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let Ok(table) = Table::new("", "") else { return };
    let kv = KeyValue { key: table.record_key("k"), value: data.to_vec(), ..KeyValue::default() };
    for now_ms in [0, 1_700_000_000_000, i64::MAX] {
        let _ = is_live(&kv, now_ms);
        if let Some(record) = decode(&table, &kv, now_ms) {
            let _ = (record.ttl_secs(now_ms), record.expiry_secs());
            let _ = ExpiryBuckets::bucket_end(record.expiry_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_hide_from_their_expiry_and_report_what_is_left() {
        let table = Table::new("", "").expect("defaults");
        assert_eq!(table.record_key("k"), b"/micro/store/micro/micro/k".to_vec());
        let kv = KeyValue {
            key: table.record_key("k"),
            value: encode(b"v", BTreeMap::new(), 100_000),
            ..KeyValue::default()
        };
        let record = decode(&table, &kv, 98_500).expect("live");
        assert_eq!((record.value.as_slice(), record.ttl_secs(98_500)), (b"v".as_slice(), 2));
        assert_eq!(decode(&table, &kv, 100_000), None, "never readable at or after its expiry");
    }

    #[test]
    fn write_expiry_rules() {
        assert_eq!(expiry_of(None, None, 50_300), Ok(0));
        assert_eq!(expiry_of(Some(4), None, 50_300), Ok(54_300), "a whole TTL from the write");
        assert_eq!(expiry_of(Some(0), None, 50_300), Err(StoreError::BadTtl));
        assert_eq!(expiry_of(Some(-1), None, 50_300), Err(StoreError::BadTtl));
        assert_eq!(expiry_of(None, Some(50), 50_300), Err(StoreError::ExpiryInPast));
        assert_eq!(expiry_of(None, Some(60), 50_300), Ok(60_000));
        assert_eq!(expiry_of(Some(4), Some(60), 50_300), Err(StoreError::TtlAndExpiry));
        assert_eq!(expiry_of(Some(TTL_MAX_SECS), None, 50_300), Ok(50_300 + TTL_MAX_SECS * 1000));
        assert_eq!(expiry_of(Some(TTL_MAX_SECS + 1), None, 50_300), Err(StoreError::TtlTooLarge));
        assert_eq!(expiry_of(Some(i64::MAX), None, 50_300), Err(StoreError::TtlTooLarge));
        assert_eq!(expiry_of(None, Some(i64::MAX), 50_300), Err(StoreError::ExpiryTooFar));
        assert_eq!(expiry_of(None, Some(i64::MIN), 50_300), Err(StoreError::ExpiryInPast));
        assert_eq!(expiry_of(None, Some(50 + TTL_MAX_SECS), 50_000), Ok((50 + TTL_MAX_SECS) * 1000));
        assert_eq!(ExpiryBuckets::bucket_end(54), 60);
        assert_eq!(ExpiryBuckets::bucket_end(60), 70);
    }

    #[test]
    fn selections_filter_order_and_page() {
        let keys = vec!["a1", "a2", "b1", "b2", "c1"];
        let select = |selection: Selection| selection.apply(keys.clone(), |k| k);
        assert_eq!(select(Selection { prefix: Some("a".into()), ..Selection::default() }), vec!["a1", "a2"]);
        assert_eq!(select(Selection { suffix: Some("1".into()), ..Selection::default() }), vec!["a1", "b1", "c1"]);
        assert_eq!(
            select(Selection { descending: true, offset: 1, limit: 2, ..Selection::default() }),
            vec!["b2", "b1"]
        );
        assert!(Table::new("a/b", "t").is_err());
        assert!(Table::new("a\0b", "t").is_err());
        assert!(Table::new("d", "t\u{1b}").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn fuzz_decode_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            fuzz_decode(&data);
        }

        #[test]
        fn fuzz_decode_survives_extreme_expiries(expiry_ms in proptest::prelude::any::<i64>(), flip in 0..64_usize) {
            let mut data = encode(b"v", BTreeMap::new(), expiry_ms);
            fuzz_decode(&data);
            let at = flip % data.len();
            data[at] ^= 0x55;
            fuzz_decode(&data);
        }
    }
}
