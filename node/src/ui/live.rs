//! `/ui/live`: a server-sent event stream that says `changed` when what a page shows may have
//! changed, from the watch hub (an applied batch with a key under the page's prefix) or a clock
//! (pages of figures that are not keys: the cluster's, consumer groups' positions). Changes are
//! coalesced: at most one `changed` is waiting for the page at a time, a burst of writes makes
//! one after it settles for [`SETTLE`], and two are at least [`SPACING`] apart.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::format::key_from;
use super::session::Viewer;
use super::Ui;
use crate::limits::UI_LIVE_STREAMS_MAX;
use crate::watch::EventBatch;

/// How long a change waits for the rest of its burst before the page is told.
const SETTLE: Duration = Duration::from_millis(100);
/// After telling the page, the least time before telling it again: a page under a steady stream
/// of writes is rendered about twice a second, not once per write.
const SPACING: Duration = Duration::from_millis(400);

/// The shortest and longest clock a page may ask for, in seconds.
const TICK_SECS: std::ops::RangeInclusive<u32> = 1..=60;

#[derive(Deserialize)]
pub(super) struct LiveQuery {
    prefix: Option<String>,
    prefix_hex: Option<String>,
    tick: Option<u32>,
}

pub(super) async fn stream(State(ui): State<Arc<Ui>>, _viewer: Viewer, Query(query): Query<LiveQuery>) -> Response {
    let prefix = match key_from(query.prefix.as_deref(), query.prefix_hex.as_deref()) {
        Ok(prefix) => prefix,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let tick = query.tick.map(|secs| Duration::from_secs(u64::from(secs.clamp(*TICK_SECS.start(), *TICK_SECS.end()))));
    let Ok(permit) = live_permit() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live dashboard pages on this member\n").into_response();
    };
    let hub = ui.member.shared().hub();
    let watcher = Watcher { prefix, tick, batches: hub.subscribe(), stopped: Box::pin(hub.stopped()) };
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(watcher.run(sender, permit));
    // An event without data is never dispatched by a browser's EventSource: hence the "1".
    let changed = || Event::default().event("changed").data("1");
    let events = ReceiverStream::new(receiver).map(move |()| Ok::<_, std::convert::Infallible>(changed()));
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// One of the member's live-page slots.
fn live_permit() -> Result<OwnedSemaphorePermit, ()> {
    static SLOTS: std::sync::LazyLock<Arc<Semaphore>> =
        std::sync::LazyLock::new(|| Arc::new(Semaphore::new(UI_LIVE_STREAMS_MAX)));
    SLOTS.clone().try_acquire_owned().map_err(|_| ())
}

struct Watcher {
    prefix: Option<Vec<u8>>,
    tick: Option<Duration>,
    batches: broadcast::Receiver<Arc<EventBatch>>,
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl Watcher {
    /// Tells the page `changed` until it goes away or the member stops.
    async fn run(mut self, page: mpsc::Sender<()>, _permit: OwnedSemaphorePermit) {
        let mut clock = self.tick.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        loop {
            let changed = tokio::select! {
                () = &mut self.stopped => return,
                () = page.closed() => return,
                batch = self.batches.recv() => match batch {
                    Ok(batch) => self.touches(&batch),
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick(&mut clock) => true,
            };
            if changed {
                tokio::time::sleep(SETTLE).await;
                // Full: a `changed` already waits for the page, which will read everything.
                let _ = page.try_send(());
                tokio::time::sleep(SPACING).await;
            }
        }
    }

    /// Whether `batch` changed a key under the page's prefix.
    fn touches(&self, batch: &EventBatch) -> bool {
        let Some(prefix) = &self.prefix else { return false };
        !batch.complete || batch.events.iter().any(|event| event.kv.key.starts_with(prefix))
    }
}

async fn tick(clock: &mut Option<tokio::time::Interval>) {
    match clock {
        Some(clock) => {
            clock.tick().await;
        }
        None => std::future::pending().await,
    }
}
