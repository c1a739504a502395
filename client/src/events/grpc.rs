//! [`GrpcEvents`]: the event logs of a Keel cluster, over its `keel.v1.Events` gRPC API, with
//! failover between members (see [`crate::cluster`]): reads fail over freely, a publish only
//! when it was certainly never proposed. The cluster checks every request: this side only
//! converts, so its rules live in one place. Consuming is in `grpc_consume`.

use std::sync::Arc;

use async_trait::async_trait;
use keel_proto::v1 as pb;
use keel_proto::v1::events_client::EventsClient;

use std::time::Duration;

use super::{
    rules, since_unix_ms, unix_ms_time, whole_ms_rounded_up, ConsumeOptions, Event, Events, GroupInfo, OutgoingEvent,
    Published, ReadOptions, Retention, Start, Subscription, TopicInfo,
};
use crate::cluster::Cluster;
use crate::connect::ConnectOptions;
use crate::error::{Error, Result};

/// An [`Events`] backed by a Keel cluster. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct GrpcEvents {
    cluster: Arc<Cluster>,
}

impl GrpcEvents {
    /// Prepares connections to the cluster's members, e.g. `["http://127.0.0.1:2379"]` (a URL
    /// without a scheme gets `http://`). Nothing is contacted yet: the first request connects.
    /// Fails only on a malformed endpoint list.
    pub async fn connect(endpoints: &[String]) -> Result<GrpcEvents> {
        Self::connect_with(endpoints, &ConnectOptions::default()).await
    }

    /// As [`Self::connect`], with TLS for `https://` endpoints.
    pub async fn connect_with(endpoints: &[String], options: &ConnectOptions) -> Result<GrpcEvents> {
        Ok(GrpcEvents { cluster: Arc::new(Cluster::new(endpoints, options)?) })
    }
}

#[async_trait]
impl Events for GrpcEvents {
    async fn publish_batch(&self, topic: &str, events: Vec<OutgoingEvent>) -> Result<Vec<Published>> {
        let count = events.len();
        let request = pb::PublishRequest {
            topic: topic.to_string(),
            events: events
                .into_iter()
                .map(|event| pb::NewEvent {
                    id: event.id.unwrap_or_default(),
                    metadata: event.metadata.into_iter().collect(),
                    payload: event.payload,
                })
                .collect(),
        };
        let response = self
            .cluster
            .call_once("publish", |channel| {
                let request = request.clone();
                async move { EventsClient::new(channel).publish(request).await }
            })
            .await?
            .into_inner();
        if response.events.len() != count {
            return Err(Error::InvalidResponse(format!(
                "a publish of {count} events was answered with {} offsets",
                response.events.len()
            )));
        }
        Ok(response
            .events
            .into_iter()
            .map(|published| Published { offset: published.offset, duplicate: published.duplicate })
            .collect())
    }

    async fn read(&self, topic: &str, options: ReadOptions) -> Result<Vec<Event>> {
        let (offset, since_ms) = match options.start {
            Start::Earliest => (0, 0),
            Start::Offset(offset) => (offset, 0),
            Start::Since(time) => (0, since_unix_ms(time)),
        };
        let request =
            pb::ReadEventsRequest { topic: topic.to_string(), offset, since_ms, limit: options.limit.unwrap_or(0) };
        let response = self
            .cluster
            .call("read events", |channel| {
                let request = request.clone();
                async move { EventsClient::new(channel).read(request).await }
            })
            .await?;
        Ok(response.into_inner().events.into_iter().map(event).collect())
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        let response = self
            .cluster
            .call("list event topics", |channel| async move {
                EventsClient::new(channel).topics(pb::TopicsRequest {}).await
            })
            .await?;
        Ok(response.into_inner().topics.into_iter().map(topic_info).collect())
    }

    async fn consume(&self, topic: &str, options: ConsumeOptions) -> Result<Subscription> {
        super::grpc_consume::consume(self.cluster.clone(), topic, &options).await
    }

    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        let request = pb::GroupsRequest { topic: topic.to_string() };
        let response = self
            .cluster
            .call("list consumer groups", |channel| {
                let request = request.clone();
                async move { EventsClient::new(channel).groups(request).await }
            })
            .await?;
        Ok(response.into_inner().groups.into_iter().map(group_info).collect())
    }

    async fn set_retention(&self, topic: &str, retention: Retention) -> Result<()> {
        let retention = rules::retention(retention)?;
        let limits = pb::Retention {
            max_events: retention.max_events.unwrap_or(0),
            max_age_ms: retention.max_age.map_or(0, whole_ms_rounded_up),
            max_bytes: retention.max_bytes.unwrap_or(0),
        };
        let request = pb::SetRetentionRequest { topic: topic.to_string(), retention: Some(limits) };
        // Setting the same limits twice changes nothing: it fails over like a read.
        self.cluster
            .call("set retention", |channel| {
                let request = request.clone();
                async move { EventsClient::new(channel).set_retention(request).await }
            })
            .await?;
        Ok(())
    }
}

fn topic_info(info: pb::TopicInfo) -> TopicInfo {
    let limits = info.retention.unwrap_or_default();
    let nonzero = |limit: u64| (limit > 0).then_some(limit);
    TopicInfo {
        topic: info.topic,
        first_offset: info.first_offset,
        next_offset: info.next_offset,
        size_bytes: info.size_bytes,
        retention: Retention {
            max_events: nonzero(limits.max_events),
            max_age: nonzero(limits.max_age_ms).map(Duration::from_millis),
            max_bytes: nonzero(limits.max_bytes),
        },
        groups: info.groups.into_iter().map(group_info).collect(),
    }
}

fn group_info(info: pb::GroupInfo) -> GroupInfo {
    GroupInfo {
        group: info.group,
        ack_floor: info.ack_floor,
        cursor: info.cursor,
        pending: info.pending,
        lag: info.lag,
        ack_wait: Duration::from_millis(info.ack_wait_ms),
        retry_limit: info.retry_limit,
        max_in_flight: info.max_in_flight,
    }
}

pub(super) fn event(event: pb::EventMessage) -> Event {
    Event {
        topic: event.topic,
        offset: event.offset,
        id: Some(event.id).filter(|id| !id.is_empty()),
        timestamp: unix_ms_time(event.timestamp_ms),
        metadata: event.metadata.into_iter().collect(),
        payload: event.payload,
    }
}

#[cfg(test)]
mod tests {
    //! Failover of a publish against a scripted member: which failures are retried.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use keel_proto::v1::events_server::{Events as EventsService, EventsServer};
    use tokio::net::TcpListener;
    use tonic::{Request, Response, Status};

    use super::*;
    use crate::events::PublishOptions;

    /// Answers each Publish with the next scripted failure, then with offset 7.
    struct Scripted {
        /// std Mutex: never held across an `.await`.
        failures: Mutex<VecDeque<Status>>,
        publishes: Mutex<usize>,
    }

    #[tonic::async_trait]
    impl EventsService for Scripted {
        async fn publish(&self, _: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
            *self.publishes.lock().expect("not poisoned") += 1;
            if let Some(status) = self.failures.lock().expect("not poisoned").pop_front() {
                return Err(status);
            }
            let events = vec![pb::Published { offset: 7, duplicate: false }];
            Ok(Response::new(pb::PublishResponse { events, timestamp_ms: 1, revision: 1 }))
        }

        async fn read(&self, _: Request<pb::ReadEventsRequest>) -> Result<Response<pb::ReadEventsResponse>, Status> {
            Err(Status::unimplemented("scripted"))
        }

        async fn topics(&self, _: Request<pb::TopicsRequest>) -> Result<Response<pb::TopicsResponse>, Status> {
            Err(Status::unimplemented("scripted"))
        }

        type ConsumeStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ConsumeResponse, Status>>;

        async fn consume(
            &self,
            _: Request<tonic::Streaming<pb::ConsumeRequest>>,
        ) -> Result<Response<Self::ConsumeStream>, Status> {
            Err(Status::unimplemented("scripted"))
        }

        async fn groups(&self, _: Request<pb::GroupsRequest>) -> Result<Response<pb::GroupsResponse>, Status> {
            Err(Status::unimplemented("scripted"))
        }

        async fn set_retention(
            &self,
            _: Request<pb::SetRetentionRequest>,
        ) -> Result<Response<pb::SetRetentionResponse>, Status> {
            Err(Status::unimplemented("scripted"))
        }
    }

    /// Publishes one event to a member answering `failures` first; returns the result and how
    /// many publishes the member saw.
    async fn publish_against(failures: Vec<Status>) -> (Result<Published>, usize) {
        let service = Arc::new(Scripted { failures: Mutex::new(failures.into()), publishes: Mutex::new(0) });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let address = listener.local_addr().expect("a bound address");
        let server = tonic::transport::Server::builder()
            .add_service(EventsServer::from_arc(service.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let server = tokio::spawn(server);
        let events = GrpcEvents::connect(&[format!("http://{address}")]).await.expect("a valid endpoint");
        let result = events.publish("orders", b"p".to_vec(), PublishOptions::default()).await;
        server.abort();
        let publishes = *service.publishes.lock().expect("not poisoned");
        (result, publishes)
    }

    #[tokio::test]
    async fn a_publish_is_retried_when_no_leader_proposed_it() {
        let (result, publishes) = publish_against(vec![Status::unavailable("etcdserver: no leader")]).await;
        assert_eq!(result, Ok(Published { offset: 7, duplicate: false }));
        assert_eq!(publishes, 2);
    }

    #[tokio::test]
    async fn a_publish_that_may_have_been_proposed_is_not_retried() {
        let (result, publishes) = publish_against(vec![Status::unavailable("etcdserver: request timed out")]).await;
        assert!(matches!(result, Err(Error::MayHaveBeenApplied(_))), "{result:?}");
        assert_eq!(publishes, 1);
    }

    #[tokio::test]
    async fn a_refused_publish_is_not_retried() {
        let (result, publishes) = publish_against(vec![Status::invalid_argument("events: topic name is empty")]).await;
        assert_eq!(result, Err(Error::InvalidArgument("events: topic name is empty".into())));
        assert_eq!(publishes, 1);
    }
}
