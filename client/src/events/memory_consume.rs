//! [`MemoryEvents::consume`](super::MemoryEvents): a feeder task per subscription that hands out
//! events as the cluster's consume stream does: a group's claims and settles go through
//! [`GroupState`](super::group::GroupState) with the same rules, on tokio's clock; a stream
//! without group reads the topic from its position. A feeder with nothing to hand out sleeps
//! until the topics change or the group's next ack deadline.
//!
//! Dropping the subscription drops the feeder, which gives its unacknowledged deliveries back to
//! the group at once, as the cluster does when a stream ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use tokio::time::Instant;

use super::consume::{Delivery, Inbox, Settler, Subscription, Unsettled};
use super::group::{GroupOptions, GroupState};
use super::memory::{dead_letter, log_mut, Shared, Topic};
use super::{rules, since_unix_ms, ConsumeOptions, ConsumeStart};
use crate::error::{Error, Result};

/// Events one claim (or one page of a stream without group) hands out at most, as the
/// cluster's.
const CLAIM_BATCH_MAX: u32 = 100;
/// Deliveries queued ahead of the consumer: the feeder claims more only below it, so claims
/// stay with consumers that are reading.
const PREFETCH_MAX: usize = 100;

pub(super) fn consume(shared: &Arc<Shared>, topic: &str, options: ConsumeOptions) -> Result<Subscription> {
    let group_options = rules::subscription(topic, &options)?;
    let group = options.group_name().map(str::to_string);
    let consumer =
        options.consumer.clone().filter(|name| !name.is_empty()).unwrap_or_else(|| shared.new_consumer_name());
    let position = {
        let mut topics = shared.lock();
        let start = start_offset(log_mut(&mut topics, topic).map(|log| &*log), options.start);
        if let Some(group) = &group {
            join(topics.entry(topic.to_string()).or_default(), group, start, group_options.clone());
        }
        start
    };
    let inbox = Inbox::new();
    let claims = Arc::new(Mutex::new(Claims::default()));
    let settler: Arc<dyn Settler> = match (&group, options.auto_ack) {
        (Some(group), false) => Arc::new(MemorySettler {
            shared: shared.clone(),
            topic: topic.to_string(),
            group: group.clone(),
            claims: claims.clone(),
            inbox: Arc::downgrade(&inbox),
        }),
        _ => Arc::new(Unsettled),
    };
    let feeder = Feeder {
        shared: shared.clone(),
        topic: topic.to_string(),
        group,
        consumer: consumer.clone(),
        auto_ack: options.auto_ack,
        max_in_flight: group_options.max_in_flight,
        claims,
        position,
        settler,
        inbox: inbox.clone(),
    };
    Ok(Subscription::spawn(consumer, inbox, feeder.run()))
}

/// Where a subscription starts in `log` (which may not exist yet), as the cluster decides it.
fn start_offset(log: Option<&Topic>, start: ConsumeStart) -> u64 {
    let Some(log) = log else {
        return match start {
            ConsumeStart::Offset(offset) => offset,
            _ => 0,
        };
    };
    let bounds = log.bounds();
    match start {
        ConsumeStart::Earliest => bounds.first,
        ConsumeStart::Latest => bounds.next,
        ConsumeStart::Offset(offset) => offset.max(bounds.first),
        ConsumeStart::Since(time) => log.first_at_or_after(since_unix_ms(time)),
    }
}

/// Joins `group`: a new one starts at `start`; an existing one keeps its place and takes the
/// joiner's options.
fn join(log: &mut Topic, group: &str, start: u64, options: GroupOptions) {
    let bounds = log.bounds();
    let state = log
        .groups
        .entry(group.to_string())
        .and_modify(|state| state.options = options.clone())
        .or_insert_with(|| GroupState::new(start.clamp(bounds.first, bounds.next), options));
    state.forget_trimmed(bounds.first);
}

/// One subscription's share of its group, as the cluster's stream keeps it.
#[derive(Default)]
struct Claims {
    /// Handed to this subscription and not settled by it.
    in_flight: BTreeSet<u64>,
    /// The subscription was dropped: its deliveries can no longer be settled through it.
    closed: bool,
}

fn lock(claims: &Mutex<Claims>) -> MutexGuard<'_, Claims> {
    // Changed whole under the lock: keep going after a panic elsewhere.
    claims.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Feeder {
    shared: Arc<Shared>,
    topic: String,
    /// `None`: a stream without group.
    group: Option<String>,
    consumer: String,
    auto_ack: bool,
    max_in_flight: u32,
    /// Locked after the topics, never before.
    claims: Arc<Mutex<Claims>>,
    /// A stream without group's next offset.
    position: u64,
    settler: Arc<dyn Settler>,
    inbox: Arc<Inbox>,
}

impl Feeder {
    async fn run(mut self) {
        let mut changes = self.shared.changes();
        loop {
            self.inbox.room(PREFETCH_MAX).await;
            // Marked seen before looking: a change from here on wakes the wait below.
            changes.borrow_and_update();
            let (deliveries, deadline_ms) = self.next_batch();
            if deliveries.is_empty() {
                let deadline = deadline_ms.and_then(|milliseconds| self.shared.instant(milliseconds));
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = sleep_until(deadline) => {}
                }
                continue;
            }
            for delivery in deliveries {
                if !self.inbox.deliver(delivery) {
                    return;
                }
            }
        }
    }

    /// What to hand out now; when nothing, the time (groups' clock) something may be due.
    fn next_batch(&mut self) -> (Vec<Delivery>, Option<i64>) {
        let now_ms = self.shared.now_ms();
        // A clone to lock through, so `self` stays free to change.
        let shared = self.shared.clone();
        let mut topics = shared.lock();
        let Some(group) = self.group.clone() else {
            return (self.next_page(&mut topics), None);
        };
        let Some(log) = log_mut(&mut topics, &self.topic) else { return (Vec::new(), None) };
        let bounds = log.bounds();
        let Some(state) = log.groups.get_mut(&group) else { return (Vec::new(), None) };
        let mut claims = lock(&self.claims);
        let room = if self.auto_ack {
            CLAIM_BATCH_MAX
        } else {
            let in_flight = u32::try_from(claims.in_flight.len()).unwrap_or(u32::MAX);
            self.max_in_flight.saturating_sub(in_flight).min(CLAIM_BATCH_MAX)
        };
        if room == 0 {
            // Full: an ack or nack of this subscription (a change) makes room.
            return (Vec::new(), None);
        }
        let outcome = state.claim(&self.consumer, room, self.auto_ack, now_ms, bounds);
        let deadline_ms = state.next_deadline();
        let deliveries: Vec<Delivery> = outcome
            .delivered
            .iter()
            .filter_map(|claimed| {
                let event = log.event(&self.topic, claimed.offset)?;
                Some(Delivery::new(event, claimed.deliveries, self.settler.clone()))
            })
            .collect();
        if !self.auto_ack {
            claims.in_flight.extend(outcome.delivered.iter().map(|claimed| claimed.offset));
        }
        drop(claims);
        if !outcome.dead.is_empty() {
            dead_letter(&mut topics, &self.topic, &group, &outcome.dead);
            drop(topics);
            shared.changed();
        }
        (deliveries, deadline_ms)
    }

    /// A stream without group's next events.
    fn next_page(&mut self, topics: &mut BTreeMap<String, Topic>) -> Vec<Delivery> {
        let Some(log) = log_mut(topics, &self.topic) else { return Vec::new() };
        let bounds = log.bounds();
        let from = self.position.max(bounds.first);
        let to = bounds.next.min(from.saturating_add(u64::from(CLAIM_BATCH_MAX)));
        self.position = self.position.max(to);
        (from..to)
            .filter_map(|offset| log.event(&self.topic, offset))
            .map(|event| Delivery::new(event, 1, self.settler.clone()))
            .collect()
    }
}

impl Drop for Feeder {
    /// Gives the unacknowledged deliveries back to the group, as the cluster does when a
    /// stream ends.
    fn drop(&mut self) {
        let now_ms = self.shared.now_ms();
        let mut topics = self.shared.lock();
        let mut claims = lock(&self.claims);
        claims.closed = true;
        let nacks: Vec<u64> = std::mem::take(&mut claims.in_flight).into_iter().collect();
        let group = self.group.as_ref().and_then(|group| topics.get_mut(&self.topic)?.groups.get_mut(group));
        if let (Some(state), false) = (group, nacks.is_empty()) {
            state.settle(&[], &nacks, now_ms);
            drop(claims);
            drop(topics);
            self.shared.changed();
        }
    }
}

/// Settles a group subscription's deliveries directly in the shared state.
struct MemorySettler {
    shared: Arc<Shared>,
    topic: String,
    group: String,
    claims: Arc<Mutex<Claims>>,
    /// Weak: the inbox holds deliveries, which hold this settler.
    inbox: Weak<Inbox>,
}

impl MemorySettler {
    /// Answers the acks that settled something pending, as the cluster does.
    fn settle(&self, acks: &[u64], nacks: &[u64]) -> Result<Vec<u64>> {
        let now_ms = self.shared.now_ms();
        let mut topics = self.shared.lock();
        let mut claims = lock(&self.claims);
        if claims.closed {
            return Err(Error::WatchStopped);
        }
        let mut acked = Vec::new();
        if let Some(state) = topics.get_mut(&self.topic).and_then(|log| log.groups.get_mut(&self.group)) {
            acked = state.settle(acks, nacks, now_ms);
        }
        for offset in acks.iter().chain(nacks) {
            claims.in_flight.remove(offset);
        }
        drop(claims);
        drop(topics);
        if let Some(inbox) = self.inbox.upgrade() {
            // A redelivery queued meanwhile is void once acknowledged.
            acks.iter().for_each(|offset| inbox.withdraw(*offset));
        }
        self.shared.changed();
        Ok(acked)
    }
}

#[async_trait]
impl Settler for MemorySettler {
    async fn ack(&self, offset: u64) -> Result<()> {
        match self.settle(&[offset], &[])?.as_slice() {
            [] => Err(Error::NotPending { offset }),
            _ => Ok(()),
        }
    }

    async fn nack(&self, offset: u64) -> Result<()> {
        self.settle(&[], &[offset]).map(drop)
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! What only the in-memory logs can show cheaply: ack waits on a paused clock, exactly.

    use std::time::Duration;

    use futures::StreamExt;

    use super::*;
    use crate::events::{Events, MemoryEvents, PublishOptions};

    #[tokio::test(start_paused = true)]
    async fn an_unacked_event_comes_back_exactly_when_its_ack_wait_ends() {
        let events = MemoryEvents::new();
        events.publish("t", b"e".to_vec(), PublishOptions::default()).await.expect("publish");
        let options = ConsumeOptions { ack_wait: Some(Duration::from_secs(10)), ..ConsumeOptions::in_group("g") };
        let mut subscription = events.consume("t", options).await.expect("consume");
        let first = subscription.next().await.expect("open").expect("a delivery");
        let started = Instant::now();
        let again = subscription.next().await.expect("open").expect("a delivery");
        assert_eq!((again.event.offset, again.deliveries), (0, 2));
        assert_eq!(started.elapsed(), Duration::from_secs(10), "not a millisecond early or late");
        assert_eq!(first.ack().await, Ok(()), "any delivery of the event acks it");
        let groups = events.groups("t").await.expect("groups");
        assert_eq!((groups[0].ack_floor, groups[0].pending, groups[0].lag), (1, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_subscription_gives_its_events_back_and_cannot_settle() {
        let events = MemoryEvents::new();
        events.publish("t", b"e".to_vec(), PublishOptions::default()).await.expect("publish");
        let mut first = events.consume("t", ConsumeOptions::in_group("g")).await.expect("consume");
        let held = first.next().await.expect("open").expect("a delivery");
        drop(first);
        let mut second = events.consume("t", ConsumeOptions::in_group("g")).await.expect("consume");
        let started = Instant::now();
        let again = second.next().await.expect("open").expect("a delivery");
        assert_eq!((again.event.offset, again.deliveries), (0, 2));
        assert!(started.elapsed() < Duration::from_secs(1), "at once, not after the 30 s ack wait");
        assert_eq!(held.ack().await, Err(Error::WatchStopped));
    }
}
