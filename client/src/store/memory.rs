//! [`MemoryStore`]: the store inside the process, for unit tests of services. It applies the
//! cluster's rules (defaults, validation with the same words, key order, paging) and expires
//! records on tokio's clock, so tests can use `tokio::time::pause()`: a record is never
//! readable from its expiry on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{rules, DeleteOptions, ListOptions, Order, ReadOptions, Record, Store, WriteOptions};
use crate::error::{Error, Result};
use crate::names;

/// An in-memory [`Store`]. Cheap to clone: clones share the same records.
#[derive(Clone, Default)]
pub struct MemoryStore {
    /// std Mutex: never held across an `.await`.
    records: Arc<Mutex<BTreeMap<Address, Stored>>>,
}

/// Where a record lives. Ordered by database, table, then key as bytes, as the cluster's keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Address {
    database: String,
    table: String,
    key: String,
}

struct Stored {
    value: Vec<u8>,
    metadata: BTreeMap<String, String>,
    /// On tokio's clock: readable strictly before it.
    deadline: Option<Instant>,
    /// The same moment on the wall clock, as reported to readers.
    expiry: Option<SystemTime>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Address, Stored>> {
        // A panic while holding the lock leaves whole records behind: keep going with them.
        let mut records = self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Expired records are dropped on every access, so none is ever seen and none piles up.
        let now = Instant::now();
        records.retain(|_, stored| stored.deadline.is_none_or(|deadline| now < deadline));
        records
    }

    /// The live records of one table whose keys start with `from`, in key order.
    fn table_records(&self, database: &str, table: &str, from: &str) -> Vec<Record> {
        let start = Address { database: database.to_string(), table: table.to_string(), key: from.to_string() };
        let now = Instant::now();
        self.lock()
            .range(start..)
            .take_while(|(address, _)| {
                address.database == database && address.table == table && address.key.starts_with(from)
            })
            .map(|(address, stored)| Record {
                key: address.key.clone(),
                value: stored.value.clone(),
                metadata: stored.metadata.clone(),
                ttl: stored.deadline.map(|deadline| whole_seconds_up(deadline.saturating_duration_since(now))),
                expiry: stored.expiry,
            })
            .collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn read(&self, key: &str, options: ReadOptions) -> Result<Vec<Record>> {
        let database = rules::name(&names::STORE_DATABASE, &options.database)?;
        let table = rules::name(&names::STORE_TABLE, &options.table)?;
        let exact = !options.prefix && !options.suffix;
        if exact {
            rules::key(key)?;
        }
        let from = if options.prefix { key } else { "" };
        let records = self.table_records(&database, &table, from);
        let matches = |record: &Record| {
            if exact {
                return record.key == key;
            }
            (!options.suffix || record.key.ends_with(key)) && (!options.prefix || record.key.starts_with(key))
        };
        let records = page(records.into_iter().filter(matches).collect(), options.order, options.offset, options.limit);
        if exact && records.is_empty() {
            return Err(Error::NotFound);
        }
        Ok(records)
    }

    async fn write(&self, record: &Record, options: WriteOptions) -> Result<()> {
        let database = rules::name(&names::STORE_DATABASE, &options.database)?;
        let table = rules::name(&names::STORE_TABLE, &options.table)?;
        rules::key(&record.key)?;
        rules::value(&record.value)?;
        let lifetime = rules::lifetime(&options, SystemTime::now())?;
        let stored = Stored {
            value: record.value.clone(),
            metadata: record.metadata.clone(),
            // Checked: within `TTL_MAX_SECS` both always fit, but a clock that cannot hold the
            // time would rather keep the record than panic.
            deadline: lifetime.and_then(|lifetime| Instant::now().checked_add(lifetime)),
            expiry: lifetime.and_then(|lifetime| SystemTime::now().checked_add(lifetime)),
        };
        self.lock().insert(Address { database, table, key: record.key.clone() }, stored);
        Ok(())
    }

    async fn delete(&self, key: &str, options: DeleteOptions) -> Result<()> {
        let database = rules::name(&names::STORE_DATABASE, &options.database)?;
        let table = rules::name(&names::STORE_TABLE, &options.table)?;
        rules::key(key)?;
        self.lock().remove(&Address { database, table, key: key.to_string() });
        Ok(())
    }

    async fn list(&self, options: ListOptions) -> Result<Vec<String>> {
        let database = rules::name(&names::STORE_DATABASE, &options.database)?;
        let table = rules::name(&names::STORE_TABLE, &options.table)?;
        let prefix = options.prefix.unwrap_or_default();
        let suffix = options.suffix.unwrap_or_default();
        let keys: Vec<String> = self
            .table_records(&database, &table, &prefix)
            .into_iter()
            .map(|record| record.key)
            .filter(|key| key.ends_with(&suffix))
            .collect();
        Ok(page(keys, options.order, options.offset, options.limit))
    }

    async fn databases(&self) -> Result<Vec<String>> {
        let mut databases: Vec<String> = self.lock().keys().map(|address| address.database.clone()).collect();
        databases.dedup();
        Ok(databases)
    }

    async fn tables(&self, database: &str) -> Result<Vec<String>> {
        let database = rules::name(&names::STORE_DATABASE, database)?;
        let mut tables: Vec<String> = self
            .lock()
            .keys()
            .filter(|address| address.database == database)
            .map(|address| address.table.clone())
            .collect();
        tables.dedup();
        Ok(tables)
    }
}

/// `items` (in ascending key order) in `order`, then `offset` skipped and at most `limit` kept.
fn page<T>(mut items: Vec<T>, order: Order, offset: u64, limit: Option<u64>) -> Vec<T> {
    if order == Order::Descending {
        items.reverse();
    }
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit =
        limit.filter(|limit| *limit > 0).map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX));
    items.into_iter().skip(offset).take(limit).collect()
}

/// What the cluster reports as a record's TTL: whole seconds, rounded up.
fn whole_seconds_up(left: Duration) -> Duration {
    Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_ordered_then_offset_then_limited() {
        let keys = vec![1, 2, 3, 4, 5];
        assert_eq!(page(keys.clone(), Order::Ascending, 1, Some(2)), [2, 3]);
        assert_eq!(page(keys.clone(), Order::Descending, 1, Some(2)), [4, 3]);
        assert_eq!(page(keys.clone(), Order::Ascending, 0, Some(0)), keys, "a limit of 0 is no limit");
        assert_eq!(page(keys, Order::Ascending, 9, None), Vec::<i32>::new());
    }
}
