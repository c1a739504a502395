//! Publish/subscribe in go-micro's `broker` shape: a message (headers and a body) published to a
//! topic reaches every current subscriber, or one subscriber of each queue.
//!
//! There is one implementation, [`EventsBroker`], on top of any [`Events`]: a message is an
//! event, a subscription is a consumer starting at the latest event, with auto-ack, in a group
//! named after the queue. So the broker is fire-and-forget for the caller (no acks, no offsets)
//! while riding on durable event logs, which gives two differences from NATS-style brokers:
//! messages are kept in the topic's log (bound it with [`Events::set_retention`]), and a queue
//! is a consumer group that remembers its position: messages published while none of its
//! subscribers was connected are delivered when one subscribes again. A subscriber without a
//! queue sees only messages published after it subscribed.
//!
//! This module must not know which [`Events`] it runs on.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;

use crate::error::Result;
use crate::events::{ConsumeOptions, ConsumeStart, Events, PublishOptions, Subscription};

#[doc(hidden)]
pub mod conformance;

/// Topic-based publish/subscribe. Object-safe: hold it as `Arc<dyn Broker>`.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Publishes `message` to `topic` (topic names follow the events rules: not empty, no
    /// '/'). Returns once the cluster has stored it; like an event publish, a failure may be
    /// [`Error::MayHaveBeenApplied`](crate::Error::MayHaveBeenApplied).
    async fn publish(&self, topic: &str, message: Message) -> Result<()>;

    /// Subscribes to `topic` from now on: every message published after this returns, or with
    /// [`SubscribeOptions::queue`] one subscriber of the queue per message. Drop the
    /// subscription to unsubscribe.
    async fn subscribe(&self, topic: &str, options: SubscribeOptions) -> Result<BrokerSubscription>;
}

/// A broker message: go-micro's `broker.Message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub header: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Message {
    /// A message without headers.
    pub fn new(body: impl Into<Vec<u8>>) -> Message {
        Message { header: BTreeMap::new(), body: body.into() }
    }
}

/// Options of [`Broker::subscribe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Share the messages with the other subscribers of this queue: each goes to one of them.
    /// `None`: this subscriber gets every message.
    pub queue: Option<String>,
}

impl SubscribeOptions {
    /// A subscriber of `queue`.
    pub fn queue(queue: impl Into<String>) -> SubscribeOptions {
        SubscribeOptions { queue: Some(queue.into()) }
    }
}

/// A [`Stream`] of the messages of one subscription. An `Err` item that is not the last is a
/// report (the cluster was unreachable for a while) and the subscription goes on.
pub struct BrokerSubscription {
    topic: String,
    subscription: Subscription,
}

impl BrokerSubscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Stream for BrokerSubscription {
    type Item = Result<Message>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let delivery = Pin::new(&mut self.subscription).poll_next(context);
        delivery.map(|item| {
            item.map(|delivery| {
                delivery.map(|delivery| Message { header: delivery.event.metadata, body: delivery.event.payload })
            })
        })
    }
}

impl fmt::Debug for BrokerSubscription {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("BrokerSubscription").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// A [`Broker`] on top of event logs. Cheap to clone.
#[derive(Clone)]
pub struct EventsBroker {
    events: Arc<dyn Events>,
}

impl EventsBroker {
    /// A broker publishing to and consuming from `events`, e.g. a `GrpcEvents` in production
    /// or a `MemoryEvents` in tests.
    pub fn new(events: Arc<dyn Events>) -> EventsBroker {
        EventsBroker { events }
    }
}

#[async_trait]
impl Broker for EventsBroker {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        let options = PublishOptions { metadata: message.header, id: None };
        self.events.publish(topic, message.body, options).await?;
        Ok(())
    }

    async fn subscribe(&self, topic: &str, options: SubscribeOptions) -> Result<BrokerSubscription> {
        let options = ConsumeOptions {
            group: options.queue,
            start: ConsumeStart::Latest,
            // Fire-and-forget: a message counts as handled once handed out.
            auto_ack: true,
            ..ConsumeOptions::default()
        };
        let subscription = self.events.consume(topic, options).await?;
        Ok(BrokerSubscription { topic: topic.to_string(), subscription })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MemoryEvents;

    #[tokio::test]
    async fn a_broker_on_memory_events_passes_the_conformance_suite() {
        conformance::run(Arc::new(EventsBroker::new(Arc::new(MemoryEvents::new())))).await;
    }
}
