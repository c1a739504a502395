//! `keel.v1.Events/Consume`: one bidirectional stream per consumer.
//!
//! With a group, every hand-out is a replicated `GroupClaim` (decided by the leader's state
//! machine, so two consumers of a group never hold the same event at once, wherever they are
//! connected) and every ack or nack a `GroupSettle`; the stream answers an ack only once it is
//! replicated. A stream that ends gives its unacknowledged events back (a nack) so the group
//! need not wait out their ack wait; if that fails, the ack wait does it.
//!
//! Without a group the stream is private: it reads the topic from its start position, locally
//! after one read barrier, like a watch; acks are answered and change nothing.
//!
//! When there is nothing to hand out, the stream sleeps until the topic changes (the watch hub),
//! a request arrives, or [`IDLE_RECHECK`] passes (pending deadlines and other consumers' nacks
//! change no key).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use keel_client::names;
use keel_model::group::{Delivery, GroupOptions, IN_FLIGHT_DEFAULT, IN_FLIGHT_MAX};
use keel_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use super::events::{check_topic, decode, first_at_or_after, EventsError};
use super::status::to_status;
use crate::command::{GroupClaimRequest, GroupJoinRequest, GroupSettleRequest, RangeRequest};
use crate::error::ServerError;
use crate::limits::{CONSUME_CLAIM_BATCH_MAX, CONSUME_OUTPUT_QUEUE_MAX, CONSUME_SETTLE_BATCH_MAX};
use crate::member::Member;
use crate::mvcc::events::{event_key, topic_prefix};

pub type ConsumeStream = Pin<Box<dyn Stream<Item = Result<pb::ConsumeResponse, Status>> + Send>>;

/// How long an idle stream sleeps before it looks again at deadlines and other consumers' nacks.
const IDLE_RECHECK: Duration = Duration::from_millis(250);
/// The longest ack wait a consumer may ask for (the client's bound, one value for both).
const ACK_WAIT_MAX: Duration = keel_model::events::ACK_WAIT_MAX;
/// How long a closing stream tries to give its unacknowledged events back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts serving one consume stream.
pub fn consume(member: Arc<Member>, inbound: Streaming<pb::ConsumeRequest>) -> ConsumeStream {
    let (output, responses) = mpsc::channel(CONSUME_OUTPUT_QUEUE_MAX);
    tokio::spawn(run(member, inbound, output));
    Box::pin(ReceiverStream::new(responses))
}

type Output = mpsc::Sender<Result<pb::ConsumeResponse, Status>>;

async fn run(member: Arc<Member>, mut inbound: Streaming<pb::ConsumeRequest>, output: Output) {
    let subscribe = match inbound.message().await {
        Ok(Some(pb::ConsumeRequest { request: Some(pb::consume_request::Request::Subscribe(subscribe)) })) => subscribe,
        Ok(Some(_)) => {
            let _ = output.send(Err(to_status(&EventsError::SubscribeFirst.into()))).await;
            return;
        }
        Ok(None) | Err(_) => return,
    };
    let mut consumer = match Consumer::subscribe(member, subscribe, output.clone()).await {
        Ok(consumer) => consumer,
        Err(error) => {
            let _ = output.send(Err(to_status(&error))).await;
            return;
        }
    };
    let outcome = consumer.serve(&mut inbound).await;
    consumer.release().await;
    if let Err(error) = outcome {
        let _ = output.send(Err(to_status(&error))).await;
    }
}

struct Consumer {
    member: Arc<Member>,
    topic: String,
    /// `None`: a private stream.
    group: Option<String>,
    name: String,
    auto_ack: bool,
    max_in_flight: u32,
    /// Handed to this stream and not settled (group streams without auto-ack only).
    in_flight: BTreeSet<u64>,
    /// A private stream's next offset.
    position: u64,
    output: Output,
}

impl Consumer {
    async fn subscribe(member: Arc<Member>, request: pb::Subscribe, output: Output) -> Result<Consumer, ServerError> {
        let options = check_subscribe(&request)?;
        member.read_barrier().await?;
        let start = start_offset(&member, &request)?;
        let group = (!request.group.is_empty()).then(|| request.group.clone());
        let name = if request.consumer.is_empty() { new_consumer_name(member.id) } else { request.consumer.clone() };
        let consumer = Consumer {
            member,
            topic: request.topic,
            group,
            name,
            auto_ack: request.auto_ack,
            max_in_flight: options.max_in_flight,
            in_flight: BTreeSet::new(),
            position: start,
            output,
        };
        let (cursor, ack_floor) = match &consumer.group {
            Some(group) => {
                let join = GroupJoinRequest { topic: consumer.topic.clone(), group: group.clone(), start, options };
                let joined = consumer.member.propose(join).await?;
                (joined.cursor, joined.ack_floor)
            }
            None => (start, start),
        };
        let subscribed = pb::Subscribed { consumer: consumer.name.clone(), cursor, ack_floor };
        consumer.send(pb::ConsumeResponse { subscribed: Some(subscribed), ..Default::default() }).await;
        Ok(consumer)
    }

    /// Hands out events and settles acks until the client or the member goes away.
    async fn serve(&mut self, inbound: &mut Streaming<pb::ConsumeRequest>) -> Result<(), ServerError> {
        let hub = self.member.shared().hub();
        let mut changes = hub.subscribe();
        let stopped = hub.stopped();
        tokio::pin!(stopped);
        let prefix = topic_prefix(&self.topic);
        loop {
            if self.output.is_closed() {
                return Ok(());
            }
            if self.deliver_some().await? > 0 {
                // Acks that arrived meanwhile are read once the in-flight bound is reached.
                continue;
            }
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(request)) => self.handle(request, inbound).await?,
                    Ok(None) | Err(_) => return Ok(()),
                },
                batch = changes.recv() => match batch {
                    Ok(batch) if batch.complete && !batch.events.iter().any(|e| e.kv.key.starts_with(&prefix)) => {}
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
                _ = &mut stopped => return Err(ServerError::Stopped),
                _ = self.output.closed() => return Ok(()),
            }
        }
    }

    /// Handles `request` and every request already queued behind it: their acks and nacks go
    /// out as one replicated settle.
    async fn handle(
        &mut self,
        request: pb::ConsumeRequest,
        inbound: &mut Streaming<pb::ConsumeRequest>,
    ) -> Result<(), ServerError> {
        let (mut acks, mut nacks) = (Vec::new(), Vec::new());
        let mut next = Some(request);
        while let Some(request) = next.take() {
            match request.request {
                Some(pb::consume_request::Request::Settle(settle)) => {
                    acks.extend(settle.acks);
                    nacks.extend(settle.nacks);
                }
                Some(pb::consume_request::Request::Subscribe(_)) => return Err(EventsError::SubscribedTwice.into()),
                None => {}
            }
            if acks.len() + nacks.len() < CONSUME_SETTLE_BATCH_MAX {
                // A request not yet arrived (or the end of the stream) waits for the next turn.
                next = inbound.message().now_or_never().and_then(Result::ok).flatten();
            }
        }
        self.settle(acks, nacks).await
    }

    /// Hands out what there is room for; answers how many events it sent.
    async fn deliver_some(&mut self) -> Result<usize, ServerError> {
        let deliveries = match self.group.clone() {
            Some(group) => self.claim(&group).await?,
            None => self.next_page(),
        };
        if deliveries.is_empty() {
            return Ok(0);
        }
        let events = self.read(&deliveries).await?;
        if !self.auto_ack && self.group.is_some() {
            self.in_flight.extend(deliveries.iter().map(|d| d.offset));
        }
        let count = events.len();
        self.send(pb::ConsumeResponse { deliveries: events, ..Default::default() }).await;
        Ok(count)
    }

    /// A group claim, when the local state suggests there is something to claim.
    async fn claim(&mut self, group: &str) -> Result<Vec<Delivery>, ServerError> {
        let room = self.max_in_flight.saturating_sub(self.in_flight.len() as u32).min(CONSUME_CLAIM_BATCH_MAX);
        if room == 0 || !self.group_has_work(group) {
            return Ok(Vec::new());
        }
        let request = GroupClaimRequest {
            topic: self.topic.clone(),
            group: group.to_string(),
            consumer: self.name.clone(),
            max: room,
            auto_ack: self.auto_ack,
            now_ms: 0,
        };
        let claimed = self.member.propose(request).await?;
        Ok(claimed.outcome.delivered)
    }

    fn group_has_work(&self, group: &str) -> bool {
        let mvcc = self.member.shared().mvcc();
        match (mvcc.topic(&self.topic), mvcc.group(&self.topic, group)) {
            (Some(topic), Some(state)) => state.has_work(crate::store::now_unix_ms(), topic.bounds()),
            _ => false,
        }
    }

    /// A private stream's next offsets, from this member's state.
    fn next_page(&mut self) -> Vec<Delivery> {
        let mvcc = self.member.shared().mvcc();
        let Some(topic) = mvcc.topic(&self.topic) else { return Vec::new() };
        let from = self.position.max(topic.first_offset);
        let to = topic.next_offset.min(from.saturating_add(u64::from(CONSUME_CLAIM_BATCH_MAX)));
        self.position = to.max(self.position);
        (from..to).map(|offset| Delivery { offset, deliveries: 1 }).collect()
    }

    /// The events at `deliveries`. A claim decided on the leader may name events this member
    /// has not applied yet: then it catches up first. Events trimmed away meanwhile are skipped.
    async fn read(&self, deliveries: &[Delivery]) -> Result<Vec<pb::Delivery>, ServerError> {
        let mut events = self.read_local(deliveries)?;
        if events.len() < deliveries.len() {
            self.member.read_barrier().await?;
            events = self.read_local(deliveries)?;
        }
        Ok(events)
    }

    fn read_local(&self, deliveries: &[Delivery]) -> Result<Vec<pb::Delivery>, ServerError> {
        let mvcc = self.member.shared().mvcc();
        let mut events = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let request = RangeRequest { key: event_key(&self.topic, delivery.offset), ..RangeRequest::default() };
            if let Some(event) = mvcc.range(&request)?.kvs.first().and_then(|kv| decode(&kv.value)) {
                events.push(pb::Delivery { event: Some(event), deliveries: delivery.deliveries });
            }
        }
        Ok(events)
    }

    /// Replicates acks and nacks, then answers the acks: acknowledged only those that settled
    /// a pending delivery, the others (and every ack of a stream without a group, where
    /// nothing is pending) as settling nothing.
    async fn settle(&mut self, acks: Vec<u64>, nacks: Vec<u64>) -> Result<(), ServerError> {
        let mut acked = Vec::new();
        if let Some(group) = self.group.clone() {
            if acks.is_empty() && nacks.is_empty() {
                return Ok(());
            }
            let request = GroupSettleRequest {
                topic: self.topic.clone(),
                group,
                acks: acks.clone(),
                nacks: nacks.clone(),
                now_ms: 0,
            };
            let settled = self.member.propose(request).await?;
            for offset in acks.iter().chain(&nacks) {
                self.in_flight.remove(offset);
            }
            acked = settled.acked;
        }
        if !acks.is_empty() {
            let settled: BTreeSet<u64> = acked.iter().copied().collect();
            let not_pending = acks.into_iter().filter(|offset| !settled.contains(offset)).collect();
            self.send(pb::ConsumeResponse { acked, not_pending, ..Default::default() }).await;
        }
        Ok(())
    }

    /// Gives this stream's unacknowledged events back to its group.
    async fn release(&mut self) {
        let Some(group) = self.group.clone() else { return };
        if self.in_flight.is_empty() {
            return;
        }
        let nacks: Vec<u64> = std::mem::take(&mut self.in_flight).into_iter().collect();
        let request = GroupSettleRequest { topic: self.topic.clone(), group, acks: Vec::new(), nacks, now_ms: 0 };
        let release = self.member.propose(request);
        if let Ok(Err(e)) = tokio::time::timeout(RELEASE_TIMEOUT, release).await {
            tracing::debug!(topic = %self.topic, "giving back unacknowledged events: {e}; their ack wait will");
        }
    }

    async fn send(&self, response: pb::ConsumeResponse) {
        // A closed stream is noticed by the serving loop.
        let _ = self.output.send(Ok(response)).await;
    }
}

/// Checks a subscription; answers the group options it asks for.
fn check_subscribe(request: &pb::Subscribe) -> Result<GroupOptions, EventsError> {
    check_topic(&request.topic)?;
    // Empty: no group, a made-up consumer name.
    if !request.group.is_empty() {
        names::GROUP.check(&request.group)?;
    }
    if !request.consumer.is_empty() {
        names::CONSUMER.check(&request.consumer)?;
    }
    let ack_wait = match request.ack_wait_ms {
        0 => keel_model::group::ACK_WAIT_DEFAULT,
        ms if Duration::from_millis(ms) > ACK_WAIT_MAX => return Err(EventsError::AckWaitTooLong),
        ms => Duration::from_millis(ms),
    };
    let max_in_flight = match request.max_in_flight {
        0 => IN_FLIGHT_DEFAULT,
        n if n > IN_FLIGHT_MAX => return Err(EventsError::InFlightTooLarge),
        n => n,
    };
    Ok(GroupOptions { ack_wait_ms: ack_wait.as_millis() as u64, retry_limit: request.retry_limit, max_in_flight })
}

/// Where a subscription starts, on this member's (just caught up) state.
fn start_offset(member: &Member, request: &pb::Subscribe) -> Result<u64, ServerError> {
    let mvcc = member.shared().mvcc();
    let (first, next) = mvcc.topic(&request.topic).map_or((0, 0), |t| (t.first_offset, t.next_offset));
    Ok(match pb::StartAt::try_from(request.start).unwrap_or(pb::StartAt::StartEarliest) {
        pb::StartAt::StartEarliest => first,
        pb::StartAt::StartLatest => next,
        pb::StartAt::StartOffset => request.start_offset.max(first),
        pb::StartAt::StartTime if next == 0 => 0,
        pb::StartAt::StartTime => first_at_or_after(&mvcc, &request.topic, request.start_time_ms, next)?,
    })
}

/// A consumer name unique in the cluster: the member's id and a counter.
fn new_consumer_name(member_id: u64) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{member_id:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
