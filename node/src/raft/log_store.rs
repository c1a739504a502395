//! The Raft log and vote on the storage engine, with group commit.
//!
//! `append` writes entries without waiting for the disk, so they are readable at once, and
//! hands the completion callback to one syncer thread. The syncer takes every callback that
//! queued up while the previous fsync ran, issues ONE fsync for all of them and only then tells
//! openraft the entries are durable. openraft acknowledges a client write only once a majority
//! reported its entry durable, so many concurrent writes share one fsync and nothing is
//! acknowledged before it is on disk.
//!
//! A follower's appends take the same path: the leader pipelines its AppendEntries
//! (`append_stream`), so while one fsync runs the next appends are written and queue for the
//! next one, and openraft's core, which awaits `append`, never waits for the disk.
//!
//! After every fsync the log store raises the durability watermark (`watermark.rs`) to the end
//! of what that fsync covered, and lowers it before a truncation; `check_intact` compares the
//! log and the vote with it at start, so a log that lost its end is found before Raft reads it.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use tokio::sync::mpsc;

use super::codec::{decode, decode_entry, encode, encode_entry};
use super::recent_entries::RecentEntries;
use super::watermark::{Mark, Watermark};
use super::{Entry, LogId, TypeConfig, Vote};
use crate::limits::{LOG_CACHE_BYTES_MAX, LOG_CACHE_ENTRIES_MAX};
use crate::storage::{Direction, Durability, Engine, KeyRange, Table, WriteBatch};

pub(crate) const VOTE_KEY: &[u8] = b"vote";
pub(crate) const COMMITTED_KEY: &[u8] = b"committed";
pub(crate) const PURGED_KEY: &[u8] = b"purged";

/// Appends waiting for the syncer. When full, `append` waits: the bound keeps a stalled disk
/// from turning into unbounded memory.
const SYNC_QUEUE_CAPACITY: usize = 4096;

/// How often the committed log id is saved at most. It is only a restart's shortcut (entries up
/// to it are applied at once instead of after the leader's next message), and saving it on every
/// commit was an engine write per commit: about 2% of a leader's CPU under load.
const COMMITTED_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// When an append is reported durable to openraft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckPolicy {
    /// After the fsync that covers it: the only correct policy.
    AfterFsync,
    /// At once, before anything reaches the disk: the `--unsafe-ack-before-fsync` sabotage
    /// that the fault-injection harness must catch. Never used in production.
    UnsafeBeforeFsync,
}

/// What the syncer is asked to do, in order.
enum SyncRequest {
    /// Tell openraft, once an fsync covers them, that the entries below `log_end` are durable.
    Flushed { log_end: u64, callback: IOFlushed<TypeConfig> },
    /// Answer once every earlier request is done, so that no watermark raise queued before a
    /// truncation lands after it.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct LogStore {
    engine: Arc<dyn Engine>,
    syncer: Arc<Syncer>,
    ack: AckPolicy,
    watermark: Arc<Watermark>,
    /// std Mutex: held only to copy entries in or out, never across an await.
    recent: Arc<Mutex<RecentEntries>>,
    /// When this store (openraft's writing one) last saved the committed log id.
    committed_saved_at: Option<std::time::Instant>,
}

/// The way to the syncer thread, shared by every clone of the store. When the last clone is
/// dropped the queue closes and the thread is joined: a member that stops must not leave an
/// fsync running inside RocksDB while the process exits (the exit's destructors then tore a
/// mutex from under it and the member aborted with "pthread lock: Invalid argument").
struct Syncer {
    // Option: taken in Drop, so that the thread sees its queue close before it is joined.
    queue: Option<mpsc::Sender<SyncRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    async fn send(&self, request: SyncRequest) -> io::Result<()> {
        let stopped = || io::Error::other("log syncer thread stopped");
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        queue.send(request).await.map_err(|_| stopped())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // It finishes what it holds (at most one fsync) and ends.
            if thread.join().is_err() {
                tracing::error!("the log syncer thread panicked");
            }
        }
    }
}

/// The log or the vote is behind what this member made durable before: its data dir lost
/// writes (a write-ahead log that lost its end, a deleted record). Starting would serve less
/// than was acknowledged, or break a promise made to a candidate.
#[derive(Debug, thiserror::Error)]
pub enum LogDamage {
    #[error(
        "the Raft log ends at index {last} but entries up to index {durable_last} were made durable and \
         acknowledged ({watermark} says so): acknowledged entries are missing"
    )]
    LogEndsEarly { last: String, durable_last: u64, watermark: String },
    #[error(
        "the stored vote is {found} but this member had voted in term {durable_term} ({watermark} says so): \
         the vote record was lost or rolled back"
    )]
    VoteBehindWatermark { found: String, durable_term: u64, watermark: String },
    #[error(
        "the stored vote is {found} but the Raft log holds entries of term {log_term}, which this member \
         could only have accepted after voting in that term: the vote record was lost or rolled back"
    )]
    VoteBehindLog { found: String, log_term: u64 },
}

/// Why `check_intact` refused: damage, or the check itself could not read the store.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Damaged(LogDamage),
    #[error(transparent)]
    Unreadable(#[from] io::Error),
}

/// Compares the log and the vote in `engine` with `recorded`, what the watermark file at
/// `watermark_path` held at start, before anything (Raft included) reads or changes them. A
/// vote below the terms of the log's own entries is damage too, watermark or not: a member
/// accepts entries of a term only after it saved a vote of that term.
pub fn check_intact(engine: &dyn Engine, recorded: Option<Mark>, watermark_path: &Path) -> Result<(), CheckError> {
    let vote: Option<Vote> = get_meta(engine, VOTE_KEY)?;
    let purged: Option<LogId> = get_meta(engine, PURGED_KEY)?;
    let last = match last_entry(engine)? {
        Some(entry) => Some(entry.log_id),
        None => purged,
    };
    let vote_term = vote.as_ref().map_or(0, |vote| vote.leader_id.term);
    let found = || vote.as_ref().map_or_else(|| "missing".to_string(), |vote| format!("{vote}"));
    let watermark = || watermark_path.display().to_string();
    if let Some(mark) = recorded {
        let log_end = last.map_or(0, |id| id.index.saturating_add(1));
        if log_end < mark.log_end {
            return Err(CheckError::Damaged(LogDamage::LogEndsEarly {
                last: last.map_or_else(|| "(empty log)".to_string(), |id| id.index.to_string()),
                durable_last: mark.log_end.saturating_sub(1),
                watermark: watermark(),
            }));
        }
        if vote_term < mark.vote_term {
            return Err(CheckError::Damaged(LogDamage::VoteBehindWatermark {
                found: found(),
                durable_term: mark.vote_term,
                watermark: watermark(),
            }));
        }
    }
    let log_term = last.map_or(0, |id| id.leader_id.term);
    if vote_term < log_term {
        return Err(CheckError::Damaged(LogDamage::VoteBehindLog { found: found(), log_term }));
    }
    Ok(())
}

impl LogStore {
    /// Opens the log on `engine` and starts its syncer thread, which is joined when the last
    /// clone of this store is dropped. `watermark` is raised after every fsync of the log.
    pub fn open(engine: Arc<dyn Engine>, ack: AckPolicy, watermark: Arc<Watermark>) -> io::Result<Self> {
        let (sync_tx, sync_rx) = mpsc::channel(SYNC_QUEUE_CAPACITY);
        let (syncer_engine, syncer_watermark) = (engine.clone(), watermark.clone());
        let thread = std::thread::Builder::new()
            .name("keel-log-sync".into())
            .spawn(move || run_syncer(syncer_engine, syncer_watermark, sync_rx))?;
        let syncer = Arc::new(Syncer { queue: Some(sync_tx), thread: Some(thread) });
        let recent = Arc::new(Mutex::new(RecentEntries::new(LOG_CACHE_ENTRIES_MAX, LOG_CACHE_BYTES_MAX)));
        Ok(Self { engine, syncer, ack, watermark, recent, committed_saved_at: None })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        get_meta(self.engine.as_ref(), key)
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T, durability: Durability) -> io::Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(Table::RaftMeta, key, encode(value)?);
        self.engine.write(batch, durability).map_err(io::Error::other)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEntries> {
        self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the syncer has finished everything queued so far.
    async fn drain_syncer(&self) -> io::Result<()> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        self.syncer.send(SyncRequest::Barrier(done_tx)).await?;
        done_rx.await.map_err(|_| io::Error::other("log syncer thread stopped"))
    }
}

fn get_meta<T: serde::de::DeserializeOwned>(engine: &dyn Engine, key: &[u8]) -> io::Result<Option<T>> {
    let bytes = engine.get(Table::RaftMeta, key).map_err(io::Error::other)?;
    bytes.map(|b| decode(&b)).transpose()
}

fn last_entry(engine: &dyn Engine) -> io::Result<Option<Entry>> {
    let mut last = None;
    let mut decode_err = None;
    engine
        .scan(Table::Log, KeyRange::all(), Direction::Reverse, &mut |key, value| {
            match decode_stored(key, value) {
                Ok(entry) => last = Some(entry),
                Err(e) => decode_err = Some(e),
            }
            false
        })
        .map_err(io::Error::other)?;
    match decode_err {
        Some(e) => Err(e),
        None => Ok(last),
    }
}

/// Log keys are big-endian indexes so that the engine's byte order is log order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The entry stored at `key`; an error names its index, for the operator.
fn decode_stored(key: &[u8], value: &[u8]) -> io::Result<Entry> {
    decode_entry(value).map_err(|e| {
        let index = <[u8; 8]>::try_from(key).map_or_else(|_| format!("{key:?}"), |k| u64::from_be_bytes(k).to_string());
        io::Error::new(e.kind(), format!("log entry at index {index}: {e}"))
    })
}

/// An fsync of the log, timed for `etcd_disk_wal_fsync_duration_seconds`.
fn timed_sync(engine: &dyn Engine) -> Result<(), crate::storage::StorageError> {
    let started = std::time::Instant::now();
    let synced = engine.sync();
    crate::telemetry::telemetry().wal_fsync(started.elapsed());
    synced
}

fn run_syncer(engine: Arc<dyn Engine>, watermark: Arc<Watermark>, mut rx: mpsc::Receiver<SyncRequest>) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        waiting.push(first);
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let log_end = waiting
            .iter()
            .filter_map(|request| match request {
                SyncRequest::Flushed { log_end, .. } => Some(*log_end),
                SyncRequest::Barrier(_) => None,
            })
            .max();
        // Barriers alone need no fsync: they only wait for the requests before them.
        let result = match log_end {
            None => Ok(()),
            Some(log_end) => timed_sync(engine.as_ref())
                .map_err(|e| e.to_string())
                .and_then(|()| watermark.raise_log_end(log_end).map_err(|e| format!("durability watermark: {e}"))),
        };
        for request in waiting.drain(..) {
            match request {
                SyncRequest::Flushed { callback, .. } => {
                    callback.io_completed(result.clone().map_err(io::Error::other))
                }
                SyncRequest::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(cached) = to.and_then(|to| self.recent().get(from, to)) {
            return Ok(cached);
        }
        let from_key = index_key(from);
        let to_key = to.map(index_key);
        let range = KeyRange { from: &from_key, to: to_key.as_ref().map(|k| &k[..]) };
        let mut entries = Vec::new();
        let mut decode_err = None;
        self.engine
            .scan(Table::Log, range, Direction::Forward, &mut |key, value| match decode_stored(key, value) {
                Ok(entry) => {
                    entries.push(entry);
                    true
                }
                Err(e) => {
                    decode_err = Some(e);
                    false
                }
            })
            .map_err(io::Error::other)?;
        match decode_err {
            Some(e) => Err(e),
            None => Ok(entries),
        }
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(VOTE_KEY)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(PURGED_KEY)?;
        let last_log_id = match last_entry(self.engine.as_ref())? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // A vote must be on disk before it is answered: Sync, not group-committed.
        self.put_meta(VOTE_KEY, vote, Durability::Sync)?;
        self.watermark.raise_vote_term(vote.leader_id.term)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Only an optimisation for restart (re-applying up to it at once): no fsync needed, and
        // an older one is as correct (openraft reads it as "at least this much is committed").
        let now = std::time::Instant::now();
        if self.committed_saved_at.is_some_and(|at| now.duration_since(at) < COMMITTED_SAVE_INTERVAL) {
            return Ok(());
        }
        self.committed_saved_at = Some(now);
        self.put_meta(COMMITTED_KEY, &committed, Durability::Buffered)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
    {
        let mut batch = WriteBatch::new();
        let mut only_client_commands = true;
        let mut log_end = 0;
        let mut written = Vec::new();
        for entry in entries {
            only_client_commands &= matches!(entry.payload, openraft::EntryPayload::Normal(_));
            log_end = log_end.max(entry.log_id.index.saturating_add(1));
            let (index, encoded) = (entry.log_id.index, encode_entry(&entry)?);
            written.push((entry, encoded.len()));
            batch.put(Table::Log, index_key(index), encoded);
        }
        // Written now so the entries are readable when this returns; durable once the syncer's
        // fsync completes, which is when the callback fires.
        self.engine.write(batch, Durability::Buffered).map_err(io::Error::other)?;
        self.recent().appended(written);
        if self.ack == AckPolicy::UnsafeBeforeFsync {
            // The sabotage persists only membership and leader (blank) entries, so the cluster
            // always restarts, while every client write since the last election lives in memory
            // alone: a kill -9 of every member loses acknowledged writes every time. The
            // watermark is never raised, so the loss stays silent, as the sabotage intends.
            if !only_client_commands {
                self.engine.sync().map_err(io::Error::other)?;
            }
            callback.io_completed(Ok(()));
            return Ok(());
        }
        self.syncer.send(SyncRequest::Flushed { log_end, callback }).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        // The watermark goes down first, durably, and no raise queued before may land after
        // it: it must never name entries the log no longer holds.
        self.drain_syncer().await?;
        self.watermark.lower_log_end(from)?;
        // Forgotten before the engine deletes them: a read in between finds them in the engine.
        self.recent().truncated_from(from);
        let mut batch = WriteBatch::new();
        batch.delete_range(Table::Log, index_key(from), index_key(u64::MAX));
        // Durable with the next append's fsync, which shares the write-ahead log.
        self.engine.write(batch, Durability::Buffered).map_err(io::Error::other)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The purged id is written first and in the same batch: openraft ignores entries at or
        // below it, so a crash in between cannot resurrect a half-purged log.
        let mut batch = WriteBatch::new();
        batch.put(Table::RaftMeta, PURGED_KEY, encode(&log_id)?);
        batch.delete_range(Table::Log, index_key(0), index_key(log_id.index + 1));
        self.recent().purged_through(log_id.index);
        self.engine.write(batch, Durability::Buffered).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    fn blank(index: u64) -> Entry {
        let leader = openraft::vote::leader_id_adv::LeaderId { term: 2, node_id: 1 };
        Entry { log_id: LogId::new(leader, index), payload: openraft::EntryPayload::Blank }
    }

    #[test]
    fn entries_from_before_versions_read_and_an_unknown_version_names_its_index() {
        let engine = MemoryEngine::new();
        let mut batch = WriteBatch::new();
        // Written before entries named their version: the bare postcard.
        batch.put(Table::Log, index_key(1), encode(&blank(1)).expect("encode"));
        batch.put(Table::Log, index_key(2), encode_entry(&blank(2)).expect("encode"));
        engine.write(batch, Durability::Sync).expect("write");
        assert_eq!(last_entry(&engine).expect("read"), Some(blank(2)));

        let mut newer = encode_entry(&blank(3)).expect("encode");
        newer[2] = super::super::LOG_ENTRY_VERSION + 1;
        let mut batch = WriteBatch::new();
        batch.put(Table::Log, index_key(3), newer);
        engine.write(batch, Durability::Sync).expect("write");
        let error = last_entry(&engine).expect_err("a version this build does not read");
        assert!(error.to_string().starts_with("log entry at index 3: log entry format version 2"), "{error}");
    }
}
