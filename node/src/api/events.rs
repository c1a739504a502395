//! Keel's native Events service (`keel.v1.Events`), first slice: Publish, Read (from an offset
//! or a time) and Topics. Validate, propose or read through the keyspace's topic logs, map the
//! error, answer.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keel_proto::v1 as pb;
use keel_proto::v1::events_server::Events;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::command::{Command, CommandResponse, NewEvent, PublishRequest, RangeRequest};
use crate::error::ServerError;
use crate::member::Member;
use crate::mvcc::events::{event_key, topic_prefix, StoredEvent};
use crate::registry::prefix_end;

/// Events one Publish may carry: one replicated command, under the request size limit.
pub const EVENTS_PER_PUBLISH_MAX: usize = keel_client::events::EVENTS_PER_PUBLISH_MAX;
/// One event's payload at most (1 MiB, as a Store record).
pub const PAYLOAD_BYTES_MAX: usize = keel_client::events::PAYLOAD_BYTES_MAX;
/// Topic names and event ids: key segments and index entries.
pub const NAME_BYTES_MAX: usize = keel_client::events::NAME_BYTES_MAX;
/// Events per Read when the caller gives no limit, and the most it may ask for.
pub const READ_DEFAULT: usize = keel_client::events::READ_LIMIT_DEFAULT as usize;
pub const READ_MAX: usize = keel_client::events::READ_LIMIT_MAX as usize;
/// Payload bytes per Read response at most (at least one event is always returned): keeps a
/// page under gRPC's default 4 MiB message limit on the client side.
pub const READ_BYTES_MAX: usize = 3 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    #[error("events: topic name is empty")]
    EmptyTopic,
    #[error("events: topic {0:?} must not contain '/' and be at most {NAME_BYTES_MAX} bytes")]
    BadTopic(String),
    #[error("events: a publish needs at least one event")]
    NoEvents,
    #[error("events: at most {EVENTS_PER_PUBLISH_MAX} events per publish")]
    TooManyEvents,
    #[error("events: a payload is larger than {PAYLOAD_BYTES_MAX} bytes")]
    PayloadTooLarge,
    #[error("events: an event id is longer than {NAME_BYTES_MAX} bytes")]
    IdTooLong,
    #[error("events: limit must be at most {READ_MAX}")]
    LimitTooLarge,
    #[error("events: no such topic")]
    NoSuchTopic,
}

fn check_topic(topic: &str) -> Result<(), EventsError> {
    if topic.is_empty() {
        return Err(EventsError::EmptyTopic);
    }
    if topic.contains('/') || topic.len() > NAME_BYTES_MAX {
        return Err(EventsError::BadTopic(topic.to_string()));
    }
    Ok(())
}

pub struct EventsService {
    member: Arc<Member>,
}

impl EventsService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    async fn publish(&self, request: pb::PublishRequest) -> Result<pb::PublishResponse, ServerError> {
        check_topic(&request.topic)?;
        if request.events.is_empty() {
            return Err(EventsError::NoEvents.into());
        }
        if request.events.len() > EVENTS_PER_PUBLISH_MAX {
            return Err(EventsError::TooManyEvents.into());
        }
        let mut events = Vec::with_capacity(request.events.len());
        for event in request.events {
            if event.payload.len() > PAYLOAD_BYTES_MAX {
                return Err(EventsError::PayloadTooLarge.into());
            }
            if event.id.len() > NAME_BYTES_MAX {
                return Err(EventsError::IdTooLong.into());
            }
            events.push(NewEvent {
                id: event.id,
                metadata: event.metadata.into_iter().collect(),
                payload: event.payload,
            });
        }
        // The leader stamps the time (`Command::stamped`).
        let command = Command::Publish(PublishRequest { topic: request.topic, events, timestamp_ms: 0 });
        let CommandResponse::Publish(response) = self.member.propose(command).await? else {
            return Err(ServerError::Mismatched);
        };
        let events =
            response.results.iter().map(|r| pb::Published { offset: r.offset, duplicate: r.duplicate }).collect();
        Ok(pb::PublishResponse { events, timestamp_ms: response.timestamp_ms, revision: response.header_revision })
    }

    async fn read(&self, request: pb::ReadEventsRequest) -> Result<pb::ReadEventsResponse, ServerError> {
        check_topic(&request.topic)?;
        let limit = match request.limit as usize {
            0 => READ_DEFAULT,
            limit if limit > READ_MAX => return Err(EventsError::LimitTooLarge.into()),
            limit => limit,
        };
        self.member.read_barrier().await?;
        let mvcc = self.member.shared().mvcc();
        let next_offset = mvcc.topic(&request.topic).ok_or(EventsError::NoSuchTopic)?.next_offset;
        let from = if request.since_ms > 0 {
            first_at_or_after(&mvcc, &request.topic, request.since_ms, next_offset)?
        } else {
            request.offset
        };
        let prefix = topic_prefix(&request.topic);
        let range = RangeRequest {
            key: event_key(&request.topic, from),
            range_end: prefix_end(&prefix),
            limit: limit as i64,
            ..RangeRequest::default()
        };
        let response = mvcc.range(&range)?;
        let mut events: Vec<pb::EventMessage> = Vec::new();
        let mut bytes = 0;
        for event in response.kvs.iter().filter_map(|kv| decode(&kv.value)) {
            bytes += event.payload.len();
            if !events.is_empty() && bytes > READ_BYTES_MAX {
                break;
            }
            events.push(event);
        }
        let next = events.last().map_or(from, |e| e.offset + 1);
        Ok(pb::ReadEventsResponse {
            events,
            next_offset: next.min(next_offset.max(from)),
            revision: response.header_revision,
        })
    }
}

/// The first offset whose event is at or after `since_ms` (`next_offset` if none): a binary
/// search over the topic's offsets, whose timestamps never go backwards.
fn first_at_or_after(
    mvcc: &crate::mvcc::MvccStore,
    topic: &str,
    since_ms: i64,
    next_offset: u64,
) -> Result<u64, ServerError> {
    let first = first_offset(mvcc, topic)?.unwrap_or(next_offset);
    let (mut low, mut high) = (first, next_offset);
    while low < high {
        let middle = low + (high - low) / 2;
        let request = RangeRequest { key: event_key(topic, middle), ..RangeRequest::default() };
        let timestamp = mvcc.range(&request)?.kvs.first().and_then(|kv| decode(&kv.value)).map(|e| e.timestamp_ms);
        match timestamp {
            Some(timestamp) if timestamp >= since_ms => high = middle,
            _ => low = middle + 1,
        }
    }
    Ok(low)
}

/// The oldest offset still stored for `topic`.
fn first_offset(mvcc: &crate::mvcc::MvccStore, topic: &str) -> Result<Option<u64>, ServerError> {
    let prefix = topic_prefix(topic);
    let request = RangeRequest { range_end: prefix_end(&prefix), key: prefix, limit: 1, ..RangeRequest::default() };
    Ok(mvcc.range(&request)?.kvs.first().and_then(|kv| decode(&kv.value)).map(|e| e.offset))
}

fn decode(value: &[u8]) -> Option<pb::EventMessage> {
    let stored: StoredEvent = serde_json::from_slice(value).ok()?;
    Some(pb::EventMessage {
        topic: stored.topic,
        offset: stored.offset,
        id: stored.id,
        timestamp_ms: stored.timestamp_ms,
        metadata: stored.metadata.into_iter().collect(),
        payload: BASE64.decode(stored.payload).ok()?,
    })
}

fn status(error: ServerError) -> Status {
    to_status(&error)
}

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        self.publish(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn read(&self, request: Request<pb::ReadEventsRequest>) -> Result<Response<pb::ReadEventsResponse>, Status> {
        self.read(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn topics(&self, _request: Request<pb::TopicsRequest>) -> Result<Response<pb::TopicsResponse>, Status> {
        self.member.read_barrier().await.map_err(status)?;
        let mvcc = self.member.shared().mvcc();
        let mut topics = Vec::new();
        for (topic, state) in mvcc.topics() {
            let first_offset = first_offset(&mvcc, &topic).map_err(status)?.unwrap_or(state.next_offset);
            topics.push(pb::TopicInfo { topic, first_offset, next_offset: state.next_offset });
        }
        Ok(Response::new(pb::TopicsResponse { topics }))
    }
}
