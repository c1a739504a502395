//! What the Events test files share: clients, requests, reads and clocks.

// Each test file uses part of this.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_proto::v1::events_client::EventsClient;
use keel_proto::v1::{EventMessage, NewEvent, PublishRequest, PublishResponse, ReadEventsRequest, TopicsRequest};
use keel_tests::{retry_unavailable, TestCluster, CALL_TIMEOUT};
use tonic::transport::{Channel, Endpoint};

/// Where every event lives in the etcd keyspace.
pub const PREFIX: &str = "/micro/events/";

/// The documented limits, each checked at and just past its edge.
pub const TOPIC_BYTES_MAX: usize = 256;
pub const EVENTS_PER_PUBLISH_MAX: usize = 1000;
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
pub const READ_LIMIT_MAX: u32 = 10_000;

/// A client of member `i`'s Events service; connects lazily, so a dead member makes calls
/// fail instead of the constructor.
pub fn events(cluster: &TestCluster, i: usize) -> EventsClient<Channel> {
    let endpoint = Endpoint::from_shared(cluster.members[i].client_url.clone()).expect("url");
    let endpoint = endpoint.connect_timeout(Duration::from_secs(1)).timeout(CALL_TIMEOUT);
    // 1 MiB payloads and 10 000-event pages are bigger than tonic's 4 MiB default.
    EventsClient::new(endpoint.connect_lazy()).max_decoding_message_size(64 << 20)
}

pub fn new_event(id: &str, payload: &[u8]) -> NewEvent {
    NewEvent { id: id.into(), payload: payload.to_vec(), ..Default::default() }
}

pub fn publish_request(topic: &str, events: Vec<NewEvent>) -> PublishRequest {
    PublishRequest { topic: topic.into(), events }
}

pub async fn try_publish(
    client: &EventsClient<Channel>,
    request: PublishRequest,
) -> Result<PublishResponse, tonic::Status> {
    retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.publish(request).await }
    })
    .await
}

pub async fn publish(client: &EventsClient<Channel>, request: PublishRequest) -> PublishResponse {
    let what = format!("publish {} event(s) to {:?}", request.events.len(), request.topic);
    let response = try_publish(client, request.clone()).await.unwrap_or_else(|status| panic!("{what}: {status:?}"));
    assert_eq!(response.events.len(), request.events.len(), "{what}: one answer per event: {response:?}");
    response
}

pub async fn try_read(
    client: &EventsClient<Channel>,
    request: ReadEventsRequest,
) -> Result<(Vec<EventMessage>, u64), tonic::Status> {
    let read = retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.read(request).await }
    });
    read.await.map(|response| (response.events, response.next_offset))
}

pub fn read_request(topic: &str, offset: u64, since_ms: i64, limit: u32) -> ReadEventsRequest {
    ReadEventsRequest { topic: topic.into(), offset, since_ms, limit }
}

/// Every event of `topic` from offset 0, in pages of `page`, checking that pages join up.
pub async fn read_all(client: &EventsClient<Channel>, topic: &str, page: u32) -> Vec<EventMessage> {
    // 0 asks for the default page.
    let page_size = if page == 0 { 1000 } else { page as usize };
    let mut all: Vec<EventMessage> = Vec::new();
    let mut offset = 0;
    loop {
        let request = read_request(topic, offset, 0, page);
        let (events, next_offset) =
            try_read(client, request.clone()).await.unwrap_or_else(|status| panic!("{request:?}: {status:?}"));
        assert!(events.len() <= page_size, "{request:?} answered {} events", events.len());
        if let Some(last) = events.last() {
            assert_eq!(events[0].offset, offset, "{request:?} starts at its offset");
            assert_eq!(next_offset, last.offset + 1, "{request:?}: next_offset follows the last event");
        } else {
            assert_eq!(next_offset, offset, "{request:?}: an empty page stays where it is");
        }
        let done = events.len() < page_size;
        offset = next_offset;
        all.extend(events);
        if done {
            return all;
        }
    }
}

/// Every topic as (name, first offset, next offset), by name.
pub async fn topics(client: &EventsClient<Channel>) -> Vec<(String, u64, u64)> {
    let listed = retry_unavailable(|| {
        let mut client = client.clone();
        async move { client.topics(TopicsRequest {}).await }
    });
    let mut topics = listed.await.unwrap_or_else(|status| panic!("topics: {status:?}")).topics;
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    topics.into_iter().map(|t| (t.topic, t.first_offset, t.next_offset)).collect()
}

pub fn topic_info(topic: &str, first_offset: u64, next_offset: u64) -> (String, u64, u64) {
    (topic.into(), first_offset, next_offset)
}

pub fn unix_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(now.as_millis()).expect("milliseconds fit")
}

/// Offsets, in order, and where they are not 0, 1, 2, ...
pub fn gaps(offsets: &[u64]) -> Vec<(usize, u64)> {
    offsets.iter().enumerate().filter(|(i, offset)| **offset != *i as u64).map(|(i, o)| (i, *o)).take(5).collect()
}
