//! One value per node address and worker thread (a channel, a connection), made on first use and
//! kept. Each worker is a single-threaded runtime, and a connection's tasks run on the runtime
//! that made it: a worker using another's would wake that thread twice per call. nginx's workers
//! keep their own upstream connections the same way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;

/// Addresses kept at most per worker; past this a worker's cache starts again (nodes come and go).
const ADDRESSES_PER_WORKER_MAX: usize = 4096;

pub struct PerWorker<T> {
    // std Mutex: held to look up or insert, never across an await.
    by_worker: Mutex<HashMap<ThreadId, HashMap<String, T>>>,
}

impl<T> Default for PerWorker<T> {
    fn default() -> Self {
        PerWorker { by_worker: Mutex::new(HashMap::new()) }
    }
}

impl<T: Clone> PerWorker<T> {
    /// This worker's value for `address`, if it has one.
    pub fn get(&self, address: &str) -> Option<T> {
        let worker = std::thread::current().id();
        self.lock().get(&worker).and_then(|values| values.get(address).cloned())
    }

    /// Keeps `value` as this worker's for `address`.
    pub fn keep(&self, address: &str, value: T) {
        let worker = std::thread::current().id();
        let mut by_worker = self.lock();
        let values = by_worker.entry(worker).or_default();
        if values.len() >= ADDRESSES_PER_WORKER_MAX {
            values.clear();
        }
        values.insert(address.to_string(), value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, HashMap<String, T>>> {
        self.by_worker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_sees_only_its_own_values() {
        let cache = std::sync::Arc::new(PerWorker::<u32>::default());
        cache.keep("node:1", 1);
        let other = cache.clone();
        let seen_elsewhere = std::thread::spawn(move || {
            let before = other.get("node:1");
            other.keep("node:1", 2);
            (before, other.get("node:1"))
        })
        .join()
        .expect("thread");
        assert_eq!(seen_elsewhere, (None, Some(2)));
        assert_eq!(cache.get("node:1"), Some(1));
    }
}
