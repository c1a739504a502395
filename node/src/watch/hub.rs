//! The broadcast of applied changes: one message per applied batch of log entries, published by
//! the state machine while it still holds the keyspace's write lock, so batches go out in
//! revision order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::limits::{WATCH_HUB_BATCHES_MAX, WATCH_HUB_BATCH_EVENT_BYTES_MAX};
use crate::mvcc::Event;

/// The changes of revisions `first_revision..=last_revision`.
#[derive(Debug)]
pub struct EventBatch {
    pub first_revision: i64,
    pub last_revision: i64,
    pub events: Vec<Event>,
    /// False when the keyspace was replaced (a snapshot installed): `events` is empty and the
    /// revisions must be read from history.
    pub complete: bool,
}

#[derive(Debug)]
pub struct Hub {
    sender: broadcast::Sender<Arc<EventBatch>>,
    /// Watchers of every session, for /metrics.
    watchers: AtomicUsize,
    /// Set when the member stops: every long-lived stream ends, so that the server's graceful
    /// shutdown does not wait forever on clients that never close theirs.
    stopping: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        let (sender, _) = broadcast::channel(WATCH_HUB_BATCHES_MAX);
        Hub { sender, watchers: AtomicUsize::new(0), stopping: watch::channel(false).0 }
    }
}

impl Hub {
    /// Broadcasts the changes of revisions `first_revision..=last_revision`. Never blocks: with
    /// no receiver the batch is dropped, which is fine since nobody watches.
    pub fn publish_applied(&self, first_revision: i64, last_revision: i64, events: Vec<Event>) {
        let bytes: usize = events.iter().map(|e| e.kv.key.len() + e.kv.value.len()).sum();
        let complete = bytes <= WATCH_HUB_BATCH_EVENT_BYTES_MAX;
        let events = if complete { events } else { Vec::new() };
        self.publish(EventBatch { first_revision, last_revision, events, complete });
    }

    /// Tells receivers that revisions up to `last_revision` changed in ways they must read
    /// from history (the keyspace was replaced by a snapshot).
    pub fn publish_replaced(&self, first_revision: i64, last_revision: i64) {
        self.publish(EventBatch { first_revision, last_revision, events: Vec::new(), complete: false });
    }

    fn publish(&self, batch: EventBatch) {
        let _ = self.sender.send(Arc::new(batch));
    }

    /// Ends every session and every other stream that waits on `stopped`.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once `stop` was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            // An error means the hub is gone, which also means stop.
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    }

    /// Watch streams open now (each session holds one subscription).
    pub fn stream_count(&self) -> usize {
        self.sender.receiver_count()
    }

    pub fn watcher_count(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    pub(super) fn watchers_added(&self, count: usize) {
        self.watchers.fetch_add(count, Ordering::Relaxed);
    }

    pub(super) fn watchers_removed(&self, count: usize) {
        self.watchers.fetch_sub(count, Ordering::Relaxed);
    }

    /// Batches published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventBatch>> {
        self.sender.subscribe()
    }
}
