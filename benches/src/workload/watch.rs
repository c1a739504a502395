//! The watch workload: `--watchers` watch streams on one prefix, and the clients putting under
//! it closed-loop. A sample is one event delivered to one watcher; its latency runs from the
//! moment the put's acknowledgement reached its writer to the moment the event reached the
//! watcher. Both happen in this process, so one monotonic clock times them.
//!
//! An event can arrive before its put's acknowledgement (both leave the server after apply);
//! it is recorded as 0: the watcher was not behind the writer. Writers publish acknowledgement
//! times in a fixed-size ring indexed by revision, so memory stays bounded however long the run.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, WatchOptions, WatchStream};
use hdrhistogram::Histogram;

use super::kv::key;
use super::{window_progress, Counters, LoadSpec, Measurement, Step, Window};
use crate::pool::Pool;
use crate::stats;

/// Watchers watch this prefix; only this workload writes under it.
pub const WATCH_PREFIX: &str = "keel-bench/watch/";
/// Revisions the acknowledgement ring remembers. A watcher further behind the writers than this
/// cannot be timed: its events count as errors (it is hopelessly behind anyway).
pub const ACK_RING_SLOTS: usize = 1 << 18;
/// How long a watcher may take to be created.
const WATCH_CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a watcher learns about an event's revision from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acked {
    /// Acknowledged this many nanoseconds after the ring's epoch.
    At(u64),
    /// Not acknowledged yet: the event beat the put's answer.
    NotYet,
    /// Overwritten by a revision `ACK_RING_SLOTS` later: too old to time.
    Forgotten,
}

/// Acknowledgement times by revision, in `ACK_RING_SLOTS` slots. Lock-free: writers store, and
/// watchers load, without waiting for each other.
pub struct AckRing {
    epoch: Instant,
    slots: Vec<(AtomicI64, AtomicU64)>,
}

impl AckRing {
    pub fn new(epoch: Instant, slots: usize) -> AckRing {
        assert!(slots > 0, "an ack ring needs a slot");
        AckRing { epoch, slots: (0..slots).map(|_| (AtomicI64::new(0), AtomicU64::new(0))).collect() }
    }

    fn slot(&self, revision: i64) -> &(AtomicI64, AtomicU64) {
        &self.slots[revision.rem_euclid(self.slots.len() as i64) as usize]
    }

    /// Notes that the put of `revision` was acknowledged at `at`.
    pub fn acknowledge(&self, revision: i64, at: Instant) {
        let (slot_revision, slot_at) = self.slot(revision);
        slot_at.store(nanos_since(self.epoch, at), Ordering::Relaxed);
        // Release: a watcher that sees this revision also sees the time stored before it.
        slot_revision.store(revision, Ordering::Release);
    }

    pub fn lookup(&self, revision: i64) -> Acked {
        let (slot_revision, slot_at) = self.slot(revision);
        let seen = slot_revision.load(Ordering::Acquire);
        match seen.cmp(&revision) {
            std::cmp::Ordering::Equal => Acked::At(slot_at.load(Ordering::Relaxed)),
            std::cmp::Ordering::Less => Acked::NotYet,
            std::cmp::Ordering::Greater => Acked::Forgotten,
        }
    }

    /// The latency of an event of `revision` received at `received`, if it can be timed.
    pub fn latency(&self, revision: i64, received: Instant) -> Option<Duration> {
        match self.lookup(revision) {
            Acked::At(acked) => Some(Duration::from_nanos(nanos_since(self.epoch, received).saturating_sub(acked))),
            Acked::NotYet => Some(Duration::ZERO),
            Acked::Forgotten => None,
        }
    }
}

fn nanos_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// A writer: puts under the prefix and publishes each acknowledgement.
pub struct WatchPutStep {
    client: Client,
    ring: Arc<AckRing>,
    next: u64,
    stride: u64,
    keys: u64,
    value: Vec<u8>,
}

impl Step for WatchPutStep {
    async fn step(&mut self) -> anyhow::Result<()> {
        let key = key(WATCH_PREFIX, self.next % self.keys);
        self.next = self.next.wrapping_add(self.stride);
        let response = self.client.put(key, self.value.clone(), None).await?;
        let revision = response.header().map(|header| header.revision());
        let revision = revision.ok_or_else(|| anyhow::anyhow!("put answer without a header"))?;
        self.ring.acknowledge(revision, Instant::now());
        Ok(())
    }
}

pub async fn run(pool: &Pool, spec: &LoadSpec, label: &str) -> anyhow::Result<Measurement> {
    let ring = Arc::new(AckRing::new(Instant::now(), ACK_RING_SLOTS));
    let mut streams = Vec::with_capacity(spec.watchers);
    for w in 0..spec.watchers {
        streams.push(open_watcher(pool.client(w)).await?);
    }
    let writers: Vec<WatchPutStep> = (0..spec.clients)
        .map(|c| WatchPutStep {
            client: pool.client(c),
            ring: ring.clone(),
            next: c as u64,
            stride: spec.clients as u64,
            keys: spec.keys,
            value: vec![b'v'; spec.value_size],
        })
        .collect();
    // One window for writers and watchers: an event counts if it arrives inside it.
    let window = Window::after_warmup(Instant::now(), spec.warmup, spec.duration);
    let (events, puts) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let watchers: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(watch_events(stream, ring.clone(), window, events.clone())))
        .collect();
    let progress = window_progress(label, window, events.clone());
    let writes = super::drive_within(writers, window, puts).await;
    progress.finish();
    let mut histogram = stats::new_histogram();
    for watcher in watchers {
        match watcher.await {
            Ok(watcher_histogram) => stats::merge(&mut histogram, &watcher_histogram),
            Err(join_error) => events.error(&anyhow::anyhow!("watcher task failed: {join_error}")),
        }
    }
    let puts = writes.histogram.len();
    // Roughly equal when the watchers keep up: events at the window's edges belong to puts
    // acknowledged just outside it.
    eprintln!(
        "{label}: {puts} puts acknowledged and {} events delivered to {} watchers in the window (puts x watchers = {})",
        histogram.len(),
        spec.watchers,
        puts.saturating_mul(spec.watchers as u64)
    );
    Ok(Measurement {
        histogram,
        errors: writes.errors + events.errors.load(Ordering::Relaxed),
        window_start: window.start,
        window: spec.duration,
        first_error: writes.first_error.or_else(|| events.first_error()),
    })
}

/// Opens one watch stream on the prefix and waits until the server confirms it.
async fn open_watcher(mut client: Client) -> anyhow::Result<WatchStream> {
    let mut stream = client.watch(WATCH_PREFIX, Some(WatchOptions::new().with_prefix())).await?;
    let created = tokio::time::timeout(WATCH_CREATE_TIMEOUT, stream.message()).await;
    match created {
        Ok(Ok(Some(response))) if response.created() => Ok(stream),
        Ok(Ok(_)) => anyhow::bail!("the watch stream did not confirm the watch"),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => anyhow::bail!("no watch confirmation within {WATCH_CREATE_TIMEOUT:?}"),
    }
}

/// One watcher: times every event received in the window, then stops.
async fn watch_events(
    mut stream: WatchStream,
    ring: Arc<AckRing>,
    window: Window,
    counters: Arc<Counters>,
) -> Histogram<u64> {
    let mut histogram = stats::new_histogram();
    loop {
        let deadline = tokio::time::Instant::from_std(window.end);
        let response = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => return histogram,
            Ok(Ok(Some(response))) => response,
            Ok(Ok(None)) => {
                counters.error(&anyhow::anyhow!("a watch stream ended"));
                return histogram;
            }
            Ok(Err(error)) => {
                counters.error(&error.into());
                return histogram;
            }
        };
        let received = Instant::now();
        if !window.contains(received) {
            continue;
        }
        for event in response.events() {
            let revision = event.kv().map_or(0, |kv| kv.mod_revision());
            match ring.latency(revision, received) {
                Some(latency) => {
                    stats::record(&mut histogram, latency);
                    counters.ops.fetch_add(1, Ordering::Relaxed);
                }
                None => counters.error(&anyhow::anyhow!("watcher more than {ACK_RING_SLOTS} revisions behind")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_times_an_event_from_its_acknowledgement() {
        let epoch = Instant::now();
        let ring = AckRing::new(epoch, 8);
        ring.acknowledge(5, epoch + Duration::from_millis(10));
        assert_eq!(ring.lookup(5), Acked::At(10_000_000));
        assert_eq!(ring.latency(5, epoch + Duration::from_millis(13)), Some(Duration::from_millis(3)));
    }

    #[test]
    fn an_event_before_its_acknowledgement_counts_as_zero() {
        let epoch = Instant::now();
        let ring = AckRing::new(epoch, 8);
        assert_eq!(ring.lookup(3), Acked::NotYet);
        assert_eq!(ring.latency(3, epoch), Some(Duration::ZERO));
        // An older revision in the same slot is not this one's acknowledgement either.
        ring.acknowledge(3, epoch);
        assert_eq!(ring.lookup(11), Acked::NotYet);
    }

    #[test]
    fn a_revision_overwritten_a_ring_later_is_forgotten() {
        let epoch = Instant::now();
        let ring = AckRing::new(epoch, 8);
        ring.acknowledge(2, epoch);
        ring.acknowledge(10, epoch);
        assert_eq!(ring.lookup(2), Acked::Forgotten);
        assert_eq!(ring.latency(2, epoch), None);
        assert_eq!(ring.lookup(10), Acked::At(0));
    }

    #[test]
    fn an_answer_received_before_the_acknowledgement_clock_never_underflows() {
        let epoch = Instant::now();
        let ring = AckRing::new(epoch + Duration::from_secs(1), 8);
        ring.acknowledge(1, epoch + Duration::from_secs(2));
        assert_eq!(ring.latency(1, epoch), Some(Duration::ZERO));
    }
}
