//! Keel's native Events service (`keel.v1.Events`): Publish, Read (from an offset or a time),
//! Topics, Groups, SetRetention here; Consume in `events_consume`. Validate, propose or read
//! through the keyspace's topic logs, map the error, answer.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keel_client::names::{self, NameError};
use keel_proto::v1 as pb;
use keel_proto::v1::events_server::Events;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::command::{NewEvent, PublishRequest, RangeRequest, Retention, SetRetentionRequest};
use crate::error::ServerError;
use crate::keys::prefix_range_end;
use crate::limits::EVENTS_READ_BYTES_MAX;
use crate::member::Member;
use crate::mvcc::events::{event_key, topic_prefix, StoredEvent, TopicState};

/// Events one Publish may carry: one replicated command, under the request size limit.
pub const EVENTS_PER_PUBLISH_MAX: usize = keel_client::events::EVENTS_PER_PUBLISH_MAX;
/// One event's payload at most (1 MiB, as a Store record).
pub const PAYLOAD_BYTES_MAX: usize = keel_client::events::PAYLOAD_BYTES_MAX;
/// Topic names and event ids: key segments and index entries.
pub const NAME_BYTES_MAX: usize = keel_client::events::NAME_BYTES_MAX;
/// Events per Read when the caller gives no limit, and the most it may ask for.
pub const READ_DEFAULT: usize = keel_client::events::READ_LIMIT_DEFAULT as usize;
pub const READ_MAX: usize = keel_client::events::READ_LIMIT_MAX as usize;
/// The longest retention age (a century): see `keel_model::events::RETENTION_AGE_MAX`.
pub const RETENTION_AGE_MAX_MS: u64 = keel_model::events::RETENTION_AGE_MAX.as_millis() as u64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    #[error("events: topic name is empty")]
    EmptyTopic,
    /// A topic, group or consumer name that breaks the one rule of `keel_client::names`.
    #[error(transparent)]
    Name(#[from] NameError),
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
    #[error("events: the first request of a consume stream must subscribe")]
    SubscribeFirst,
    #[error("events: a consume stream subscribes once")]
    SubscribedTwice,
    #[error("events: ack wait must be at most 24h")]
    AckWaitTooLong,
    #[error("events: max in flight must be at most {}", keel_model::group::IN_FLIGHT_MAX)]
    InFlightTooLarge,
    #[error("events: max age must be at most {RETENTION_AGE_MAX_MS} ms")]
    MaxAgeTooLong,
}

pub(crate) fn check_topic(topic: &str) -> Result<(), EventsError> {
    if topic.is_empty() {
        return Err(EventsError::EmptyTopic);
    }
    Ok(names::TOPIC.check(topic)?)
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
        let response = self.member.propose(PublishRequest { topic: request.topic, events, timestamp_ms: 0 }).await?;
        let events =
            response.results.iter().map(|r| pb::Published { offset: r.offset, duplicate: r.duplicate }).collect();
        Ok(pb::PublishResponse { events, timestamp_ms: response.timestamp_ms, revision: response.header_revision })
    }
}

/// Events.Read: a page of a topic's events from an offset or a time, linearizable.
pub(crate) async fn read_events(
    member: &Member,
    request: pb::ReadEventsRequest,
) -> Result<pb::ReadEventsResponse, ServerError> {
    check_topic(&request.topic)?;
    let limit = match request.limit as usize {
        0 => READ_DEFAULT,
        limit if limit > READ_MAX => return Err(EventsError::LimitTooLarge.into()),
        limit => limit,
    };
    member.read_barrier().await?;
    let mvcc = member.shared().mvcc();
    let next_offset = mvcc.topic(&request.topic).ok_or(EventsError::NoSuchTopic)?.next_offset;
    let from = if request.since_ms > 0 {
        first_at_or_after(&mvcc, &request.topic, request.since_ms, next_offset)?
    } else {
        request.offset
    };
    let prefix = topic_prefix(&request.topic);
    let range = RangeRequest {
        key: event_key(&request.topic, from),
        range_end: prefix_range_end(&prefix),
        limit: limit as i64,
        ..RangeRequest::default()
    };
    let response = mvcc.range(&range)?;
    let mut events: Vec<pb::EventMessage> = Vec::new();
    let mut bytes = 0;
    for event in response.kvs.iter().filter_map(|kv| decode(&kv.value)) {
        bytes += event.payload.len();
        if !events.is_empty() && bytes > EVENTS_READ_BYTES_MAX {
            break;
        }
        events.push(event);
    }
    let next = events.last().map_or(from, |e| e.offset.saturating_add(1));
    Ok(pb::ReadEventsResponse {
        events,
        next_offset: next.min(next_offset.max(from)),
        revision: response.header_revision,
    })
}

/// The first offset whose event is at or after `since_ms` (`next_offset` if none): a binary
/// search over the topic's offsets, whose timestamps never go backwards.
pub(super) fn first_at_or_after(
    mvcc: &crate::mvcc::MvccStore,
    topic: &str,
    since_ms: i64,
    next_offset: u64,
) -> Result<u64, ServerError> {
    let first = mvcc.topic(topic).map_or(next_offset, |state| state.first_offset);
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

pub(super) fn decode(value: &[u8]) -> Option<pb::EventMessage> {
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
        read_events(&self.member, request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn topics(&self, _request: Request<pb::TopicsRequest>) -> Result<Response<pb::TopicsResponse>, Status> {
        self.member.read_barrier().await.map_err(status)?;
        let mvcc = self.member.shared().mvcc();
        let topics = mvcc.topics().into_iter().map(|(topic, state)| topic_info(&mvcc, topic, &state)).collect();
        Ok(Response::new(pb::TopicsResponse { topics }))
    }

    type ConsumeStream = super::events_consume::ConsumeStream;

    async fn consume(
        &self,
        request: Request<tonic::Streaming<pb::ConsumeRequest>>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        Ok(Response::new(super::events_consume::consume(self.member.clone(), request.into_inner())))
    }

    async fn groups(&self, request: Request<pb::GroupsRequest>) -> Result<Response<pb::GroupsResponse>, Status> {
        let topic = request.into_inner().topic;
        check_topic(&topic).map_err(|e| status(e.into()))?;
        self.member.read_barrier().await.map_err(status)?;
        let mvcc = self.member.shared().mvcc();
        let state = mvcc.topic(&topic).ok_or_else(|| status(EventsError::NoSuchTopic.into()))?;
        let info = topic_info(&mvcc, topic, state);
        Ok(Response::new(pb::GroupsResponse {
            groups: info.groups,
            first_offset: info.first_offset,
            next_offset: info.next_offset,
        }))
    }

    async fn set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        let request = request.into_inner();
        check_topic(&request.topic).map_err(|e| status(e.into()))?;
        let limits = request.retention.unwrap_or_default();
        if limits.max_age_ms > RETENTION_AGE_MAX_MS {
            return Err(status(EventsError::MaxAgeTooLong.into()));
        }
        let nonzero = |n: u64| (n > 0).then_some(n);
        let retention = Retention {
            max_events: nonzero(limits.max_events),
            max_age: nonzero(limits.max_age_ms).map(std::time::Duration::from_millis),
            max_bytes: nonzero(limits.max_bytes),
        };
        let request = SetRetentionRequest { topic: request.topic, retention };
        let response = self.member.propose(request).await.map_err(status)?;
        Ok(Response::new(pb::SetRetentionResponse { revision: response.header_revision }))
    }
}

/// A topic as Topics and Groups describe it.
pub(crate) fn topic_info(mvcc: &crate::mvcc::MvccStore, topic: String, state: &TopicState) -> pb::TopicInfo {
    let bounds = state.bounds();
    let groups = mvcc
        .groups(&topic)
        .into_iter()
        .map(|(group, g)| pb::GroupInfo {
            group,
            ack_floor: g.ack_floor().max(bounds.first),
            cursor: g.cursor.max(bounds.first),
            pending: g.pending.range(bounds.first..).count() as u64,
            lag: g.lag(bounds),
            ack_wait_ms: g.options.ack_wait_ms,
            retry_limit: g.options.retry_limit,
            max_in_flight: g.options.max_in_flight,
        })
        .collect();
    let retention = state.retention;
    pb::TopicInfo {
        topic,
        first_offset: state.first_offset,
        next_offset: state.next_offset,
        size_bytes: state.bytes,
        retention: Some(pb::Retention {
            max_events: retention.max_events.unwrap_or(0),
            max_age_ms: retention.max_age.map_or(0, |age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            max_bytes: retention.max_bytes.unwrap_or(0),
        }),
        groups,
    }
}
