//! One watch stream: the watchers a client created on it, fed from the hub or, when they are
//! behind, from history.
//!
//! Each watcher remembers `next_revision`, the first revision it has not been sent. A batch
//! that starts at or before it is filtered and sent, one response per revision as etcd sends a
//! watcher that is in sync; one that starts after it (the hub dropped batches, or a snapshot
//! replaced the keyspace) sends the watcher to history first, where responses carry many
//! revisions as etcd's catching-up watchers get them. Both paths move `next_revision` forward
//! only, so nothing is sent twice and nothing is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::hub::EventBatch;
use crate::command::{KeyValue, RangeRequest};
use crate::limits::WATCHERS_PER_STREAM_MAX;
use crate::mvcc::{Event, EventKind, MvccError, ReadError};
use crate::raft::SharedState;

/// etcd's `clientv3.InvalidWatchID`: the id of responses that belong to no watcher (progress
/// answers, a refused create).
pub const INVALID_WATCH_ID: i64 = -1;

/// Events read from history per lock acquisition: bounds how long a catching-up watcher holds
/// the keyspace's read lock, and the size of one response.
const HISTORY_EVENTS_PER_READ: usize = 1000;

#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// How often a watcher with `progress_notify` and nothing sent hears the current revision.
    pub progress_interval: Duration,
}

/// A client's WatchCreateRequest, already validated.
#[derive(Clone, Debug, Default)]
pub struct CreateWatch {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// 0 = from the next change.
    pub start_revision: i64,
    pub progress_notify: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    /// 0 = the server picks.
    pub watch_id: i64,
    pub fragment: bool,
}

#[derive(Debug)]
pub enum WatchInput {
    Create(CreateWatch),
    /// A create the API refused (e.g. permission denied): answered in its turn, created and
    /// canceled with this reason, as etcd answers it.
    Refuse(String),
    Cancel(i64),
    Progress,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedEvent {
    pub event: Event,
    pub prev_kv: Option<KeyValue>,
}

/// What the session sends; `revision` goes in the response header.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchOutput {
    Created {
        watch_id: i64,
        revision: i64,
        refused: Option<String>,
    },
    /// `fragment`: the watcher accepts a large response split over several (the wire adapter
    /// splits, since only it knows the encoded size).
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<WatchedEvent>,
        fragment: bool,
    },
    /// The watcher is gone: cancelled by the client, or its start is compacted.
    Canceled {
        watch_id: i64,
        revision: i64,
        compact_revision: i64,
        reason: String,
    },
    Progress {
        watch_id: i64,
        revision: i64,
    },
}

/// How a catch-up from history groups events into responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Responses {
    /// Many revisions per response (up to a page), for a watcher that is behind: etcd's
    /// unsynced watchers get them this way.
    Batched,
    /// One response per revision, for a watcher that is in sync.
    PerRevision,
}

struct Watcher {
    id: i64,
    spec: CreateWatch,
    next_revision: i64,
    last_sent: Instant,
}

impl Watcher {
    fn covers(&self, key: &[u8]) -> bool {
        let spec = &self.spec;
        match spec.range_end.as_slice() {
            [] => key == spec.key.as_slice(),
            [0] => key >= spec.key.as_slice(),
            end => key >= spec.key.as_slice() && key < end,
        }
    }

    fn wants(&self, event: &Event) -> bool {
        let filtered = match event.kind {
            EventKind::Put => self.spec.no_put,
            EventKind::Delete => self.spec.no_delete,
        };
        !filtered && event.revision() >= self.next_revision && self.covers(&event.kv.key)
    }
}

pub struct Session {
    state: Arc<SharedState>,
    limits: SessionLimits,
    watchers: BTreeMap<i64, Watcher>,
    next_watch_id: i64,
    output: mpsc::Sender<WatchOutput>,
}

/// The client went away: stop.
struct Closed;

impl Drop for Session {
    fn drop(&mut self) {
        self.state.hub().watchers_removed(self.watchers.len());
    }
}

impl Session {
    pub fn new(state: Arc<SharedState>, limits: SessionLimits, output: mpsc::Sender<WatchOutput>) -> Self {
        Session { state, limits, watchers: BTreeMap::new(), next_watch_id: 0, output }
    }

    /// Serves the stream until the client closes its side or stops reading.
    pub async fn run(mut self, mut input: mpsc::Receiver<WatchInput>) {
        // Subscribed before any watcher reads the current revision, so no batch falls between.
        let mut batches = self.state.hub().subscribe();
        let mut progress = tokio::time::interval(self.limits.progress_interval);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = self.state.hub().stopped();
        tokio::pin!(stopped);
        loop {
            let outcome = tokio::select! {
                () = &mut stopped => Err(Closed),
                request = input.recv() => match request {
                    Some(request) => self.handle(request).await,
                    None => Err(Closed),
                },
                batch = batches.recv() => match batch {
                    Ok(batch) => self.deliver(&batch).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up_all().await,
                    Err(broadcast::error::RecvError::Closed) => Err(Closed),
                },
                _ = progress.tick() => self.notify_progress().await,
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    async fn handle(&mut self, request: WatchInput) -> Result<(), Closed> {
        match request {
            WatchInput::Create(spec) => self.create(spec).await,
            WatchInput::Refuse(reason) => self.refuse(reason).await,
            WatchInput::Cancel(watch_id) => {
                // etcd answers nothing for an id it does not know.
                if self.forget(watch_id) {
                    let revision = self.current_revision();
                    let reason = String::new();
                    self.send(WatchOutput::Canceled { watch_id, revision, compact_revision: 0, reason }).await?;
                }
                Ok(())
            }
            WatchInput::Progress => {
                // etcd answers only when every watcher is up to date, with the id -1.
                let revision = self.current_revision();
                if self.watchers.values().all(|w| w.next_revision > revision) {
                    self.send(WatchOutput::Progress { watch_id: INVALID_WATCH_ID, revision }).await?;
                }
                Ok(())
            }
        }
    }

    async fn create(&mut self, spec: CreateWatch) -> Result<(), Closed> {
        let revision = self.current_revision();
        let refused = if spec.watch_id != 0 && self.watchers.contains_key(&spec.watch_id) {
            Some("mvcc: duplicate watch ID provided on the WatchStream")
        } else if self.watchers.len() >= WATCHERS_PER_STREAM_MAX {
            Some("keel: too many watchers on one stream")
        } else {
            None
        };
        if let Some(reason) = refused {
            return self.refuse(reason.to_string()).await;
        }
        let id = if spec.watch_id != 0 { spec.watch_id } else { self.allocate_id() };
        let next_revision = if spec.start_revision > 0 { spec.start_revision } else { revision + 1 };
        let watcher = Watcher { id, spec, next_revision, last_sent: Instant::now() };
        self.watchers.insert(id, watcher);
        self.state.hub().watchers_added(1);
        self.send(WatchOutput::Created { watch_id: id, revision, refused: None }).await?;
        if next_revision <= revision {
            self.catch_up(id, Responses::Batched).await?;
        }
        Ok(())
    }

    async fn refuse(&mut self, reason: String) -> Result<(), Closed> {
        let revision = self.current_revision();
        self.send(WatchOutput::Created { watch_id: INVALID_WATCH_ID, revision, refused: Some(reason) }).await
    }

    /// Removes a watcher; false if there was none with that id.
    fn forget(&mut self, id: i64) -> bool {
        let removed = self.watchers.remove(&id).is_some();
        if removed {
            self.state.hub().watchers_removed(1);
        }
        removed
    }

    fn allocate_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_watch_id) {
            self.next_watch_id += 1;
        }
        let id = self.next_watch_id;
        self.next_watch_id += 1;
        id
    }

    fn current_revision(&self) -> i64 {
        self.state.mvcc().current_revision()
    }

    /// Sends each watcher its part of `batch`, or sends it to history when the batch does not
    /// continue where it stands.
    async fn deliver(&mut self, batch: &EventBatch) -> Result<(), Closed> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(watcher) = self.watchers.get_mut(&id) else { continue };
            if batch.last_revision < watcher.next_revision {
                continue;
            }
            if batch.first_revision > watcher.next_revision {
                // It missed revisions before this batch: it is catching up, as etcd's unsynced
                // watchers are.
                self.catch_up(id, Responses::Batched).await?;
                continue;
            }
            if !batch.complete {
                // In sync, but the batch came without its events (too large to broadcast).
                self.catch_up(id, Responses::PerRevision).await?;
                continue;
            }
            let events: Vec<Event> = batch.events.iter().filter(|e| watcher.wants(e)).cloned().collect();
            watcher.next_revision = batch.last_revision + 1;
            self.send_per_revision(id, events).await?;
        }
        Ok(())
    }

    async fn catch_up_all(&mut self) -> Result<(), Closed> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            self.catch_up(id, Responses::Batched).await?;
        }
        Ok(())
    }

    /// Sends each revision's events in a response of its own, as etcd sends a watcher that is
    /// in sync (go-micro's watcher reads only the first event of each response).
    async fn send_per_revision(&mut self, id: i64, events: Vec<Event>) -> Result<(), Closed> {
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            let revision = first.revision();
            let mut same = vec![first];
            while let Some(next) = events.next_if(|e| e.revision() == revision) {
                same.push(next);
            }
            self.send_events(id, same, revision).await?;
        }
        Ok(())
    }

    /// Reads the watcher's missing revisions from history, up to the current revision, page by
    /// page, and sends them as `responses` says. A start below the compaction point cancels
    /// the watcher, as etcd does.
    async fn catch_up(&mut self, id: i64, responses: Responses) -> Result<(), Closed> {
        loop {
            let Some(watcher) = self.watchers.get(&id) else { return Ok(()) };
            let (page, current) = {
                let mvcc = self.state.mvcc();
                let current = mvcc.current_revision();
                (mvcc.history(watcher.next_revision, current, HISTORY_EVENTS_PER_READ), current)
            };
            let page = match page {
                Ok(page) => page,
                Err(ReadError::Rejected(MvccError::Compacted { compact_revision })) => {
                    self.forget(id);
                    // etcd sets no reason and leaves the header's revision at 0 here: clients
                    // read `compact_revision`.
                    let reason = String::new();
                    let output = WatchOutput::Canceled { watch_id: id, revision: 0, compact_revision, reason };
                    return self.send(output).await;
                }
                Err(error) => {
                    tracing::error!(watch_id = id, "watch cannot read history: {error}");
                    self.forget(id);
                    let reason = error.to_string();
                    let output = WatchOutput::Canceled { watch_id: id, revision: current, compact_revision: 0, reason };
                    return self.send(output).await;
                }
            };
            let Some(watcher) = self.watchers.get_mut(&id) else { return Ok(()) };
            let events: Vec<Event> = page.events.into_iter().filter(|e| watcher.wants(e)).collect();
            watcher.next_revision = watcher.next_revision.max(page.next_revision);
            let done = watcher.next_revision > current;
            match responses {
                Responses::Batched => self.send_events(id, events, page.next_revision - 1).await?,
                Responses::PerRevision => self.send_per_revision(id, events).await?,
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Sends `events` (already filtered) to watcher `id`, with previous values if it asked.
    async fn send_events(&mut self, id: i64, events: Vec<Event>, revision: i64) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        let Some(watcher) = self.watchers.get_mut(&id) else { return Ok(()) };
        watcher.last_sent = Instant::now();
        let (with_prev, fragment) = (watcher.spec.prev_kv, watcher.spec.fragment);
        let events: Vec<WatchedEvent> = events
            .into_iter()
            .map(|event| {
                let prev_kv = if with_prev { self.previous_value(&event) } else { None };
                WatchedEvent { event, prev_kv }
            })
            .collect();
        self.send(WatchOutput::Events { watch_id: id, revision, events, fragment }).await
    }

    /// The key's value just before the event, as etcd reads it for `prev_kv` watchers: absent
    /// when there was none or it is compacted away.
    fn previous_value(&self, event: &Event) -> Option<KeyValue> {
        let request =
            RangeRequest { key: event.kv.key.clone(), revision: event.revision() - 1, ..RangeRequest::default() };
        match self.state.mvcc().range(&request) {
            Ok(mut found) => found.kvs.pop(),
            // Compacted away: etcd sends the event without it too.
            Err(ReadError::Rejected(_)) => None,
            Err(ReadError::Storage(error)) => {
                tracing::error!(revision = event.revision(), "watch cannot read a previous value: {error}");
                None
            }
        }
    }

    /// etcd's progress notification: a watcher that asked for it, is up to date and has been
    /// sent nothing for an interval hears the current revision.
    async fn notify_progress(&mut self) -> Result<(), Closed> {
        let revision = self.current_revision();
        let now = Instant::now();
        let interval = self.limits.progress_interval;
        let due: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| w.spec.progress_notify && w.next_revision > revision && now - w.last_sent >= interval)
            .map(|w| w.id)
            .collect();
        for id in due {
            if let Some(watcher) = self.watchers.get_mut(&id) {
                watcher.last_sent = now;
            }
            self.send(WatchOutput::Progress { watch_id: id, revision }).await?;
        }
        Ok(())
    }

    /// Waits while the client's queue is full: only this stream slows down; the hub keeps
    /// going and this stream catches up from history if it falls out of the ring.
    async fn send(&self, output: WatchOutput) -> Result<(), Closed> {
        self.output.send(output).await.map_err(|_| Closed)
    }
}
