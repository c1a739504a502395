//! A test engine whose disk fails on demand: a `MemoryEngine` that can be told to fail its reads
//! or its writes, so tests can show what a member does when its own storage breaks (it stops;
//! it never turns the failure into an answer).

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Direction, Durability, Engine, KeyRange, MemoryEngine, StorageError, Table, TableVisitor, WriteBatch};

/// A `MemoryEngine` with two switches. Both start healthy.
#[derive(Debug, Default)]
pub struct FaultyEngine {
    inner: MemoryEngine,
    reads_fail: AtomicBool,
    writes_fail: AtomicBool,
}

impl FaultyEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on `get`, `scan` and `scan_as_of_now` fail.
    pub fn fail_reads(&self) {
        self.reads_fail.store(true, Ordering::SeqCst);
    }

    /// From now on `write` and `sync` fail, writing nothing.
    pub fn fail_writes(&self) {
        self.writes_fail.store(true, Ordering::SeqCst);
    }

    /// Both switches back to healthy: what was written before the failure is still there.
    pub fn heal(&self) {
        self.reads_fail.store(false, Ordering::SeqCst);
        self.writes_fail.store(false, Ordering::SeqCst);
    }

    fn check_read(&self) -> Result<(), StorageError> {
        if self.reads_fail.load(Ordering::SeqCst) {
            return Err(StorageError("injected read failure".into()));
        }
        Ok(())
    }

    fn check_write(&self) -> Result<(), StorageError> {
        if self.writes_fail.load(Ordering::SeqCst) {
            return Err(StorageError("injected write failure".into()));
        }
        Ok(())
    }
}

impl Engine for FaultyEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.check_read()?;
        self.inner.get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        range: KeyRange<'_>,
        direction: Direction,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.check_read()?;
        self.inner.scan(table, range, direction, visit)
    }

    fn scan_as_of_now(
        &self,
        tables: &[Table],
        fixed: &mut dyn FnMut(),
        visit: &mut TableVisitor<'_>,
    ) -> Result<(), StorageError> {
        self.check_read()?;
        self.inner.scan_as_of_now(tables, fixed, visit)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        self.check_write()?;
        self.inner.write(batch, durability)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.check_write()?;
        self.inner.sync()
    }

    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }

    fn state_size_bytes(&self) -> u64 {
        self.inner.state_size_bytes()
    }

    fn state_size_in_use_bytes(&self) -> u64 {
        self.inner.state_size_in_use_bytes()
    }

    fn defragment(&self) -> Result<(), StorageError> {
        self.inner.defragment()
    }
}
