//! [`MemoryConfig`]: the configuration inside the process, for unit tests of services. It
//! applies the cluster's rules (see `tree`): the same merges, documents, secret masking and
//! errors, a revision per change, reads at past revisions from a bounded history, and watches
//! that see every change in order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::tree::{self, Changes, Leaves, Path};
use super::{Config, ConfigWatcher, DeleteOptions, GetOptions, SetOptions, Value, WatchOptions};
use crate::error::{Error, Result};

/// Changes kept for watchers that have not read them yet. A watcher further behind gets
/// [`Error::WatchLagged`] rather than an unbounded queue.
pub const WATCH_EVENTS_MAX: usize = 1024;
/// Changes kept to read past revisions; older revisions read as compacted, as on a cluster.
pub const HISTORY_REVISIONS_MAX: usize = 4096;
// A watcher that has not lagged must be able to read the revision of every change queued for it.
const _: () = assert!(HISTORY_REVISIONS_MAX >= WATCH_EVENTS_MAX);

/// An in-memory [`Config`]. Cheap to clone: clones share the same configuration.
#[derive(Clone)]
pub struct MemoryConfig {
    inner: Arc<Inner>,
}

struct Inner {
    /// std Mutex: never held across an `.await`.
    state: Mutex<State>,
    /// Sent to while `state` is locked, so a new watcher sees exactly the changes after the
    /// value it starts with.
    events: broadcast::Sender<Event>,
}

struct State {
    leaves: Leaves,
    /// Starts at 1, as etcd's; each change that writes or deletes a leaf adds one.
    revision: i64,
    /// The newest changes, oldest first, to undo when reading a past revision.
    history: VecDeque<(i64, Changes)>,
    /// Revisions up to this one can no longer be read (their changes left the history).
    compacted: i64,
}

#[derive(Clone)]
struct Event {
    revision: i64,
    touched: Arc<Vec<String>>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig::new()
    }
}

impl MemoryConfig {
    /// An empty configuration.
    pub fn new() -> MemoryConfig {
        let (events, _) = broadcast::channel(WATCH_EVENTS_MAX);
        let state = State { leaves: Leaves::new(), revision: 1, history: VecDeque::new(), compacted: 0 };
        MemoryConfig { inner: Arc::new(Inner { state: Mutex::new(state), events }) }
    }

    /// Applies one change and tells watchers; the revision after it.
    fn change(&self, apply: impl FnOnce(&mut Leaves) -> Result<Changes>) -> Result<i64> {
        let mut state = self.inner.lock();
        let changes = apply(&mut state.leaves)?;
        if changes.touched.is_empty() {
            // Nothing written or deleted: no new revision, as on the cluster.
            return Ok(state.revision);
        }
        state.revision += 1;
        let event = Event { revision: state.revision, touched: Arc::new(changes.touched.clone()) };
        let revision = state.revision;
        state.history.push_back((revision, changes));
        while state.history.len() > HISTORY_REVISIONS_MAX {
            if let Some((dropped, _)) = state.history.pop_front() {
                state.compacted = dropped;
            }
        }
        // An error only means nobody is watching.
        let _ = self.inner.events.send(event);
        Ok(revision)
    }
}

#[async_trait]
impl Config for MemoryConfig {
    async fn get_with(&self, path: &str, options: GetOptions) -> Result<Value> {
        let parsed = Path::parse(&options.namespace, path)?;
        let state = self.inner.lock();
        let revision = options.revision.filter(|revision| *revision > 0).unwrap_or(state.revision);
        let document = state.document(&parsed, revision, options.secrets)?;
        document.map(|json| Value::at_revision(json, state.revision)).ok_or(Error::NotFound)
    }

    async fn set(&self, path: &str, value: serde_json::Value, options: SetOptions) -> Result<i64> {
        let path = Path::parse(&options.namespace, path)?;
        self.change(|leaves| tree::set(leaves, &path, &value, options.secret))
    }

    async fn delete(&self, path: &str, options: DeleteOptions) -> Result<i64> {
        let path = Path::parse(&options.namespace, path)?;
        self.change(|leaves| Ok(tree::delete(leaves, &path)))
    }

    async fn watch(&self, path: &str, options: WatchOptions) -> Result<Box<dyn ConfigWatcher>> {
        let path = Path::parse(&options.namespace, path)?;
        let state = self.inner.lock();
        let current = state.document(&path, state.revision, options.secrets)?;
        let first = Value::at_revision(current.unwrap_or(serde_json::Value::Null), state.revision);
        let events = self.inner.events.subscribe();
        drop(state);
        Ok(Box::new(MemoryWatcher {
            config: Arc::downgrade(&self.inner),
            events: Some(events),
            path,
            secrets: options.secrets,
            first: Some(first),
        }))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole leaves behind: keep going with them.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// The document at `path` as of `revision`, with etcd's errors for revisions out of reach.
    fn document(&self, path: &Path, revision: i64, secrets: bool) -> Result<Option<serde_json::Value>> {
        if revision > self.revision {
            return Err(out_of_range("etcdserver: mvcc: required revision is a future revision"));
        }
        if revision < self.compacted {
            return Err(out_of_range("etcdserver: mvcc: required revision has been compacted"));
        }
        let mut leaves = tree::subtree(&self.leaves, path);
        for (_, changes) in self.history.iter().rev().take_while(|(changed_at, _)| *changed_at > revision) {
            for (key, previous) in changes.undo.iter().rev() {
                if path.relative(key).is_none() {
                    continue;
                }
                match previous {
                    Some(leaf) => leaves.insert(key.clone(), leaf.clone()),
                    None => leaves.remove(key),
                };
            }
        }
        Ok(tree::assemble(path, &leaves, secrets))
    }
}

/// The error a cluster gives for a revision it cannot read.
fn out_of_range(message: &str) -> Error {
    Error::Other { code: "OutOfRange".into(), message: message.into() }
}

struct MemoryWatcher {
    /// Weak: a watcher does not keep the configuration alive.
    config: Weak<Inner>,
    /// None once stopped.
    events: Option<broadcast::Receiver<Event>>,
    path: Path,
    secrets: bool,
    /// The value when the watch started, until the first `next`.
    first: Option<Value>,
}

#[async_trait]
impl ConfigWatcher for MemoryWatcher {
    async fn next(&mut self) -> Result<Value> {
        let Some(events) = &mut self.events else { return Err(Error::WatchStopped) };
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(skipped)) => return Err(Error::WatchLagged { skipped }),
                Err(broadcast::error::RecvError::Closed) => {
                    self.events = None;
                    return Err(Error::WatchStopped);
                }
            };
            if !event.touched.iter().any(|key| self.path.relative(key).is_some()) {
                continue;
            }
            let Some(config) = self.config.upgrade() else {
                self.events = None;
                return Err(Error::WatchStopped);
            };
            let document = config.lock().document(&self.path, event.revision, self.secrets)?;
            return Ok(Value::at_revision(document.unwrap_or(serde_json::Value::Null), event.revision));
        }
    }

    fn stop(&mut self) {
        self.events = None;
        self.first = None;
    }
}
