//! [`GrpcEvents`]: the event logs of a Keel cluster, over its `keel.v1.Events` gRPC API, with
//! failover between members (see [`crate::cluster`]): reads fail over freely, a publish only
//! when it was certainly never proposed. The cluster checks every request: this side only
//! converts, so its rules live in one place.

use std::sync::Arc;

use async_trait::async_trait;
use keel_proto::v1 as pb;
use keel_proto::v1::events_client::EventsClient;

use super::{since_unix_ms, unix_ms_time, Event, Events, OutgoingEvent, Published, ReadOptions, Start, TopicInfo};
use crate::cluster::Cluster;
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
        Ok(GrpcEvents { cluster: Arc::new(Cluster::new(endpoints)?) })
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
        Ok(response
            .into_inner()
            .topics
            .into_iter()
            .map(|info| TopicInfo { topic: info.topic, first_offset: info.first_offset, next_offset: info.next_offset })
            .collect())
    }
}

fn event(event: pb::EventMessage) -> Event {
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
