//! [`MemoryRegistry`]: the registry inside the process, for unit tests of services and callers.
//! It models what the cluster does — one key per node holding go-micro's JSON, leases with
//! TTLs, watch actions in the order of the changes, the same name rules, reads that return the
//! stored documents — with tokio's clock, so tests can use `tokio::time::pause()`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use super::registration::{self, Keeper, Registration};
use super::types::Node;
use super::{
    group, node_key, service_prefix, ttl_seconds, validate_deregister, validate_lookup, validate_register,
    validate_ttl, Action, RegisterOptions, Registry, Service, WatchOptions, WatchResult, Watcher,
};
use crate::error::{Error, Result};

/// Changes kept for watchers that have not read them yet. A watcher further behind gets
/// [`Error::WatchLagged`] rather than an unbounded queue.
pub const WATCH_EVENTS_MAX: usize = 1024;

/// An in-memory [`Registry`]. Cheap to clone: clones share the same registrations.
///
/// Its background expiry task (started by the first registration with a TTL) ends when the
/// last clone is dropped.
#[derive(Clone)]
pub struct MemoryRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// std Mutex: never held across an `.await`.
    state: Mutex<State>,
    /// Sent to while `state` is locked, so a new watcher sees exactly the changes after the
    /// state it subscribed at.
    events: broadcast::Sender<Event>,
    /// Wakes the expiry task when an earlier deadline appears or the registry is dropped. Not
    /// inside `Inner` for the task: it must not keep the registry alive.
    wake_reaper: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// Key (see [`node_key`]) → the service holding that one node.
    nodes: BTreeMap<String, Stored>,
    leases: HashMap<i64, Lease>,
    last_lease_id: i64,
    reaper_started: bool,
}

struct Stored {
    /// The registration as the cluster stores it: the service with this one node, the node's
    /// `stored_json` set to the bytes the cluster would hold.
    service: Service,
    /// 0: no lease.
    lease_id: i64,
}

struct Lease {
    ttl: Duration,
    expires_at: Instant,
    keys: BTreeSet<String>,
}

#[derive(Clone)]
struct Event {
    key: String,
    result: WatchResult,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        MemoryRegistry::new()
    }
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> MemoryRegistry {
        let (events, _) = broadcast::channel(WATCH_EVENTS_MAX);
        let inner = Inner { state: Mutex::new(State::default()), events, wake_reaper: Arc::new(Notify::new()) };
        MemoryRegistry { inner: Arc::new(inner) }
    }

    /// Revokes a lease as if it had expired: its nodes are deleted (watchers see `delete`).
    /// Lets tests check that a [`Registration`] registers again. False when no such lease.
    pub fn revoke_lease(&self, lease_id: i64) -> bool {
        self.inner.lock().revoke(lease_id, &self.inner.events)
    }

    /// Registers and returns the lease id (0 without a TTL), reusing the node's live lease when
    /// the TTL is the same, as the cluster does.
    fn register_lease(&self, service: &Service, ttl: Duration) -> Result<i64> {
        validate_register(service)?;
        validate_ttl(ttl)?;
        let now = Instant::now();
        let mut state = self.inner.lock();
        state.expire(now, &self.inner.events);
        let ttl = Duration::from_secs(u64::try_from(ttl_seconds(ttl)).unwrap_or(u64::MAX));
        let lease_id = if ttl.is_zero() { 0 } else { state.lease_for(service, ttl, now) };
        for node in &service.nodes {
            let key = node_key(&service.name, &node.id);
            let value = stored_registration(service, node);
            let action = match state.nodes.get(&key) {
                None => Action::Create,
                Some(stored) if same_bytes(&stored.service, &value) && stored.lease_id == lease_id => continue,
                Some(_) => Action::Update,
            };
            state.attach(&key, lease_id);
            state.nodes.insert(key.clone(), Stored { service: value.clone(), lease_id });
            // An error only means nobody is watching.
            let _ = self.inner.events.send(Event { key, result: WatchResult { action, service: value } });
        }
        let start_reaper = lease_id != 0 && !state.reaper_started;
        state.reaper_started |= start_reaper;
        drop(state);
        if start_reaper {
            tokio::spawn(reap(Arc::downgrade(&self.inner), self.inner.wake_reaper.clone()));
        }
        // The new lease may expire before everything the expiry task waits for.
        self.inner.wake_reaper.notify_one();
        Ok(lease_id)
    }

    /// Refreshes a lease; false when it no longer exists.
    fn keep_alive(&self, lease_id: i64) -> bool {
        let now = Instant::now();
        let mut state = self.inner.lock();
        state.expire(now, &self.inner.events);
        match state.leases.get_mut(&lease_id) {
            Some(lease) => {
                lease.expires_at = now + lease.ttl;
                true
            }
            None => false,
        }
    }

    /// Every stored node whose key starts with `prefix` (and whose service is `name`, when
    /// given), grouped as the cluster groups them.
    fn grouped(&self, prefix: &str, name: Option<&str>) -> Vec<Service> {
        let mut state = self.inner.lock();
        state.expire(Instant::now(), &self.inner.events);
        let registrations = state
            .nodes
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, stored)| &stored.service)
            .filter(|service| name.is_none_or(|name| service.name == name))
            .cloned();
        group(registrations)
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn register(&self, service: &Service, options: RegisterOptions) -> Result<()> {
        self.register_lease(service, options.ttl).map(|_| ())
    }

    async fn deregister(&self, service: &Service) -> Result<()> {
        validate_deregister(service)?;
        let mut state = self.inner.lock();
        state.expire(Instant::now(), &self.inner.events);
        for node in &service.nodes {
            state.delete(&node_key(&service.name, &node.id), &self.inner.events);
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>> {
        validate_lookup(name)?;
        let services = self.grouped(&service_prefix(name), Some(name));
        if services.is_empty() {
            return Err(Error::NotFound);
        }
        Ok(services)
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        Ok(self.grouped(super::KEY_PREFIX, None))
    }

    async fn watch(&self, options: WatchOptions) -> Result<Box<dyn Watcher>> {
        let prefix = match &options.service {
            Some(name) => {
                validate_lookup(name)?;
                service_prefix(name)
            }
            None => super::KEY_PREFIX.to_string(),
        };
        let mut state = self.inner.lock();
        // Expire first, so the deletions due now are not reported as changes after the watch.
        state.expire(Instant::now(), &self.inner.events);
        let events = self.inner.events.subscribe();
        Ok(Box::new(MemoryWatcher { events: Some(events), prefix, service: options.service }))
    }

    async fn keep_registered(&self, service: &Service, options: RegisterOptions) -> Result<Registration> {
        registration::start(MemoryKeeper { registry: self.clone(), service: service.clone(), ttl: options.ttl }).await
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than losing the registry, so keep going with what is there.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Lets the expiry task notice the registry is gone and end.
        self.wake_reaper.notify_one();
    }
}

impl State {
    /// The node's live lease when it has the same TTL (refreshed), else a new lease.
    fn lease_for(&mut self, service: &Service, ttl: Duration, now: Instant) -> i64 {
        let first_key = service.nodes.first().map(|node| node_key(&service.name, &node.id));
        let current = first_key.and_then(|key| self.nodes.get(&key)).map(|stored| stored.lease_id);
        if let Some(lease_id) = current {
            if let Some(lease) = self.leases.get_mut(&lease_id).filter(|lease| lease.ttl == ttl) {
                lease.expires_at = now + ttl;
                return lease_id;
            }
        }
        self.last_lease_id += 1;
        let lease_id = self.last_lease_id;
        self.leases.insert(lease_id, Lease { ttl, expires_at: now + ttl, keys: BTreeSet::new() });
        lease_id
    }

    /// Moves `key` from its current lease (if any) to `lease_id` (if not 0).
    fn attach(&mut self, key: &str, lease_id: i64) {
        let old_lease_id = self.nodes.get(key).map_or(0, |stored| stored.lease_id);
        if old_lease_id == lease_id {
            return;
        }
        if let Some(lease) = self.leases.get_mut(&old_lease_id) {
            lease.keys.remove(key);
        }
        if let Some(lease) = self.leases.get_mut(&lease_id) {
            lease.keys.insert(key.to_string());
        }
    }

    /// Deletes one node, if it exists.
    fn delete(&mut self, key: &str, events: &broadcast::Sender<Event>) {
        self.attach(key, 0);
        let Some(stored) = self.nodes.remove(key) else { return };
        let result = WatchResult { action: Action::Delete, service: stored.service };
        // An error only means nobody is watching.
        let _ = events.send(Event { key: key.to_string(), result });
    }

    fn revoke(&mut self, lease_id: i64, events: &broadcast::Sender<Event>) -> bool {
        let Some(lease) = self.leases.remove(&lease_id) else { return false };
        for key in &lease.keys {
            self.delete(key, events);
        }
        true
    }

    /// Revokes every lease whose deadline has passed.
    fn expire(&mut self, now: Instant, events: &broadcast::Sender<Event>) {
        let due: Vec<i64> =
            self.leases.iter().filter(|(_, lease)| lease.expires_at <= now).map(|(lease_id, _)| *lease_id).collect();
        for lease_id in due {
            self.revoke(lease_id, events);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.leases.values().map(|lease| lease.expires_at).min()
    }
}

/// The registration of one node as the cluster stores it, with the stored bytes attached as a
/// read from the cluster returns them (a node registered again with a document it was read
/// with keeps that document, as on the cluster).
fn stored_registration(service: &Service, node: &Node) -> Service {
    let mut registration = Service {
        name: service.name.clone(),
        version: service.version.clone(),
        metadata: service.metadata.clone(),
        endpoints: service.endpoints.clone(),
        nodes: vec![node.clone()],
    };
    let json = registration.to_json();
    registration.nodes[0].stored_json = Some(Arc::from(json));
    registration
}

/// Whether two stored registrations hold the same bytes (equal services may not: `{}` and
/// `null`, field order).
fn same_bytes(a: &Service, b: &Service) -> bool {
    let json = |service: &Service| service.nodes.first().and_then(|node| node.stored_json.clone());
    json(a) == json(b)
}

/// Expires leases on time, so watchers see deletions even when nobody calls the registry.
async fn reap(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let deadline = {
            let Some(inner) = inner.upgrade() else { return };
            let mut state = inner.lock();
            state.expire(Instant::now(), &inner.events);
            state.next_deadline()
        };
        match deadline {
            Some(deadline) => tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = wake.notified() => {}
            },
            None => wake.notified().await,
        }
    }
}

struct MemoryWatcher {
    /// None once stopped.
    events: Option<broadcast::Receiver<Event>>,
    prefix: String,
    /// The one service watched (its key prefix may hold others, see `service_prefix`).
    service: Option<String>,
}

/// Whether a watcher of `prefix` (and of `service`, when given) reports `event`.
fn wanted(event: &Event, prefix: &str, service: Option<&str>) -> bool {
    event.key.starts_with(prefix) && service.is_none_or(|name| event.result.service.name == name)
}

#[async_trait]
impl Watcher for MemoryWatcher {
    async fn next(&mut self) -> Result<WatchResult> {
        let Some(events) = &mut self.events else { return Err(Error::WatchStopped) };
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event, &self.prefix, self.service.as_deref()) => return Ok(event.result),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(skipped)) => return Err(Error::WatchLagged { skipped }),
                Err(broadcast::error::RecvError::Closed) => {
                    self.events = None;
                    return Err(Error::WatchStopped);
                }
            }
        }
    }

    fn stop(&mut self) {
        self.events = None;
    }
}

struct MemoryKeeper {
    registry: MemoryRegistry,
    service: Service,
    ttl: Duration,
}

#[async_trait]
impl Keeper for MemoryKeeper {
    async fn register(&mut self) -> Result<i64> {
        self.registry.register_lease(&self.service, self.ttl)
    }

    async fn hold(&mut self, lease_id: i64) -> String {
        if lease_id == 0 {
            return std::future::pending().await;
        }
        // A third of the TTL, as etcd's clients do: two keep-alives can be missed.
        let interval = self.ttl / 3;
        loop {
            tokio::time::sleep(interval).await;
            if !self.registry.keep_alive(lease_id) {
                return format!("lease {lease_id} expired or was revoked");
            }
        }
    }

    async fn deregister(&mut self) -> Result<()> {
        self.registry.deregister(&self.service).await
    }
}
