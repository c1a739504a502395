//! An in-memory `Engine` for tests and for single-process experiments.
//!
//! It holds every table in a `BTreeMap` and loses everything on drop. It must behave exactly as
//! `RocksEngine` does (the conformance suite checks both), so code tested on it behaves the same
//! on disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{
    Direction, Durability, Engine, KeyRange, StorageError, Table, TableVisitor, WriteBatch, WriteOp, STATE_TABLES,
};

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;
type Tables = BTreeMap<Table, Entries>;

/// The engine of tests: ordered maps behind one lock.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    // std RwLock: nothing here is async, so the lock is never held across an `.await`. One lock
    // for all tables makes a batch that spans tables atomic for readers.
    tables: RwLock<Tables>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Tables>, StorageError> {
        self.tables.read().map_err(|_| poisoned())
    }

    fn write_lock(&self) -> Result<RwLockWriteGuard<'_, Tables>, StorageError> {
        self.tables.write().map_err(|_| poisoned())
    }
}

fn poisoned() -> StorageError {
    StorageError("memory engine lock poisoned by a panic in another thread".to_string())
}

impl Engine for MemoryEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read()?.get(&table).and_then(|entries| entries.get(key).cloned()))
    }

    fn scan_as_of_now(
        &self,
        tables: &[Table],
        fixed: &mut dyn FnMut(),
        visit: &mut TableVisitor<'_>,
    ) -> Result<(), StorageError> {
        // A copy is the point in time: writers go on once it is taken.
        let copy: Vec<(Table, Entries)> = {
            let all = self.read()?;
            tables.iter().map(|table| (*table, all.get(table).cloned().unwrap_or_default())).collect()
        };
        fixed();
        for (table, entries) in &copy {
            for (key, value) in entries {
                if !visit(*table, key, value) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        table: Table,
        range: KeyRange<'_>,
        direction: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let tables = self.read()?;
        let Some(entries) = tables.get(&table) else {
            return Ok(());
        };
        // `BTreeMap::range` panics on an inverted range: an empty range visits nothing.
        if range.to.is_some_and(|to| to <= range.from) {
            return Ok(());
        }
        let upper = range.to.map_or(Bound::Unbounded, Bound::Excluded);
        let entries = entries.range::<[u8], _>((Bound::Included(range.from), upper));
        match direction {
            Direction::Forward => {
                for (key, value) in entries {
                    if !visit(key, value) {
                        break;
                    }
                }
            }
            Direction::Reverse => {
                for (key, value) in entries.rev() {
                    if !visit(key, value) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<(), StorageError> {
        let mut tables = self.write_lock()?;
        for op in batch.ops {
            match op {
                WriteOp::Put { table, key, value } => {
                    tables.entry(table).or_default().insert(key, value);
                }
                WriteOp::Delete { table, key } => {
                    if let Some(entries) = tables.get_mut(&table) {
                        entries.remove(&key);
                    }
                }
                WriteOp::DeleteRange { table, from, to } => {
                    if let Some(entries) = tables.get_mut(&table) {
                        delete_range(entries, &from, &to);
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        0
    }

    /// The bytes of every key and value of the state's tables (a scan: tests only).
    fn state_size_bytes(&self) -> u64 {
        let Ok(tables) = self.read() else { return 0 };
        STATE_TABLES
            .iter()
            .filter_map(|table| tables.get(table))
            .flat_map(|entries| entries.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

fn delete_range(entries: &mut BTreeMap<Vec<u8>, Vec<u8>>, from: &[u8], to: &[u8]) {
    if to <= from {
        return;
    }
    let doomed: Vec<Vec<u8>> =
        entries.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to))).map(|(key, _)| key.clone()).collect();
    for key in doomed {
        entries.remove(&key);
    }
}
