//! The key-value workloads: put, range (linearizable and serializable) and txn, and the loader
//! that fills a key space before a read workload or a memory measurement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::{LoadSpec, Step, Workload};
use crate::pool::Pool;
use crate::progress::Progress;

/// The key space of put, range and txn. Separate from the watch prefix, so that watchers see
/// only the watch workload's puts.
pub const KEY_PREFIX: &str = "keel-bench/kv/";
/// Concurrent puts while loading a key space: enough to batch on both systems, few enough not
/// to queue for long on one core.
pub const LOAD_CONCURRENCY: usize = 64;

/// The name of key `index` under `prefix`: fixed width, so keys sort by index.
pub fn key(prefix: &str, index: u64) -> String {
    format!("{prefix}{index:010}")
}

/// SplitMix64: a tiny deterministic generator for picking keys, seeded per client so that runs
/// repeat exactly and clients do not walk in step.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound` > 0); the modulo bias is below 2^-40 for any key space here.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The keys client `client` of `clients` owns in a space of `keys`: every `clients`-th key from
/// its own index, or one shared key when there are more clients than keys.
pub fn owned_keys(client: usize, clients: usize, keys: u64) -> Vec<u64> {
    let (client, clients) = (client as u64, clients as u64);
    if client < keys {
        (client..keys).step_by(clients as usize).collect()
    } else {
        vec![client % keys]
    }
}

pub struct PutStep {
    client: Client,
    next: u64,
    stride: u64,
    keys: u64,
    value: Vec<u8>,
}

impl Step for PutStep {
    async fn step(&mut self) -> anyhow::Result<()> {
        let key = key(KEY_PREFIX, self.next % self.keys);
        self.next = self.next.wrapping_add(self.stride);
        self.client.put(key, self.value.clone(), None).await?;
        Ok(())
    }
}

pub fn put_steps(pool: &Pool, spec: &LoadSpec) -> Vec<PutStep> {
    (0..spec.clients)
        .map(|c| PutStep {
            client: pool.client(c),
            next: c as u64,
            stride: spec.clients as u64,
            keys: spec.keys,
            value: vec![b'v'; spec.value_size],
        })
        .collect()
}

pub struct RangeStep {
    client: Client,
    picker: SplitMix64,
    keys: u64,
    options: Option<GetOptions>,
}

impl Step for RangeStep {
    async fn step(&mut self) -> anyhow::Result<()> {
        let key = key(KEY_PREFIX, self.picker.below(self.keys));
        self.client.get(key, self.options.clone()).await?;
        Ok(())
    }
}

/// Gets for `range` (linearizable) or `range-serializable`, as `spec.workload` says.
pub fn range_steps(pool: &Pool, spec: &LoadSpec) -> Vec<RangeStep> {
    let options = (spec.workload == Workload::RangeSerializable).then(|| GetOptions::new().with_serializable());
    (0..spec.clients)
        .map(|c| RangeStep {
            client: pool.client(c),
            picker: SplitMix64::new(c as u64),
            keys: spec.keys,
            options: options.clone(),
        })
        .collect()
}

pub struct TxnStep {
    client: Client,
    keys: Vec<u64>,
    /// The mod_revision last seen for each owned key (0: the key does not exist yet).
    revisions: Vec<i64>,
    next: usize,
    value: Vec<u8>,
}

impl Step for TxnStep {
    async fn step(&mut self) -> anyhow::Result<()> {
        let slot = self.next;
        self.next = (self.next + 1) % self.keys.len();
        let key = key(KEY_PREFIX, self.keys[slot]);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, self.revisions[slot])])
            .and_then([TxnOp::put(key.clone(), self.value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self.client.txn(txn).await?;
        self.revisions[slot] = if response.succeeded() {
            // One put in the txn: the key's new mod_revision is the txn's revision.
            response.header().map_or(0, |header| header.revision())
        } else {
            current_mod_revision(&response.op_responses())
        };
        Ok(())
    }
}

/// The mod_revision in a failed compare-and-set's get, or 0 if the key is gone.
fn current_mod_revision(responses: &[TxnOpResponse]) -> i64 {
    responses
        .iter()
        .find_map(|response| match response {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
            _ => None,
        })
        .unwrap_or(0)
}

pub fn txn_steps(pool: &Pool, spec: &LoadSpec) -> Vec<TxnStep> {
    (0..spec.clients)
        .map(|c| {
            let keys = owned_keys(c, spec.clients, spec.keys);
            TxnStep {
                client: pool.client(c),
                revisions: vec![0; keys.len()],
                keys,
                next: 0,
                value: vec![b'v'; spec.value_size],
            }
        })
        .collect()
}

/// Makes sure `keys` keys of `value_size` bytes exist under `prefix`, writing them with
/// `LOAD_CONCURRENCY` clients unless they are there already. Returns how long the writing took.
pub async fn load(pool: &Pool, prefix: &str, keys: u64, value_size: usize, label: &str) -> anyhow::Result<Duration> {
    let mut probe = pool.client(0);
    let present = probe.get(prefix, Some(GetOptions::new().with_prefix().with_count_only())).await?.count();
    if u64::try_from(present).unwrap_or(0) >= keys {
        return Ok(Duration::ZERO);
    }
    let started = Instant::now();
    let written = Arc::new(AtomicU64::new(0));
    let progress = {
        let (label, written) = (label.to_string(), written.clone());
        Progress::start(move |elapsed| {
            let done = written.load(Ordering::Relaxed);
            let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
            format!("{label}: loading {done}/{keys} keys  {rate:.0} puts/s")
        })
    };
    let mut tasks = Vec::new();
    for worker in 0..LOAD_CONCURRENCY {
        let (mut client, written, prefix) = (pool.client(worker), written.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let value = vec![b'v'; value_size];
            for index in (worker as u64..keys).step_by(LOAD_CONCURRENCY) {
                client.put(key(&prefix, index), value.clone(), None).await?;
                written.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let mut outcome = Ok(());
    for task in tasks {
        let result = task.await.map_err(anyhow::Error::from).and_then(|r| r);
        if outcome.is_ok() {
            outcome = result;
        }
    }
    progress.finish();
    outcome.map(|()| started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_under_the_prefix() {
        assert_eq!(key(KEY_PREFIX, 42), "keel-bench/kv/0000000042");
        assert!(key(KEY_PREFIX, 9) < key(KEY_PREFIX, 10));
    }

    #[test]
    fn the_picker_is_deterministic_and_in_range() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        let drawn: Vec<u64> = (0..1_000).map(|_| a.below(10)).collect();
        assert_eq!(drawn, (0..1_000).map(|_| b.below(10)).collect::<Vec<_>>());
        assert!(drawn.iter().all(|&k| k < 10));
        // Every key is picked at some point: no stuck generator.
        assert!((0..10).all(|k| drawn.contains(&k)));
        assert_ne!(SplitMix64::new(1).next_u64(), SplitMix64::new(2).next_u64());
    }

    #[test]
    fn clients_own_disjoint_keys_covering_the_space() {
        let mut all: Vec<u64> = (0..3).flat_map(|c| owned_keys(c, 3, 10)).collect();
        assert_eq!(owned_keys(1, 3, 10), vec![1, 4, 7]);
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn with_more_clients_than_keys_clients_share_one_key_each() {
        assert_eq!(owned_keys(5, 8, 4), vec![1]);
        assert_eq!(owned_keys(2, 8, 4), vec![2]);
    }
}
