//! The events workload, over Keel's native Events API (`keel.v1.Events`, through keel-client's
//! [`GrpcEvents`], which fails over between members): `concurrency` publishers append batches
//! of 1 to [`BATCH_EVENTS_MAX`] events with unique ids to one topic and repeat a batch whose
//! outcome is unknown (the ids make that safe); a tailing reader follows the topic; after
//! healing, the whole topic is read from offset 0. See [`check`].

pub mod check;

use std::sync::Arc;
use std::time::Duration;

use keel_client::events::{Events, GrpcEvents, OutgoingEvent, ReadOptions, Start};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::check::{EventsHistory, LoggedEvent, Publish, PublishedAt, TailRead};
use super::{client_rng, joined, Workload, WorkloadConfig, ERROR_BACKOFF, FINAL_READ_ATTEMPTS};
use crate::clock::RunClock;
use crate::history::Outcome;
use crate::tls::Endpoints;

/// The topic; no other workload publishes.
pub const TOPIC: &str = "jepsen";
pub const BATCH_EVENTS_MAX: usize = 4;
/// Calls of one batch at most: the first and its repeats.
pub const PUBLISH_ATTEMPTS_MAX: usize = 5;
pub const TAIL_INTERVAL: Duration = Duration::from_millis(200);
/// Events per read page.
pub const READ_PAGE_EVENTS: u32 = 1000;
/// Events the final read takes at most: bounds the history's memory.
pub const LOG_EVENTS_MAX: usize = 1_000_000;

pub struct Running {
    publishers: JoinSet<Vec<Publish>>,
    tailer: JoinSet<Vec<TailRead>>,
}

pub async fn start(config: &WorkloadConfig, clock: RunClock, deadline: Instant) -> Running {
    let mut publishers = JoinSet::new();
    let mut tailer = JoinSet::new();
    // Only a malformed endpoint list fails here, and the cluster's are well formed; the error
    // then shows as a run with no events and an unknown verdict.
    let Ok(events) = GrpcEvents::connect_with(config.client_urls.urls(), config.client_urls.keel_options()).await
    else {
        return Running { publishers, tailer };
    };
    let events = Arc::new(events);
    for publisher in 0..config.concurrency {
        publishers.spawn(publish_loop(publisher, config.clone(), Arc::clone(&events), clock, deadline));
    }
    tailer.spawn(tail_loop(events, clock, deadline));
    Running { publishers, tailer }
}

impl Running {
    pub async fn finish(
        mut self,
        client_urls: &Endpoints,
        clock: RunClock,
        recovered: bool,
    ) -> anyhow::Result<EventsHistory> {
        let mut publishes = joined(&mut self.publishers).await?;
        let tail_reads = joined(&mut self.tailer).await?;
        publishes.sort_by_key(|publish| publish.call_ns);
        let final_log = if recovered { read_all(client_urls, clock).await } else { None };
        Ok(EventsHistory { topic: TOPIC.to_string(), publishes, tail_reads, final_log })
    }
}

/// What a failed publish may have done. Only [`keel_client::Error::MayHaveBeenApplied`] (and
/// an answer the client could not read) leave it open; every other error is raised before
/// anything is proposed.
pub fn classify(error: &keel_client::Error) -> Outcome {
    match error {
        keel_client::Error::MayHaveBeenApplied(_) | keel_client::Error::InvalidResponse(_) => Outcome::Indeterminate,
        _ => Outcome::Fail,
    }
}

async fn publish_loop(
    publisher: usize,
    config: WorkloadConfig,
    events: Arc<GrpcEvents>,
    clock: RunClock,
    deadline: Instant,
) -> Vec<Publish> {
    let mut rng = client_rng(config.seed, Workload::Events, publisher);
    let mut process = publisher as u64;
    let mut calls = Vec::new();
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        let count = rng.random_range(1..=BATCH_EVENTS_MAX);
        let ids: Vec<String> = (sequence..sequence + count as u64).map(|n| format!("{publisher}-{n}")).collect();
        sequence += count as u64;
        for _ in 0..PUBLISH_ATTEMPTS_MAX {
            let batch = ids.iter().map(|id| OutgoingEvent::with_id(id.clone(), id.clone().into_bytes())).collect();
            let call_ns = clock.now_ns();
            let result = events.publish_batch(TOPIC, batch).await;
            let return_ns = Some(clock.now_ns());
            let (published, outcome) = match result {
                Ok(published) => (
                    published.iter().map(|at| PublishedAt { offset: at.offset, duplicate: at.duplicate }).collect(),
                    Outcome::Ok,
                ),
                Err(error) => {
                    tracing::debug!(%error, "publish failed");
                    (Vec::new(), classify(&error))
                }
            };
            calls.push(Publish { process, call_ns, return_ns, ids: ids.clone(), published, outcome });
            if outcome == Outcome::Ok {
                break;
            }
            if outcome == Outcome::Indeterminate {
                process += config.concurrency as u64;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    calls
}

async fn tail_loop(events: Arc<GrpcEvents>, clock: RunClock, deadline: Instant) -> Vec<TailRead> {
    let mut reads = Vec::new();
    let mut next_offset = 0;
    let mut next = Instant::now() + TAIL_INTERVAL;
    while next < deadline {
        tokio::time::sleep_until(next).await;
        // After a slow call, the next one comes at once, not a burst of missed ones.
        next = (next + TAIL_INTERVAL).max(Instant::now());
        let read = read_page(&events, next_offset, clock).await;
        if let Some(last) = read.events.last() {
            next_offset = last.offset + 1;
        }
        reads.push(read);
    }
    reads
}

async fn read_page(events: &GrpcEvents, from_offset: u64, clock: RunClock) -> TailRead {
    let call_ns = clock.now_ns();
    let options = ReadOptions { start: Start::Offset(from_offset), limit: Some(READ_PAGE_EVENTS) };
    let result = events.read(TOPIC, options).await;
    let return_ns = Some(clock.now_ns());
    let (events, outcome) = match result {
        Ok(page) => (
            page.into_iter()
                .map(|event| LoggedEvent {
                    offset: event.offset,
                    id: event.id,
                    payload: String::from_utf8_lossy(&event.payload).into_owned(),
                })
                .collect(),
            Outcome::Ok,
        ),
        // Nothing published yet.
        Err(keel_client::Error::NotFound) => (Vec::new(), Outcome::Ok),
        // A read changes nothing: whatever went wrong, it is as if it never happened.
        Err(_) => (Vec::new(), Outcome::Fail),
    };
    TailRead { call_ns, return_ns, from_offset, events, outcome }
}

/// The whole topic from offset 0, page by page; `None` if a page keeps failing.
async fn read_all(client_urls: &Endpoints, clock: RunClock) -> Option<Vec<LoggedEvent>> {
    let events = GrpcEvents::connect_with(client_urls.urls(), client_urls.keel_options()).await.ok()?;
    let mut log: Vec<LoggedEvent> = Vec::new();
    while log.len() < LOG_EVENTS_MAX {
        let from_offset = log.last().map_or(0, |event| event.offset + 1);
        let mut page = None;
        for _ in 0..FINAL_READ_ATTEMPTS {
            let read = read_page(&events, from_offset, clock).await;
            if read.outcome == Outcome::Ok {
                page = Some(read.events);
                break;
            }
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
        let page = page?;
        if page.is_empty() {
            break;
        }
        log.extend(page);
    }
    Some(log)
}
