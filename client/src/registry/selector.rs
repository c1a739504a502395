//! [`Selector`]: picks a node of a service for each call, from a cache that one watch per
//! service keeps current, so callers do not ask the cluster on every request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rand::Rng;
use tokio::task::JoinHandle;

use super::{Action, Node, Registry, WatchOptions, WatchResult, Watcher};
use crate::error::{Error, Result};

/// Services cached at most; selecting one more evicts the least recently filled. A caller
/// talks to a handful of services, so this only bounds a runaway caller.
pub const SERVICES_MAX: usize = 1024;

/// How a [`Selector`] spreads calls over the nodes of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each node in turn (ordered by node id).
    #[default]
    RoundRobin,
    /// A node picked uniformly at random.
    Random,
}

/// A caching node selector. The first `select` of a service reads it with `get_service` and
/// starts one watch that keeps the cache current (nodes appear on create/update and go on
/// delete). If that watch fails, the service is dropped from the cache and read again on the
/// next `select`. Dropping the selector stops its watches.
pub struct Selector {
    registry: Arc<dyn Registry>,
    strategy: Strategy,
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    services: HashMap<String, Entry>,
    /// Incremented per filled entry: the watch task of an evicted or refilled entry recognises
    /// it is stale and stops touching the cache.
    generation: u64,
}

struct Entry {
    /// Node id → node, across every version of the service.
    nodes: BTreeMap<String, Node>,
    /// How many selections were made: the round-robin position.
    selections: usize,
    generation: u64,
    watch: JoinHandle<()>,
}

impl Selector {
    pub fn new(registry: Arc<dyn Registry>, strategy: Strategy) -> Selector {
        Selector { registry, strategy, cache: Arc::new(Mutex::new(Cache::default())) }
    }

    /// A node of `service_name`; [`Error::NotFound`] when it has none.
    pub async fn select(&self, service_name: &str) -> Result<Node> {
        if let Some(node) = self.pick(service_name) {
            return node;
        }
        self.fill(service_name).await?;
        self.pick(service_name).unwrap_or(Err(Error::NotFound))
    }

    /// Every cached node of `service_name` (filling the cache first if needed), ordered by id.
    pub async fn nodes(&self, service_name: &str) -> Result<Vec<Node>> {
        if !lock(&self.cache).services.contains_key(service_name) {
            self.fill(service_name).await?;
        }
        let cache = lock(&self.cache);
        let entry = cache.services.get(service_name).ok_or(Error::NotFound)?;
        Ok(entry.nodes.values().cloned().collect())
    }

    /// Picks from the cache; None when the service is not cached.
    fn pick(&self, service_name: &str) -> Option<Result<Node>> {
        let mut cache = lock(&self.cache);
        let entry = cache.services.get_mut(service_name)?;
        if entry.nodes.is_empty() {
            return Some(Err(Error::NotFound));
        }
        let index = match self.strategy {
            Strategy::RoundRobin => entry.selections % entry.nodes.len(),
            Strategy::Random => rand::rng().random_range(0..entry.nodes.len()),
        };
        entry.selections = entry.selections.wrapping_add(1);
        entry.nodes.values().nth(index).cloned().map(Ok)
    }

    /// Starts the watch, then reads the service, so no change between the two is missed (one
    /// seen twice is harmless: applying a change is idempotent).
    async fn fill(&self, service_name: &str) -> Result<()> {
        let mut watcher = self.registry.watch(WatchOptions::service(service_name)).await?;
        let nodes = match self.registry.get_service(service_name).await {
            Ok(services) => {
                services.into_iter().flat_map(|service| service.nodes).map(|node| (node.id.clone(), node)).collect()
            }
            Err(Error::NotFound) => BTreeMap::new(),
            Err(error) => return Err(error),
        };
        let mut cache = lock(&self.cache);
        if cache.services.contains_key(service_name) {
            // Another select filled it meanwhile; keep that one and its watch.
            watcher.stop();
            return Ok(());
        }
        if cache.services.len() >= SERVICES_MAX {
            cache.evict_one();
        }
        cache.generation += 1;
        let generation = cache.generation;
        let watch = tokio::spawn(follow(watcher, Arc::downgrade(&self.cache), service_name.to_string(), generation));
        cache.services.insert(service_name.to_string(), Entry { nodes, selections: 0, generation, watch });
        Ok(())
    }
}

impl Drop for Selector {
    fn drop(&mut self) {
        for entry in lock(&self.cache).services.values() {
            entry.watch.abort();
        }
    }
}

impl Cache {
    fn evict_one(&mut self) {
        let oldest = self.services.iter().min_by_key(|(_, entry)| entry.generation).map(|(name, _)| name.clone());
        if let Some(entry) = oldest.and_then(|name| self.services.remove(&name)) {
            entry.watch.abort();
        }
    }
}

/// Applies the watch's changes to the cache entry `generation` of `service_name` until the
/// watch fails or the entry is gone.
async fn follow(mut watcher: Box<dyn Watcher>, cache: Weak<Mutex<Cache>>, service_name: String, generation: u64) {
    loop {
        let result = watcher.next().await;
        let Some(shared) = cache.upgrade() else { return };
        let mut cache = lock(&shared);
        let Some(entry) = cache.services.get_mut(&service_name).filter(|entry| entry.generation == generation) else {
            return;
        };
        match result {
            Ok(WatchResult { action, service }) => {
                for node in service.nodes {
                    match action {
                        Action::Create | Action::Update => entry.nodes.insert(node.id.clone(), node),
                        Action::Delete => entry.nodes.remove(&node.id),
                    };
                }
            }
            Err(error) => {
                tracing::warn!(service = %service_name, "selector watch failed ({error}); will read the service again");
                cache.services.remove(&service_name);
                return;
            }
        }
    }
}

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    // A panic while holding the lock leaves at worst a stale cache entry, which the watch or
    // the next fill repairs.
    cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
