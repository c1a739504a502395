//! [`GrpcEvents::consume`](super::GrpcEvents): one bidirectional `Consume` stream per
//! subscription, kept by a feeder task. The feeder queues deliveries in the subscription's
//! inbox, sends acks and nacks, and answers each ack once the cluster reports it replicated.
//!
//! When the stream breaks (its member died, stopped or lost its leader) the feeder subscribes
//! again on another member. A group continues where the cluster says it stands (the old
//! stream's unacknowledged deliveries went back to the group); a stream without group continues
//! from the offset after the last one received, so nothing is skipped or repeated. Acks sent on
//! the broken stream and not yet confirmed fail with [`Error::MayHaveBeenApplied`]: nobody can
//! tell whether they landed. A refusal (a bad topic or option) ends the subscription instead:
//! subscribing again would be refused again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keel_proto::v1 as pb;
use keel_proto::v1::consume_request::Request;
use keel_proto::v1::events_client::EventsClient;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::consume::{Delivery, Inbox, Settler, Subscription, Unsettled};
use super::{since_unix_ms, whole_ms_rounded_up, ConsumeOptions, ConsumeStart};
use crate::cluster::{self, Cluster};
use crate::error::{Error, Result};

/// Acks and nacks waiting for the feeder to take them.
const SETTLE_QUEUE: usize = 1024;
/// Requests queued on one gRPC request stream.
const REQUEST_QUEUE: usize = 16;
/// Acks and nacks one request carries at most. While that many wait to be sent (the member is
/// not reading), the feeder takes no more: ack callers wait instead of memory growing.
const SETTLE_BATCH_MAX: usize = 1000;
/// Deliveries queued ahead of the consumer when the cluster does not bound them (no group, or
/// auto-ack). Past it the feeder stops reading and HTTP/2 flow control holds the member back.
/// With acks the cluster's in-flight bound keeps the queue short, so the feeder always reads
/// (it must, to see ack confirmations while the consumer waits for one).
const PREFETCH_MAX: usize = 256;
/// The pause before subscribing again after a stream broke, doubling while it keeps breaking
/// before anything arrives: a member that accepts streams and drops them is not hammered.
const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Subscribes on the first member that can serve it, then leaves the stream to a feeder task.
pub(super) async fn consume(cluster: Arc<Cluster>, topic: &str, options: &ConsumeOptions) -> Result<Subscription> {
    let mut subscribe = subscribe_request(topic, options);
    let (connection, subscribed) = open(&cluster, &subscribe).await?;
    // Subscribing again after a failover keeps the name the cluster knows this consumer by.
    subscribe.consumer = subscribed.consumer.clone();
    let kind = Kind::of(options);
    let (commands, command_receiver) = mpsc::channel(SETTLE_QUEUE);
    let settler: Arc<dyn Settler> = match kind {
        Kind::Acked => Arc::new(GrpcSettler { commands }),
        Kind::Private | Kind::AutoAck => Arc::new(Unsettled),
    };
    let inbox = Inbox::new();
    let feeder = Feeder {
        cluster,
        subscribe,
        kind,
        settler,
        inbox: inbox.clone(),
        commands: command_receiver,
        position: subscribed.cursor,
        unsent: Settle::default(),
        awaiting: HashMap::new(),
    };
    Ok(Subscription::spawn(subscribed.consumer, inbox, feeder.run(connection)))
}

/// What acks mean to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No group: every event, acks change nothing; resumes from its own position.
    Private,
    /// A group, deliveries acknowledged when handed out.
    AutoAck,
    /// A group, each delivery acknowledged by the consumer.
    Acked,
}

impl Kind {
    fn of(options: &ConsumeOptions) -> Kind {
        match (options.group_name(), options.auto_ack) {
            (None, _) => Kind::Private,
            (Some(_), true) => Kind::AutoAck,
            (Some(_), false) => Kind::Acked,
        }
    }
}

fn subscribe_request(topic: &str, options: &ConsumeOptions) -> pb::Subscribe {
    let (start, start_offset, start_time_ms) = match options.start {
        ConsumeStart::Earliest => (pb::StartAt::StartEarliest, 0, 0),
        ConsumeStart::Latest => (pb::StartAt::StartLatest, 0, 0),
        ConsumeStart::Offset(offset) => (pb::StartAt::StartOffset, offset, 0),
        ConsumeStart::Since(time) => (pb::StartAt::StartTime, 0, since_unix_ms(time)),
    };
    pb::Subscribe {
        topic: topic.to_string(),
        group: options.group_name().unwrap_or_default().to_string(),
        start: start as i32,
        start_offset,
        start_time_ms,
        auto_ack: options.auto_ack,
        ack_wait_ms: options.ack_wait.map_or(0, whole_ms_rounded_up),
        retry_limit: options.retry_limit,
        max_in_flight: options.max_in_flight.unwrap_or(0),
        consumer: options.consumer.clone().unwrap_or_default(),
    }
}

/// One open `Consume` stream.
struct Connection {
    member: usize,
    requests: mpsc::Sender<pb::ConsumeRequest>,
    responses: Streaming<pb::ConsumeResponse>,
    /// The first response, once its `subscribed` part is taken: it may carry deliveries too.
    first: Option<pb::ConsumeResponse>,
}

/// Opens a stream and subscribes, failing over between members like any idempotent request
/// (subscribing changes nothing that subscribing again would not).
async fn open(cluster: &Cluster, subscribe: &pb::Subscribe) -> Result<(Connection, pb::Subscribed)> {
    let mut requests = None;
    let (member, responses, mut first) = cluster
        .open_stream("consume events", |channel| {
            let (sender, receiver) = mpsc::channel(REQUEST_QUEUE);
            let request = pb::ConsumeRequest { request: Some(Request::Subscribe(subscribe.clone())) };
            // A new channel has room for one request: this cannot fail.
            let _ = sender.try_send(request);
            requests = Some(sender);
            async move { EventsClient::new(channel).consume(ReceiverStream::new(receiver)).await }
        })
        .await?;
    let (Some(requests), Some(subscribed)) = (requests, first.subscribed.take()) else {
        return Err(Error::InvalidResponse("a consume stream did not start by confirming the subscription".into()));
    };
    Ok((Connection { member, requests, responses, first: Some(first) }, subscribed))
}

/// Why one stream stopped serving.
enum End {
    /// The member failed: subscribe again elsewhere.
    Broken(String),
    /// The cluster refused: the subscription ends with this error.
    Failed(Error),
    /// The subscription was dropped.
    Gone,
}

struct Feeder {
    cluster: Arc<Cluster>,
    /// Sent to every member subscribed on; a private stream's start moves as events arrive.
    subscribe: pb::Subscribe,
    kind: Kind,
    settler: Arc<dyn Settler>,
    inbox: Arc<Inbox>,
    commands: mpsc::Receiver<Command>,
    /// The offset after the last event received (private streams resume there).
    position: u64,
    /// Acks and nacks taken, not yet sent.
    unsent: Settle,
    /// Acks sent on the current stream, by offset, waiting for the cluster's confirmation.
    awaiting: HashMap<u64, Vec<oneshot::Sender<Result<()>>>>,
}

impl Feeder {
    async fn run(mut self, mut connection: Connection) {
        let mut backoff = RESUBSCRIBE_BACKOFF_MIN;
        loop {
            let reason = match self.serve(&mut connection, &mut backoff).await {
                End::Broken(reason) => reason,
                End::Failed(error) => return self.fail(error),
                End::Gone => return,
            };
            let url = self.cluster.url(connection.member).to_string();
            tracing::warn!(
                endpoint = %url,
                topic = %self.subscribe.topic,
                "consume stream broke ({reason}); subscribing again on another member"
            );
            self.cluster.fail_over_from(connection.member);
            self.stream_lost(&url, &reason);
            match self.resubscribe(&mut backoff).await {
                Some(next) => connection = next,
                None => return,
            }
        }
    }

    /// Moves deliveries, acks and confirmations until the stream stops.
    async fn serve(&mut self, connection: &mut Connection, backoff: &mut Duration) -> End {
        if let Some(first) = connection.first.take() {
            if !self.receive(first) {
                return End::Gone;
            }
        }
        loop {
            let read = self.kind == Kind::Acked || self.inbox.len() < PREFETCH_MAX;
            let take = self.kind == Kind::Acked && self.unsent.len() < SETTLE_BATCH_MAX;
            tokio::select! {
                message = connection.responses.message(), if read => match message {
                    Ok(Some(response)) => {
                        *backoff = RESUBSCRIBE_BACKOFF_MIN;
                        if !self.receive(response) {
                            return End::Gone;
                        }
                    }
                    Ok(None) => return End::Broken("the member ended the stream".into()),
                    Err(status) if cluster::is_member_failure(&status) => return End::Broken(describe(&status)),
                    Err(status) => return End::Failed(cluster::from_status(status)),
                },
                () = self.inbox.room(PREFETCH_MAX), if !read => {}
                command = self.commands.recv(), if take => match command {
                    Some(command) => self.unsent.add(command),
                    // The settler holds a sender as long as the feeder runs: cannot happen.
                    None => return End::Gone,
                },
                permit = connection.requests.reserve(), if !self.unsent.is_empty() => match permit {
                    Ok(permit) => {
                        let settle = std::mem::take(&mut self.unsent);
                        let request = pb::Settle { acks: settle.acks, nacks: settle.nacks };
                        permit.send(pb::ConsumeRequest { request: Some(Request::Settle(request)) });
                        for (offset, waiter) in settle.waiters {
                            self.awaiting.entry(offset).or_default().push(waiter);
                        }
                    }
                    Err(_) => return End::Broken("the request stream closed".into()),
                },
            }
        }
    }

    /// Answers confirmed acks and queues deliveries; false once the subscription is gone.
    fn receive(&mut self, response: pb::ConsumeResponse) -> bool {
        for offset in response.acked {
            // Withdrawn before the ack is answered: a redelivery that crossed the ack is never
            // handed out after it.
            self.inbox.withdraw(offset);
            for waiter in self.awaiting.remove(&offset).unwrap_or_default() {
                let _ = waiter.send(Ok(()));
            }
        }
        for offset in response.not_pending {
            for waiter in self.awaiting.remove(&offset).unwrap_or_default() {
                let _ = waiter.send(Err(Error::NotPending { offset }));
            }
        }
        for delivery in response.deliveries {
            let Some(event) = delivery.event else { continue };
            let event = super::grpc::event(event);
            self.position = self.position.max(event.offset.saturating_add(1));
            if !self.inbox.deliver(Delivery::new(event, delivery.deliveries, self.settler.clone())) {
                return false;
            }
        }
        true
    }

    /// Settles what the broken stream leaves behind and prepares the next subscribe.
    fn stream_lost(&mut self, url: &str, reason: &str) {
        for (offset, waiters) in self.awaiting.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(Error::MayHaveBeenApplied(format!(
                    "ack of offset {offset}: the consume stream to {url} broke ({reason}) before the cluster \
                     confirmed it; if it did not land, the event is delivered again"
                ))));
            }
        }
        // Deliveries still queued stay: any consumer of the group may ack them, and a
        // redelivery of one to this subscription merges with it.
        if self.kind == Kind::Private {
            self.subscribe.start = pb::StartAt::StartOffset as i32;
            self.subscribe.start_offset = self.position;
            self.subscribe.start_time_ms = 0;
        }
    }

    /// Subscribes again, as long as it takes while members are unavailable (reporting each
    /// exhausted failover budget to the consumer); `None` when the subscription is over.
    async fn resubscribe(&mut self, backoff: &mut Duration) -> Option<Connection> {
        loop {
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
            match open(&self.cluster, &self.subscribe).await {
                Ok((connection, _)) => return Some(connection),
                Err(error @ Error::Unavailable(_)) => {
                    if !self.inbox.report(error) {
                        return None;
                    }
                }
                Err(error) => {
                    self.fail(error);
                    return None;
                }
            }
        }
    }

    /// Ends the subscription with `error`, answering every ack still waiting.
    fn fail(&mut self, error: Error) {
        for (_, waiter) in std::mem::take(&mut self.unsent.waiters) {
            let _ = waiter.send(Err(error.clone()));
        }
        for (offset, waiters) in self.awaiting.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(Error::MayHaveBeenApplied(format!(
                    "ack of offset {offset}: the subscription ended ({error}) before the cluster confirmed it"
                ))));
            }
        }
        self.inbox.report(error);
    }
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

enum Command {
    Ack(u64, oneshot::Sender<Result<()>>),
    Nack(u64),
}

/// Acks and nacks gathered into one request.
#[derive(Default)]
struct Settle {
    acks: Vec<u64>,
    nacks: Vec<u64>,
    /// Who waits for each ack's confirmation.
    waiters: Vec<(u64, oneshot::Sender<Result<()>>)>,
}

impl Settle {
    fn add(&mut self, command: Command) {
        match command {
            Command::Ack(offset, done) => {
                self.acks.push(offset);
                self.waiters.push((offset, done));
            }
            Command::Nack(offset) => self.nacks.push(offset),
        }
    }

    fn len(&self) -> usize {
        self.acks.len() + self.nacks.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Settles through the feeder, which owns the stream.
struct GrpcSettler {
    commands: mpsc::Sender<Command>,
}

#[async_trait]
impl Settler for GrpcSettler {
    async fn ack(&self, offset: u64) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.commands.send(Command::Ack(offset, done)).await.map_err(|_| Error::WatchStopped)?;
        answer.await.unwrap_or_else(|_| {
            Err(Error::MayHaveBeenApplied(format!(
                "ack of offset {offset}: the subscription was dropped before the cluster confirmed it"
            )))
        })
    }

    async fn nack(&self, offset: u64) -> Result<()> {
        self.commands.send(Command::Nack(offset)).await.map_err(|_| Error::WatchStopped)
    }
}

#[cfg(test)]
mod tests;
