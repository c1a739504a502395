//! The closed-loop workloads and the loop that drives them: each client issues one operation,
//! waits for its answer, records the latency and issues the next. Operations that start after
//! the warm-up and complete before the end of the measurement window are measured; the others
//! only keep the load steady at the window's edges.
//!
//! A workload is a set of `Step`s, one per client. It must not keep unbounded state per
//! operation: a run of any length holds only histograms and fixed-size tables.

pub mod kv;
pub mod lease;
pub mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::pool::Pool;
use crate::progress::Progress;
use crate::stats::{self, Summary};

/// After a failed operation a client pauses this long, so that a cluster that refuses
/// everything (no leader yet) is not hammered by a tight loop that also starves it of CPU.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Puts of `--value-size` bytes, each client walking the key space in its own stride.
    Put,
    /// Linearizable single-key gets of random preloaded keys.
    Range,
    /// Serializable single-key gets of random preloaded keys (served by the member asked).
    RangeSerializable,
    /// Compare-and-set: a txn that puts a key if its mod_revision is the one last seen, else
    /// reads it. Each client owns its keys, so conflicts only follow a client's own lost answer.
    Txn,
    /// `--watchers` watchers on one prefix while the clients put under it; latency is from the
    /// put's acknowledgement to the event's receipt, one sample per delivered event.
    Watch,
    /// `--leases` leases, each with its own keep-alive stream, renewed in turn by the clients.
    LeaseKeepalive,
    /// Not a load: RSS and data-dir size after loading keys, and restart time (compare only).
    Memory,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::Put,
        Workload::Range,
        Workload::RangeSerializable,
        Workload::Txn,
        Workload::Watch,
        Workload::LeaseKeepalive,
        Workload::Memory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::RangeSerializable => "range-serializable",
            Workload::Txn => "txn",
            Workload::Watch => "watch",
            Workload::LeaseKeepalive => "lease-keepalive",
            Workload::Memory => "memory",
        }
    }

    pub fn parse(text: &str) -> Result<Workload, String> {
        let text = text.trim();
        Workload::ALL.into_iter().find(|w| w.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
            format!("unknown workload {text:?} (one of {})", names.join(", "))
        })
    }

    /// Whether this workload is a load to drive (everything but `memory`).
    pub fn is_load(self) -> bool {
        self != Workload::Memory
    }

    /// What one counted operation is, for the report.
    pub fn operation(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "linearizable get of one key",
            Workload::RangeSerializable => "serializable get of one key",
            Workload::Txn => "compare-and-set txn",
            Workload::Watch => "event delivered to a watcher",
            Workload::LeaseKeepalive => "keep-alive response",
            Workload::Memory => "-",
        }
    }
}

/// One run's shape: a workload at one client count.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    pub workload: Workload,
    pub clients: usize,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub keys: u64,
    pub value_size: usize,
    pub watchers: usize,
    pub leases: usize,
}

/// What one run measured.
pub struct Measurement {
    pub histogram: Histogram<u64>,
    pub errors: u64,
    /// When the measurement window began, and its length.
    pub window_start: Instant,
    pub window: Duration,
    /// The first error a client saw, to tell a broken run from a slow one.
    pub first_error: Option<String>,
}

impl Measurement {
    pub fn summary(&self) -> Summary {
        stats::summarize(&self.histogram, self.errors, self.window)
    }
}

/// The measurement window of one run: after the warm-up, for the duration.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn after_warmup(now: Instant, warmup: Duration, duration: Duration) -> Window {
        let start = now + warmup;
        Window { start, end: start + duration }
    }

    /// Whether an operation that ran from `started` to `done` is measured.
    pub fn measures(&self, started: Instant, done: Instant) -> bool {
        started >= self.start && done <= self.end
    }

    /// Whether something that happened at `at` falls in the window.
    pub fn contains(&self, at: Instant) -> bool {
        at >= self.start && at <= self.end
    }

    pub fn is_over(&self, now: Instant) -> bool {
        now >= self.end
    }
}

/// What a run's clients share: counters the progress line reads, and the first error.
#[derive(Default)]
pub struct Counters {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn error(&self, error: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // std Mutex: held for one assignment, never across an await.
        let mut first = self.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert_with(|| format!("{error:#}"));
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// One client of a closed-loop workload: `step` is one operation, start to answer.
pub trait Step: Send + 'static {
    fn step(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Runs `spec` against `endpoints` (reached as `access` says) once. `label` prefixes the
/// progress line.
pub async fn run(
    endpoints: &[String],
    access: &crate::pool::Access,
    spec: &LoadSpec,
    label: &str,
) -> anyhow::Result<Measurement> {
    let pool = Pool::connect(endpoints, access, spec.connections).await?;
    match spec.workload {
        Workload::Put => Ok(drive(kv::put_steps(&pool, spec), spec, label).await),
        Workload::Range | Workload::RangeSerializable => {
            kv::load(&pool, kv::KEY_PREFIX, spec.keys, spec.value_size, label).await?;
            Ok(drive(kv::range_steps(&pool, spec), spec, label).await)
        }
        Workload::Txn => Ok(drive(kv::txn_steps(&pool, spec), spec, label).await),
        Workload::Watch => watch::run(&pool, spec, label).await,
        Workload::LeaseKeepalive => {
            let (steps, leases) = lease::grant(&pool, spec, label).await?;
            let measurement = drive(steps, spec, label).await;
            lease::revoke(&pool, leases).await;
            Ok(measurement)
        }
        Workload::Memory => anyhow::bail!("memory is not a load: use compare --resources"),
    }
}

/// Drives every client through one warm-up and one measurement window, with a progress line.
pub async fn drive<S: Step>(steps: Vec<S>, spec: &LoadSpec, label: &str) -> Measurement {
    let counters = Arc::new(Counters::default());
    let window = Window::after_warmup(Instant::now(), spec.warmup, spec.duration);
    let progress = window_progress(label, window, counters.clone());
    let measurement = drive_within(steps, window, counters).await;
    progress.finish();
    measurement
}

/// Drives every client through `window`, counting into `counters`.
pub async fn drive_within<S: Step>(steps: Vec<S>, window: Window, counters: Arc<Counters>) -> Measurement {
    let tasks: Vec<_> = steps.into_iter().map(|step| tokio::spawn(drive_one(step, window, counters.clone()))).collect();
    let mut histogram = stats::new_histogram();
    for task in tasks {
        match task.await {
            Ok(client_histogram) => stats::merge(&mut histogram, &client_histogram),
            Err(join_error) => counters.error(&anyhow::anyhow!("client task failed: {join_error}")),
        }
    }
    Measurement {
        histogram,
        errors: counters.errors.load(Ordering::Relaxed),
        window_start: window.start,
        window: window.end - window.start,
        first_error: counters.first_error(),
    }
}

async fn drive_one<S: Step>(mut step: S, window: Window, counters: Arc<Counters>) -> Histogram<u64> {
    let mut histogram = stats::new_histogram();
    loop {
        let started = Instant::now();
        if window.is_over(started) {
            return histogram;
        }
        let outcome = step.step().await;
        let done = Instant::now();
        match outcome {
            Ok(()) if window.measures(started, done) => {
                stats::record(&mut histogram, done - started);
                counters.ops.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(error) => {
                if window.contains(started) {
                    counters.error(&error);
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// The progress line of a measured run: warm-up, then time, ops and rate so far.
pub fn window_progress(label: &str, window: Window, counters: Arc<Counters>) -> Progress {
    let label = label.to_string();
    let duration = window.end - window.start;
    Progress::start(move |_| {
        let now = Instant::now();
        if now < window.start {
            return format!("{label}: warming up");
        }
        let measured = (now.min(window.end) - window.start).as_secs_f64().max(1e-3);
        let ops = counters.ops.load(Ordering::Relaxed);
        format!(
            "{label}: {measured:.0}/{:.0} s  {ops} ops  {:.0} ops/s  {} errors",
            duration.as_secs_f64(),
            ops as f64 / measured,
            counters.errors.load(Ordering::Relaxed)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_parses_back_from_its_name() {
        for workload in Workload::ALL {
            assert_eq!(Workload::parse(workload.name()), Ok(workload));
            let json = serde_json::to_string(&workload).expect("serialises");
            assert_eq!(json, format!("\"{}\"", workload.name()));
        }
        assert!(Workload::parse("lease_keepalive").is_err());
        assert_eq!(Workload::parse(" txn "), Ok(Workload::Txn));
    }

    #[test]
    fn the_window_measures_only_operations_inside_it() {
        let now = Instant::now();
        let window = Window::after_warmup(now, Duration::from_secs(1), Duration::from_secs(2));
        let at = |ms: u64| now + Duration::from_millis(ms);
        assert!(!window.measures(at(900), at(1_100)), "started in the warm-up");
        assert!(window.measures(at(1_000), at(1_100)));
        assert!(window.measures(at(2_000), at(3_000)));
        assert!(!window.measures(at(2_900), at(3_100)), "ended after the window");
        assert!(!window.is_over(at(2_999)));
        assert!(window.is_over(at(3_000)));
        assert!(window.contains(at(1_500)) && !window.contains(at(500)));
    }

    struct Counting(u64);

    impl Step for Counting {
        async fn step(&mut self) -> anyhow::Result<()> {
            self.0 += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            if self.0.is_multiple_of(2) {
                anyhow::bail!("every second call fails")
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn drive_counts_operations_and_errors_inside_the_window() {
        let spec = LoadSpec {
            workload: Workload::Put,
            clients: 2,
            connections: 1,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(200),
            keys: 1,
            value_size: 1,
            watchers: 1,
            leases: 1,
        };
        let measurement = drive(vec![Counting(0), Counting(0)], &spec, "test").await;
        assert!(!measurement.histogram.is_empty());
        assert!(measurement.errors > 0);
        assert_eq!(measurement.first_error.as_deref(), Some("every second call fails"));
        assert_eq!(measurement.window, Duration::from_millis(200));
    }
}
