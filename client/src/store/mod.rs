//! A key-value store in go-micro's mould: records (bytes plus string metadata, optionally
//! expiring) in tables inside databases, read by key, prefix or suffix.
//!
//! [`Store`] is the contract; [`GrpcStore`] talks to a Keel cluster and [`MemoryStore`] keeps
//! everything in the process for unit tests. Both pass the same [`conformance`] suite.
//! [`Scope`] fixes the database and table, as go-micro's `store.Scope` does. This module knows
//! nothing of etcd's KV API: the cluster maps records to keys.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::names;

#[doc(hidden)]
pub mod conformance;
mod grpc;
mod memory;

pub use grpc::GrpcStore;
pub use memory::MemoryStore;

/// The database and the table an empty name stands for, as in micro.
pub const DEFAULT_NAME: &str = "micro";
/// The largest record value the cluster accepts (1 MiB): with its key and metadata it must fit
/// one request under etcd's 1.5 MiB limit.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// The longest key the cluster accepts: every read addresses records by key, so keep them small.
pub const KEY_BYTES_MAX: usize = 4096;
/// The longest database or table name the cluster accepts: both are segments of every key
/// (the one rule of [`crate::names`]).
pub const NAME_BYTES_MAX: usize = crate::names::NAME_BYTES_MAX;
/// The longest lifetime of a record, in seconds: etcd's MaxLeaseTTL (9,000,000,000 s) less two
/// of the cluster's 10 s expiry buckets, because the lease that removes a record ends at the
/// end of its expiry's bucket, up to a bucket (and a second of rounding) later, and that lease
/// must itself stay within MaxLeaseTTL.
pub const TTL_MAX_SECS: i64 = 8_999_999_980;

/// A key-value store. Object-safe: hold it as `Arc<dyn Store>`.
///
/// Every operation is idempotent (a write of the same record twice leaves one record), so
/// implementations may retry them on another cluster member.
#[async_trait]
pub trait Store: Send + Sync {
    /// The record at `key`, or with [`ReadOptions::prefix`] / [`ReadOptions::suffix`] every
    /// record whose key starts / ends with `key`, in key order. [`Error::NotFound`] when an exact
    /// read finds nothing; a prefix or suffix read that matches nothing returns no records.
    async fn read(&self, key: &str, options: ReadOptions) -> Result<Vec<Record>>;

    /// Writes `record` (its key, value and metadata; its `ttl` and `expiry` are ignored: give
    /// them in `options`), replacing any record at the same key.
    async fn write(&self, record: &Record, options: WriteOptions) -> Result<()>;

    /// Deletes the record at `key`. Deleting a missing key is not an error.
    async fn delete(&self, key: &str, options: DeleteOptions) -> Result<()>;

    /// The keys of one table, in key order, filtered and paged by `options`.
    async fn list(&self, options: ListOptions) -> Result<Vec<String>>;

    /// Every database holding at least one record, sorted.
    async fn databases(&self) -> Result<Vec<String>>;

    /// Every table of `database` (empty: [`DEFAULT_NAME`]) holding at least one record, sorted.
    async fn tables(&self, database: &str) -> Result<Vec<String>>;
}

/// One record. Written: key, value and metadata. Read: also what is left of its life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
    /// When read: the time the record has left, in whole seconds rounded up; `None` when it
    /// does not expire.
    pub ttl: Option<Duration>,
    /// When read: when the record stops being readable; `None` when it does not expire.
    pub expiry: Option<SystemTime>,
}

impl Record {
    /// A record without metadata.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Record {
        Record { key: key.into(), value: value.into(), ..Record::default() }
    }
}

/// The order of records and keys: by key, as bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

/// Options of [`Store::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Empty: [`DEFAULT_NAME`].
    pub database: String,
    /// Empty: [`DEFAULT_NAME`].
    pub table: String,
    /// Every record whose key starts with the key read.
    pub prefix: bool,
    /// Every record whose key ends with the key read (with `prefix`: both).
    pub suffix: bool,
    /// At most this many records; `None`: all.
    pub limit: Option<u64>,
    /// Skips this many matching records first.
    pub offset: u64,
    pub order: Order,
}

impl ReadOptions {
    /// Every record whose key starts with the key read.
    pub fn prefix() -> ReadOptions {
        ReadOptions { prefix: true, ..ReadOptions::default() }
    }
}

/// Options of [`Store::write`]. Give `ttl` or `expiry`, not both; neither: the record does not
/// expire. The cluster counts whole seconds: both are rounded up to the next second, so a
/// record never expires before it was asked to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Empty: [`DEFAULT_NAME`].
    pub database: String,
    /// Empty: [`DEFAULT_NAME`].
    pub table: String,
    /// The record expires this long after the write; must be more than zero.
    pub ttl: Option<Duration>,
    /// The record expires at this time; must be in the future.
    pub expiry: Option<SystemTime>,
}

impl WriteOptions {
    /// A write into the default database and table that expires after `ttl`.
    pub fn with_ttl(ttl: Duration) -> WriteOptions {
        WriteOptions { ttl: Some(ttl), ..WriteOptions::default() }
    }
}

/// Options of [`Store::delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Empty: [`DEFAULT_NAME`].
    pub database: String,
    /// Empty: [`DEFAULT_NAME`].
    pub table: String,
}

/// Options of [`Store::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Empty: [`DEFAULT_NAME`].
    pub database: String,
    /// Empty: [`DEFAULT_NAME`].
    pub table: String,
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Only keys ending with this.
    pub suffix: Option<String>,
    /// At most this many keys; `None`: all.
    pub limit: Option<u64>,
    /// Skips this many matching keys first.
    pub offset: u64,
    pub order: Order,
}

/// A [`Store`] with the database and table fixed, like go-micro's `store.Scope`: every call
/// goes to them whatever its options say. It is a `Store` itself, so code written against
/// `dyn Store` can be handed a scope.
#[derive(Clone)]
pub struct Scope {
    store: Arc<dyn Store>,
    database: String,
    table: String,
}

impl Scope {
    /// `store` restricted to `database`/`table` (empty: [`DEFAULT_NAME`]).
    pub fn new(store: Arc<dyn Store>, database: impl Into<String>, table: impl Into<String>) -> Scope {
        Scope { store, database: database.into(), table: table.into() }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

#[async_trait]
impl Store for Scope {
    async fn read(&self, key: &str, options: ReadOptions) -> Result<Vec<Record>> {
        let options = ReadOptions { database: self.database.clone(), table: self.table.clone(), ..options };
        self.store.read(key, options).await
    }

    async fn write(&self, record: &Record, options: WriteOptions) -> Result<()> {
        let options = WriteOptions { database: self.database.clone(), table: self.table.clone(), ..options };
        self.store.write(record, options).await
    }

    async fn delete(&self, key: &str, _options: DeleteOptions) -> Result<()> {
        let options = DeleteOptions { database: self.database.clone(), table: self.table.clone() };
        self.store.delete(key, options).await
    }

    async fn list(&self, options: ListOptions) -> Result<Vec<String>> {
        let options = ListOptions { database: self.database.clone(), table: self.table.clone(), ..options };
        self.store.list(options).await
    }

    async fn databases(&self) -> Result<Vec<String>> {
        self.store.databases().await
    }

    /// The tables of the scope's database, whatever `database` says.
    async fn tables(&self, _database: &str) -> Result<Vec<String>> {
        self.store.tables(&self.database).await
    }
}

/// A TTL as the cluster counts it: whole seconds, rounded up.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    crate::registry::ttl_seconds(ttl)
}

/// An expiry as the cluster counts it: Unix seconds, rounded up (0 before 1970-01-01T00:00:01,
/// which the cluster refuses as in the past).
pub(crate) fn expiry_unix_seconds(expiry: SystemTime) -> i64 {
    let since_epoch = expiry.duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::registry::ttl_seconds(since_epoch)
}

/// A time `seconds` after the Unix epoch (`None` for 0 or less: never).
pub(crate) fn unix_time(seconds: i64) -> Option<SystemTime> {
    let seconds = u64::try_from(seconds).ok().filter(|seconds| *seconds > 0)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// The checks the cluster makes, with its words, for implementations that cannot ask it.
pub(crate) mod rules {
    use super::*;

    /// `name` with the default applied, or why it cannot be a database or table name
    /// (`rule`: [`names::STORE_DATABASE`] or [`names::STORE_TABLE`]).
    pub(crate) fn name(rule: &names::NameRule, name: &str) -> Result<String> {
        let name = if name.is_empty() { DEFAULT_NAME } else { name };
        rule.check(name)?;
        Ok(name.to_string())
    }

    pub(crate) fn key(key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::InvalidArgument("store: key is empty".into()));
        }
        if key.len() > KEY_BYTES_MAX {
            return Err(Error::InvalidArgument(format!("store: key is longer than {KEY_BYTES_MAX} bytes")));
        }
        Ok(())
    }

    pub(crate) fn value(value: &[u8]) -> Result<()> {
        if value.len() > VALUE_BYTES_MAX {
            return Err(Error::InvalidArgument(format!("store: value is larger than {VALUE_BYTES_MAX} bytes")));
        }
        Ok(())
    }

    /// How long from `now` the record lives (`None`: forever), after rounding to whole seconds.
    pub(crate) fn lifetime(options: &WriteOptions, now: SystemTime) -> Result<Option<Duration>> {
        match (options.ttl, options.expiry) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(Error::InvalidArgument("store: give ttl or expiry, not both".into())),
            (Some(ttl), None) => match ttl_seconds(ttl) {
                seconds if seconds > TTL_MAX_SECS => {
                    Err(Error::InvalidArgument(format!("store: ttl must be at most {TTL_MAX_SECS} seconds")))
                }
                seconds if seconds > 0 => Ok(Some(Duration::from_secs(seconds.unsigned_abs()))),
                _ => Err(Error::InvalidArgument("store: ttl must be greater than 0 seconds".into())),
            },
            (None, Some(expiry)) => {
                let at = unix_time(expiry_unix_seconds(expiry)).unwrap_or(UNIX_EPOCH);
                match at.duration_since(now) {
                    Ok(left) if left > Duration::from_secs(TTL_MAX_SECS.unsigned_abs()) => Err(Error::InvalidArgument(
                        format!("store: expiry must be at most {TTL_MAX_SECS} seconds from now"),
                    )),
                    Ok(left) if !left.is_zero() => Ok(Some(left)),
                    _ => Err(Error::InvalidArgument("store: expiry must be in the future".into())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_round_up_to_whole_unix_seconds() {
        let cases = [(0, 0), (1, 1), (1_000, 1), (1_001, 2), (1_500_000, 1_500)];
        for (milliseconds, seconds) in cases {
            let at = UNIX_EPOCH + Duration::from_millis(milliseconds);
            assert_eq!(expiry_unix_seconds(at), seconds, "{milliseconds} ms");
        }
        assert_eq!(unix_time(0), None);
        assert_eq!(unix_time(-5), None);
        assert_eq!(unix_time(7), Some(UNIX_EPOCH + Duration::from_secs(7)));
    }

    #[test]
    fn write_lifetimes_follow_the_cluster_rules() {
        let now = UNIX_EPOCH + Duration::from_millis(100_500);
        let lifetime = |ttl, expiry| rules::lifetime(&WriteOptions { ttl, expiry, ..WriteOptions::default() }, now);
        assert_eq!(lifetime(None, None), Ok(None));
        assert_eq!(lifetime(Some(Duration::from_millis(1_200)), None), Ok(Some(Duration::from_secs(2))));
        assert!(lifetime(Some(Duration::ZERO), None).is_err());
        let at = |milliseconds| Some(UNIX_EPOCH + Duration::from_millis(milliseconds));
        assert_eq!(lifetime(None, at(101_000)), Ok(Some(Duration::from_millis(500))));
        assert_eq!(lifetime(None, at(100_700)), Ok(Some(Duration::from_millis(500))), "rounded up to 101 s");
        assert!(lifetime(None, at(100_000)).is_err());
        assert!(lifetime(Some(Duration::from_secs(1)), at(200_000)).is_err());
    }

    #[test]
    fn names_default_to_micro_and_refuse_slashes() {
        assert_eq!(rules::name(&names::STORE_DATABASE, ""), Ok("micro".to_string()));
        assert_eq!(rules::name(&names::STORE_TABLE, "users"), Ok("users".to_string()));
        assert!(rules::name(&names::STORE_TABLE, "a/b").is_err());
        assert!(rules::name(&names::STORE_TABLE, "a\0b").is_err());
        assert!(rules::name(&names::STORE_TABLE, &"x".repeat(NAME_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn lifetimes_stay_within_etcds_max_lease_ttl() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let lifetime = |ttl, expiry| rules::lifetime(&WriteOptions { ttl, expiry, ..WriteOptions::default() }, now);
        let max = Duration::from_secs(TTL_MAX_SECS.unsigned_abs());
        assert_eq!(lifetime(Some(max), None), Ok(Some(max)));
        assert!(lifetime(Some(max + Duration::from_secs(1)), None).is_err());
        assert!(lifetime(Some(Duration::MAX), None).is_err());
        assert_eq!(lifetime(None, Some(now + max)), Ok(Some(max)));
        assert!(lifetime(None, Some(now + max + Duration::from_secs(1))).is_err());
    }
}
