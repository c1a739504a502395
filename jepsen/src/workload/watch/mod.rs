//! The watch workload: `concurrency` writers put unique values to a few keys under [`PREFIX`];
//! [`WATCHERS`] watchers, each through one member at a time, watch the prefix from one start
//! revision and, after an error, watch again from the last revision they saw plus one,
//! through the next member. After healing: a fence Put, the watchers run until they reach it,
//! then a fresh reference watch reads the whole range once more. See [`check`].

pub mod check;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use rand::Rng;
use tokio::sync::watch as signal;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::check::{WatchEvent, WatchHistory, WatchPut, WatchSession, WatcherLog};
use super::{
    classify, client_rng, ensure_client, joined, Workload, WorkloadConfig, CONNECT_TIMEOUT, ERROR_BACKOFF,
    FINAL_READ_ATTEMPTS,
};
use crate::clock::RunClock;
use crate::history::Outcome;
use crate::tls::Endpoints;

/// Every key of the workload starts with this.
pub const PREFIX: &str = "w/";
/// Keys the writers put to: overwrites make the history more than a list of creations.
pub const KEYS: usize = 4;
pub const WATCHERS: usize = 3;
/// How long the watchers get, after the fence, to reach it; past it a watcher has stalled.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the reference watch may take to reach the fence.
pub const REFERENCE_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2 pings on a watcher's connection: a watch through a paused or killed member fails
/// within about their sum, and the watcher moves on.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Events kept per watcher at most: bounds the history's memory; past it the watcher stops.
pub const EVENTS_MAX: usize = 1_000_000;
const FENCE_KEY: &str = "w/fence";
const FENCE_PROCESS: u64 = u64::MAX - 1;

/// What the harness tells the watchers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Control {
    /// Stop once past this revision.
    fence: Option<i64>,
    /// Stop now.
    stop: bool,
}

pub struct Running {
    start_revision: i64,
    writers: JoinSet<Vec<WatchPut>>,
    watchers: JoinSet<WatcherLog>,
    control: signal::Sender<Control>,
}

/// Reads the current revision (every watcher starts just after it), then spawns the writers
/// until `deadline` and the watchers until [`Running::finish`] stops them.
pub async fn start(config: &WorkloadConfig, clock: RunClock, deadline: Instant) -> Running {
    let mut start_revision = 1;
    let mut client = None;
    for _ in 0..FINAL_READ_ATTEMPTS {
        let Some(connected) = ensure_client(&mut client, &config.client_urls).await else { continue };
        if let Ok(response) = connected.get(PREFIX, Some(GetOptions::new().with_prefix().with_count_only())).await {
            start_revision = response.header().map_or(0, |header| header.revision()) + 1;
            break;
        }
    }
    let (control, receiver) = signal::channel(Control::default());
    let urls = Arc::new(config.client_urls.clone());
    let mut watchers = JoinSet::new();
    for watcher in 0..WATCHERS {
        watchers.spawn(watch_loop(watcher, Arc::clone(&urls), start_revision, clock, receiver.clone()));
    }
    let mut writers = JoinSet::new();
    for writer in 0..config.concurrency {
        writers.spawn(write_loop(writer, config.clone(), clock, deadline));
    }
    Running { start_revision, writers, watchers, control }
}

impl Running {
    pub async fn finish(
        mut self,
        client_urls: &Endpoints,
        clock: RunClock,
        recovered: bool,
    ) -> anyhow::Result<WatchHistory> {
        let mut puts = joined(&mut self.writers).await?;
        let fence_revision = if recovered { fence(client_urls, clock, &mut puts).await } else { None };
        self.control.send_replace(Control { fence: fence_revision, stop: fence_revision.is_none() });
        let stop_at = Instant::now() + CATCH_UP_TIMEOUT;
        let mut watchers = Vec::new();
        loop {
            tokio::select! {
                joined = self.watchers.join_next() => match joined {
                    Some(log) => watchers.push(log?),
                    None => break,
                },
                _ = tokio::time::sleep_until(stop_at) => {
                    self.control.send_modify(|control| control.stop = true);
                }
            }
        }
        watchers.sort_by_key(|log| log.watcher);
        let reference = match fence_revision {
            Some(fence) => reference(client_urls, self.start_revision, fence).await,
            None => None,
        };
        puts.sort_by_key(|put| put.call_ns);
        Ok(WatchHistory { start_revision: self.start_revision, fence_revision, puts, watchers, reference })
    }
}

async fn write_loop(writer: usize, config: WorkloadConfig, clock: RunClock, deadline: Instant) -> Vec<WatchPut> {
    let mut rng = client_rng(config.seed, Workload::Watch, writer);
    let mut process = writer as u64;
    let mut puts = Vec::new();
    let mut client: Option<Client> = None;
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        let Some(connected) = ensure_client(&mut client, &config.client_urls).await else { continue };
        let key = format!("{PREFIX}k{}", rng.random_range(0..KEYS));
        let value = format!("{process}-{sequence}");
        sequence += 1;
        let put = put(connected, process, key, value, clock).await;
        let outcome = put.outcome;
        puts.push(put);
        if outcome != Outcome::Ok {
            if outcome == Outcome::Indeterminate {
                process += config.concurrency as u64;
            }
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    puts
}

async fn put(client: &mut Client, process: u64, key: String, value: String, clock: RunClock) -> WatchPut {
    let call_ns = clock.now_ns();
    let result = client.put(key.as_str(), value.as_str(), None).await;
    let return_ns = Some(clock.now_ns());
    let (revision, outcome) = match result {
        Ok(response) => (response.header().map(|header| header.revision()), Outcome::Ok),
        Err(error) => {
            tracing::debug!(%error, "watch workload put failed");
            (None, classify(&error))
        }
    };
    WatchPut { process, call_ns, return_ns, key, value, revision, outcome }
}

/// Puts the fence (retried until acknowledged); its revision, recorded among the puts.
async fn fence(client_urls: &Endpoints, clock: RunClock, puts: &mut Vec<WatchPut>) -> Option<i64> {
    let mut client = None;
    for attempt in 0..FINAL_READ_ATTEMPTS {
        let Some(connected) = ensure_client(&mut client, client_urls).await else { continue };
        let put = put(connected, FENCE_PROCESS, FENCE_KEY.to_string(), format!("fence-{attempt}"), clock).await;
        let revision = put.revision;
        puts.push(put);
        if revision.is_some() {
            return revision;
        }
        tokio::time::sleep(ERROR_BACKOFF).await;
    }
    None
}

/// One watcher, through member `watcher % members` first, until told to stop.
async fn watch_loop(
    watcher: usize,
    urls: Arc<Endpoints>,
    start_revision: i64,
    clock: RunClock,
    mut control: signal::Receiver<Control>,
) -> WatcherLog {
    let mut log = WatcherLog { watcher, ..WatcherLog::default() };
    let mut next_revision = start_revision;
    let mut member = watcher % urls.len();
    loop {
        let done = |control: &Control, next_revision: i64| {
            control.stop || control.fence.is_some_and(|fence| next_revision > fence)
        };
        if done(&control.borrow(), next_revision) || log.events.len() >= EVENTS_MAX {
            break;
        }
        let opened_ns = clock.now_ns();
        let mut session =
            WatchSession { member, start_revision: next_revision, opened_ns, closed_ns: opened_ns, error: None };
        match open(&urls, &urls[member], next_revision).await {
            Err(error) => session.error = Some(format!("open: {error}")),
            Ok((_client, mut stream)) => loop {
                tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(response)) => {
                            if response.canceled() {
                                session.error = Some(format!(
                                    "canceled: {:?} (compact revision {})",
                                    response.cancel_reason(),
                                    response.compact_revision()
                                ));
                                break;
                            }
                            for event in response.events() {
                                let Some(kv) = event.kv() else { continue };
                                next_revision = next_revision.max(kv.mod_revision() + 1);
                                log.events.push(WatchEvent {
                                    revision: kv.mod_revision(),
                                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                                    value: String::from_utf8_lossy(kv.value()).into_owned(),
                                    delete: event.event_type() == EventType::Delete,
                                });
                            }
                            if done(&control.borrow(), next_revision) {
                                break;
                            }
                        }
                        Ok(None) => {
                            session.error = Some("stream ended".to_string());
                            break;
                        }
                        Err(error) => {
                            session.error = Some(error.to_string());
                            break;
                        }
                    },
                    changed = control.changed() => {
                        if changed.is_err() || done(&control.borrow(), next_revision) {
                            break;
                        }
                    }
                }
            },
        }
        session.closed_ns = clock.now_ns();
        let failed = session.error.is_some();
        log.sessions.push(session);
        if failed {
            member = (member + 1) % urls.len();
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    log.caught_up = control.borrow().fence.is_some_and(|fence| next_revision > fence);
    log
}

/// A client on one member only, and a watch of the prefix from `start_revision` on it.
async fn open(
    endpoints: &Endpoints,
    url: &str,
    start_revision: i64,
) -> Result<(Client, etcd_client::WatchStream), etcd_client::Error> {
    let options = endpoints.etcd_options(
        ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true),
    );
    let mut client = Client::connect([url], Some(options)).await?;
    let stream =
        client.watch(PREFIX, Some(WatchOptions::new().with_prefix().with_start_revision(start_revision))).await?;
    Ok((client, stream))
}

/// A fresh watch of the whole range, on any member, up to the fence; `None` if it fails.
async fn reference(client_urls: &Endpoints, start_revision: i64, fence: i64) -> Option<Vec<WatchEvent>> {
    let read = async {
        for url in client_urls.iter().cycle().take(FINAL_READ_ATTEMPTS) {
            let Ok((_client, mut stream)) = open(client_urls, url, start_revision).await else { continue };
            let mut events = Vec::new();
            while let Ok(Some(response)) = stream.message().await {
                if response.canceled() {
                    break;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    events.push(WatchEvent {
                        revision: kv.mod_revision(),
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        value: String::from_utf8_lossy(kv.value()).into_owned(),
                        delete: event.event_type() == EventType::Delete,
                    });
                }
                if events.last().is_some_and(|event: &WatchEvent| event.revision >= fence) {
                    return Some(events);
                }
            }
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
        None
    };
    tokio::time::timeout(REFERENCE_TIMEOUT, read).await.ok().flatten()
}
