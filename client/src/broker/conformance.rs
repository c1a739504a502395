//! The broker contract as one suite, run against every [`Broker`]: plain subscribers each get
//! every message, queue subscribers share them. Publishes only to topics named
//! `broker-<random>-...`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;

use super::{Broker, BrokerSubscription, Message, SubscribeOptions};

/// How long an expected message may take.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(500);

/// Runs every case against `broker`.
pub async fn run(broker: Arc<dyn Broker>) {
    let run = format!("broker-{:08x}", rand::rng().random::<u32>());
    every_subscriber_gets_every_message(&*broker, &run).await;
    a_queue_shares_its_messages(&*broker, &run).await;
}

async fn next(subscription: &mut BrokerSubscription, what: &str) -> Message {
    match tokio::time::timeout(MESSAGE_TIMEOUT, subscription.next()).await {
        Ok(Some(Ok(message))) => message,
        Ok(other) => panic!("{what}: {other:?}"),
        Err(_) => panic!("{what}: no message within {MESSAGE_TIMEOUT:?}"),
    }
}

async fn nothing_more(subscription: &mut BrokerSubscription, what: &str) {
    if let Ok(item) = tokio::time::timeout(QUIET, subscription.next()).await {
        panic!("{what}: unexpected {item:?}");
    }
}

async fn every_subscriber_gets_every_message(broker: &dyn Broker, run: &str) {
    let topic = format!("{run}-fanout");
    broker.publish(&topic, Message::new("before")).await.expect("publish");
    let mut first = broker.subscribe(&topic, SubscribeOptions::default()).await.expect("subscribe");
    let mut second = broker.subscribe(&topic, SubscribeOptions::default()).await.expect("subscribe");
    assert_eq!(first.topic(), topic);
    let header = BTreeMap::from([("content-type".to_string(), "text/plain".to_string())]);
    let message = Message { header, body: b"hello".to_vec() };
    broker.publish(&topic, message.clone()).await.expect("publish");
    assert_eq!(next(&mut first, "first subscriber").await, message, "headers and body make the round trip");
    assert_eq!(next(&mut second, "second subscriber").await, message, "every subscriber gets it");
    tokio::join!(nothing_more(&mut first, "first subscriber"), nothing_more(&mut second, "second subscriber"));
}

async fn a_queue_shares_its_messages(broker: &dyn Broker, run: &str) {
    let topic = format!("{run}-queue");
    let mut subscribers = [
        broker.subscribe(&topic, SubscribeOptions::queue("workers")).await.expect("subscribe"),
        broker.subscribe(&topic, SubscribeOptions::queue("workers")).await.expect("subscribe"),
    ];
    for n in 0..10 {
        broker.publish(&topic, Message::new(format!("m{n}"))).await.expect("publish");
    }
    let mut bodies = Vec::new();
    while bodies.len() < 10 {
        let [first, second] = &mut subscribers;
        let item = tokio::select! {
            item = first.next() => item,
            item = second.next() => item,
            () = tokio::time::sleep(MESSAGE_TIMEOUT) => panic!("queue: only {bodies:?} received"),
        };
        match item {
            Some(Ok(message)) => bodies.push(String::from_utf8_lossy(&message.body).into_owned()),
            other => panic!("queue: {other:?}"),
        }
    }
    bodies.sort_by_key(|body| body[1..].parse::<u32>().unwrap_or(u32::MAX));
    let expected: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    assert_eq!(bodies, expected, "each message to one subscriber of the queue, once");
    let [first, second] = &mut subscribers;
    tokio::join!(nothing_more(first, "first queue subscriber"), nothing_more(second, "second queue subscriber"));
}
