//! What a consumer holds, whatever the implementation: a [`Subscription`] (a stream of
//! [`Delivery`]s) and each delivery's ack and nack. An implementation spawns one feeder task
//! per subscription that fills an [`Inbox`], and settles through a [`Settler`]; this module
//! knows nothing of gRPC or of the in-memory logs.
//!
//! The inbox, not a channel, sits between feeder and consumer so that a confirmed ack can
//! withdraw a queued copy of the same event (a redelivery that crossed the ack): once
//! [`Delivery::ack`] returns `Ok`, the subscription never yields that event again.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::Event;
use crate::error::{Error, Result};

/// A topic being consumed: a [`Stream`] of deliveries, in offset order except for redeliveries.
///
/// An `Err` item reports a failure without ending the stream when retrying can fix it
/// ([`Error::Unavailable`]: no member could serve it for a while; the subscription keeps
/// trying). After any other error the stream ends. Dropping the subscription stops it and
/// gives its unacknowledged deliveries back to the group, to be delivered again at once.
pub struct Subscription {
    consumer: String,
    inbox: Arc<Inbox>,
    feeder: JoinHandle<()>,
}

impl Subscription {
    /// Starts `feeder`, which fills `inbox` until the subscription is dropped (then it is
    /// aborted, which drops its state: streams close, claims are released).
    pub(crate) fn spawn<F>(consumer: String, inbox: Arc<Inbox>, feeder: F) -> Subscription
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let ending = EndOnDrop(inbox.clone());
        let feeder = tokio::spawn(async move {
            // Ends the stream however the feeder stops: returning, panicking or aborted.
            let _ending = ending;
            feeder.await;
        });
        Subscription { consumer, inbox, feeder }
    }

    /// This consumer's name, as given in [`ConsumeOptions::consumer`](super::ConsumeOptions) or
    /// made up by the cluster.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inbox.poll_take(context)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feeder.abort();
        self.inbox.close();
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Subscription").field("consumer", &self.consumer).finish_non_exhaustive()
    }
}

/// One event handed to a consumer, to acknowledge when processed.
pub struct Delivery {
    pub event: Event,
    /// How many times the event has been delivered to the group, this time included: 1 the
    /// first time, more after an ack wait ran out, a nack, or a consumer went away.
    pub deliveries: u32,
    settler: Arc<dyn Settler>,
}

impl Delivery {
    pub(crate) fn new(event: Event, deliveries: u32, settler: Arc<dyn Settler>) -> Delivery {
        Delivery { event, deliveries, settler }
    }

    /// Acknowledges the event: it is never delivered to the group again. Returns once the ack
    /// is durable in the cluster. Without a group, or with auto-ack, there is nothing to
    /// acknowledge and it returns `Ok` at once.
    ///
    /// [`Error::MayHaveBeenApplied`] when the connection broke before the cluster confirmed it:
    /// if it did not land, the event is delivered again. [`Error::WatchStopped`] once the
    /// subscription was dropped: the event was given back and will be delivered again.
    /// [`Error::NotPending`] when the ack settled nothing: the event was settled before (this
    /// delivery acked already, another delivery of it acked after its ack wait ran out, or it
    /// went to the dead letters).
    pub async fn ack(&self) -> Result<()> {
        self.settler.ack(self.event.offset).await
    }

    /// Gives the event back: it is delivered again at once (to any consumer of the group), or
    /// moved to the dead-letter topic when out of attempts. Returns once the request is on its
    /// way; the cluster does not confirm nacks (a lost one is redone by the ack wait). Without
    /// a group, or with auto-ack, it changes nothing.
    pub async fn nack(&self) -> Result<()> {
        self.settler.nack(self.event.offset).await
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Delivery")
            .field("event", &self.event)
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

/// How an implementation settles the deliveries of one subscription, by offset.
#[async_trait]
pub(crate) trait Settler: Send + Sync {
    async fn ack(&self, offset: u64) -> Result<()>;
    async fn nack(&self, offset: u64) -> Result<()>;
}

/// The settler of subscriptions whose acks change nothing: without a group, or auto-ack.
pub(crate) struct Unsettled;

#[async_trait]
impl Settler for Unsettled {
    async fn ack(&self, _offset: u64) -> Result<()> {
        Ok(())
    }

    async fn nack(&self, _offset: u64) -> Result<()> {
        Ok(())
    }
}

/// Deliveries waiting for the consumer, between a feeder and its [`Subscription`]. Bounded by
/// the feeder: it queues more only below its limit ([`Inbox::room`]), except where the cluster
/// bounds them already (unacknowledged deliveries, by the in-flight bound).
pub(crate) struct Inbox {
    /// std Mutex: never held across an `.await` (the consumer takes from it in `poll_next`).
    state: Mutex<InboxState>,
    /// Signalled when the consumer takes an item, for a feeder waiting for room.
    taken: Notify,
}

#[derive(Default)]
struct InboxState {
    items: VecDeque<Result<Delivery>>,
    /// The offsets of the deliveries in `items`: a redelivery of one of them is merged.
    queued: HashSet<u64>,
    /// The feeder stopped: the stream ends once `items` is empty.
    ended: bool,
    /// The subscription was dropped: nothing is queued any more.
    closed: bool,
    waker: Option<Waker>,
}

impl Inbox {
    pub(crate) fn new() -> Arc<Inbox> {
        Arc::new(Inbox { state: Mutex::new(InboxState::default()), taken: Notify::new() })
    }

    /// Queues `delivery`. A delivery of an event already queued only raises that one's count:
    /// the consumer gets the event once. False once the subscription is gone.
    pub(crate) fn deliver(&self, delivery: Delivery) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        let offset = delivery.event.offset;
        if !state.queued.insert(offset) {
            let queued = state.items.iter_mut().flatten().find(|queued| queued.event.offset == offset);
            if let Some(queued) = queued {
                queued.deliveries = queued.deliveries.max(delivery.deliveries);
            }
            return true;
        }
        state.items.push_back(Ok(delivery));
        state.wake();
        true
    }

    /// Queues an error for the consumer. False once the subscription is gone.
    pub(crate) fn report(&self, error: Error) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.items.push_back(Err(error));
        state.wake();
        true
    }

    /// Withdraws the queued delivery of `offset`, if any: it was acknowledged meanwhile.
    pub(crate) fn withdraw(&self, offset: u64) {
        let mut state = self.lock();
        if state.queued.remove(&offset) {
            state.items.retain(|item| item.as_ref().map_or(true, |delivery| delivery.event.offset != offset));
            self.taken.notify_waiters();
        }
    }

    /// Waits until fewer than `limit` items are queued.
    pub(crate) async fn room(&self, limit: usize) {
        loop {
            let taken = self.taken.notified();
            tokio::pin!(taken);
            // Registered before the check, so a take between the check and the wait is seen.
            taken.as_mut().enable();
            if self.len() < limit {
                return;
            }
            taken.await;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    fn poll_take(&self, context: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        let mut state = self.lock();
        if let Some(item) = state.items.pop_front() {
            if let Ok(delivery) = &item {
                let offset = delivery.event.offset;
                state.queued.remove(&offset);
            }
            drop(state);
            self.taken.notify_waiters();
            return Poll::Ready(Some(item));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        state.waker = Some(context.waker().clone());
        Poll::Pending
    }

    fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        state.wake();
    }

    /// Drops what is queued (deliveries hold their settler, which may hold this inbox).
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.items.clear();
        state.queued.clear();
    }

    fn lock(&self) -> MutexGuard<'_, InboxState> {
        // Every change is made whole under the lock: keep going after a panic elsewhere.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl InboxState {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

struct EndOnDrop(Arc<Inbox>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use futures::StreamExt;

    use super::*;

    fn delivery(offset: u64, deliveries: u32) -> Delivery {
        let event = Event {
            topic: "t".into(),
            offset,
            id: None,
            timestamp: UNIX_EPOCH,
            metadata: Default::default(),
            payload: Vec::new(),
        };
        Delivery::new(event, deliveries, Arc::new(Unsettled))
    }

    fn offsets_and_counts(items: &[Result<Delivery>]) -> Vec<(u64, u32)> {
        items.iter().flatten().map(|d| (d.event.offset, d.deliveries)).collect()
    }

    #[tokio::test]
    async fn redeliveries_merge_and_acked_events_are_withdrawn() {
        let inbox = Inbox::new();
        let feeder_inbox = inbox.clone();
        let subscription = Subscription::spawn("c".into(), inbox.clone(), async move {
            assert!(feeder_inbox.deliver(delivery(1, 1)));
            assert!(feeder_inbox.deliver(delivery(2, 1)));
            assert!(feeder_inbox.deliver(delivery(1, 2)), "merged into the queued one");
            assert!(feeder_inbox.deliver(delivery(3, 1)));
            feeder_inbox.withdraw(2);
            feeder_inbox.report(Error::Unavailable("a report".into()));
        });
        let items: Vec<Result<Delivery>> = subscription.collect().await;
        assert_eq!(offsets_and_counts(&items), [(1, 2), (3, 1)]);
        assert!(matches!(items.last(), Some(Err(Error::Unavailable(_)))), "then the report, then the end");
        assert!(!inbox.deliver(delivery(4, 1)), "the subscription is gone");
    }

    #[tokio::test]
    async fn a_feeder_waits_for_room() {
        let inbox = Inbox::new();
        let feeder_inbox = inbox.clone();
        let mut subscription = Subscription::spawn("c".into(), inbox.clone(), async move {
            for offset in 0..10 {
                feeder_inbox.room(2).await;
                feeder_inbox.deliver(delivery(offset, 1));
            }
        });
        let mut seen = Vec::new();
        while let Some(item) = subscription.next().await {
            assert!(inbox.len() <= 2, "at most the limit queued");
            seen.push(item.expect("a delivery").event.offset);
        }
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }
}
