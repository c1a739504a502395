//! The consume feeder against a scripted member: each test plays the server's side of every
//! stream by hand, so failures can be placed exactly (a stream broken after two deliveries, an
//! ack never confirmed).

use std::time::Duration;

use futures::StreamExt;
use keel_proto::v1::events_server::{Events as EventsService, EventsServer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Response;

use super::*;
use crate::events::{Events, GrpcEvents};

/// How long a test waits for the client to do what it should.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// One stream as the scripted member sees it: the client's requests and the way to answer.
type ServerSide = (Streaming<pb::ConsumeRequest>, mpsc::Sender<Result<pb::ConsumeResponse, Status>>);

/// Hands every Consume stream to the test.
struct Scripted {
    streams: mpsc::Sender<ServerSide>,
}

#[tonic::async_trait]
impl EventsService for Scripted {
    async fn publish(&self, _: tonic::Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }

    async fn read(&self, _: tonic::Request<pb::ReadEventsRequest>) -> Result<Response<pb::ReadEventsResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }

    async fn topics(&self, _: tonic::Request<pb::TopicsRequest>) -> Result<Response<pb::TopicsResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }

    type ConsumeStream = ReceiverStream<Result<pb::ConsumeResponse, Status>>;

    async fn consume(
        &self,
        request: tonic::Request<Streaming<pb::ConsumeRequest>>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        let (output, responses) = mpsc::channel(16);
        self.streams.send((request.into_inner(), output)).await.map_err(|_| Status::unavailable("script over"))?;
        Ok(Response::new(ReceiverStream::new(responses)))
    }

    async fn groups(&self, _: tonic::Request<pb::GroupsRequest>) -> Result<Response<pb::GroupsResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }

    async fn set_retention(
        &self,
        _: tonic::Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        Err(Status::unimplemented("scripted"))
    }
}

/// A client of one scripted member, and the member's streams as they open.
async fn scripted() -> (GrpcEvents, mpsc::Receiver<ServerSide>, JoinHandle<()>) {
    let (streams, opened) = mpsc::channel(4);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let address = listener.local_addr().expect("a bound address");
    let server = tonic::transport::Server::builder()
        .add_service(EventsServer::new(Scripted { streams }))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let server = tokio::spawn(async move {
        let _ = server.await;
    });
    let events = GrpcEvents::connect(&[format!("http://{address}")]).await.expect("a valid endpoint");
    (events, opened, server)
}

async fn next_stream(opened: &mut mpsc::Receiver<ServerSide>) -> ServerSide {
    let stream = tokio::time::timeout(STEP_TIMEOUT, opened.recv()).await;
    stream.expect("the client opens a stream in time").expect("the server runs")
}

async fn next_request(requests: &mut Streaming<pb::ConsumeRequest>) -> Request {
    let request = tokio::time::timeout(STEP_TIMEOUT, requests.message()).await.expect("a request in time");
    request.expect("a well-formed request").and_then(|r| r.request).expect("a request, not the end")
}

async fn subscribe_of(requests: &mut Streaming<pb::ConsumeRequest>) -> pb::Subscribe {
    match next_request(requests).await {
        Request::Subscribe(subscribe) => subscribe,
        other => panic!("the first request must subscribe, got {other:?}"),
    }
}

fn subscribed(cursor: u64) -> Result<pb::ConsumeResponse, Status> {
    let subscribed = pb::Subscribed { consumer: "c-1".into(), cursor, ack_floor: cursor };
    Ok(pb::ConsumeResponse { subscribed: Some(subscribed), ..Default::default() })
}

/// Deliveries of (offset, delivery count).
fn deliveries(offsets: &[(u64, u32)]) -> Result<pb::ConsumeResponse, Status> {
    let deliveries = offsets
        .iter()
        .map(|(offset, deliveries)| pb::Delivery {
            event: Some(pb::EventMessage { topic: "t".into(), offset: *offset, ..Default::default() }),
            deliveries: *deliveries,
        })
        .collect();
    Ok(pb::ConsumeResponse { deliveries, ..Default::default() })
}

async fn send(
    output: &mpsc::Sender<Result<pb::ConsumeResponse, Status>>,
    response: Result<pb::ConsumeResponse, Status>,
) {
    output.send(response).await.expect("the client still listens");
}

async fn next_delivery(subscription: &mut Subscription) -> Delivery {
    let item = tokio::time::timeout(STEP_TIMEOUT, subscription.next()).await.expect("a delivery in time");
    item.expect("the subscription goes on").expect("a delivery, not an error")
}

#[tokio::test]
async fn a_private_stream_resumes_after_the_last_event_received() {
    let (events, mut opened, server) = scripted().await;
    let script = tokio::spawn(async move {
        // The first stream delivers 0 and 1, then its member stops.
        let (mut requests, output) = next_stream(&mut opened).await;
        let first = subscribe_of(&mut requests).await;
        send(&output, subscribed(0)).await;
        send(&output, deliveries(&[(0, 1), (1, 1)])).await;
        send(&output, Err(Status::unavailable("etcdserver: server stopped"))).await;
        // The second one must start at 2.
        let (mut requests, output) = next_stream(&mut opened).await;
        let second = subscribe_of(&mut requests).await;
        send(&output, subscribed(2)).await;
        send(&output, deliveries(&[(2, 1)])).await;
        (first, second, output)
    });
    let mut subscription = events.consume("t", ConsumeOptions::default()).await.expect("subscribed");
    let mut offsets = Vec::new();
    for _ in 0..3 {
        offsets.push(next_delivery(&mut subscription).await.event.offset);
    }
    assert_eq!(offsets, [0, 1, 2], "no gap, no repeat across the failover");
    let (first, second, _output) = script.await.expect("the script ran");
    assert_eq!((first.start, first.consumer.as_str()), (pb::StartAt::StartEarliest as i32, ""));
    assert_eq!((second.start, second.start_offset), (pb::StartAt::StartOffset as i32, 2));
    assert_eq!(second.consumer, "c-1", "the name the cluster gave is kept");
    server.abort();
}

#[tokio::test]
async fn an_ack_unconfirmed_when_the_stream_breaks_may_have_been_applied() {
    let (events, mut opened, server) = scripted().await;
    let script = tokio::spawn(async move {
        let (mut requests, output) = next_stream(&mut opened).await;
        subscribe_of(&mut requests).await;
        send(&output, subscribed(0)).await;
        send(&output, deliveries(&[(0, 1)])).await;
        // The ack arrives; the member dies before confirming it.
        let settle = next_request(&mut requests).await;
        assert!(matches!(&settle, Request::Settle(s) if s.acks == [0]), "{settle:?}");
        send(&output, Err(Status::unavailable("etcdserver: request timed out"))).await;
        // Elsewhere the group hands the event out again; this ack is confirmed.
        let (mut requests, output) = next_stream(&mut opened).await;
        let again = subscribe_of(&mut requests).await;
        assert_eq!(again.group, "g");
        send(&output, subscribed(1)).await;
        send(&output, deliveries(&[(0, 2)])).await;
        let settle = next_request(&mut requests).await;
        assert!(matches!(&settle, Request::Settle(s) if s.acks == [0]), "{settle:?}");
        send(&output, Ok(pb::ConsumeResponse { acked: vec![0], ..Default::default() })).await;
        output
    });
    let mut subscription = events.consume("t", ConsumeOptions::in_group("g")).await.expect("subscribed");
    let first = next_delivery(&mut subscription).await;
    let ack = first.ack().await;
    assert!(matches!(ack, Err(Error::MayHaveBeenApplied(_))), "{ack:?}");
    let again = next_delivery(&mut subscription).await;
    assert_eq!((again.event.offset, again.deliveries), (0, 2));
    assert_eq!(again.ack().await, Ok(()), "confirmed by the cluster");
    let _output = script.await.expect("the script ran");
    server.abort();
}

#[tokio::test]
async fn a_refusal_ends_the_subscription_instead_of_retrying() {
    let (events, mut opened, server) = scripted().await;
    let script = tokio::spawn(async move {
        // Refused while subscribing...
        let (mut requests, output) = next_stream(&mut opened).await;
        subscribe_of(&mut requests).await;
        send(&output, Err(Status::invalid_argument("events: group \"a/b\" must not contain '/'"))).await;
        // ...and, on the next subscription, mid-stream.
        let (mut requests, output) = next_stream(&mut opened).await;
        subscribe_of(&mut requests).await;
        send(&output, subscribed(0)).await;
        send(&output, Err(Status::invalid_argument("events: a consume stream subscribes once"))).await;
        output
    });
    let refused = events.consume("t", ConsumeOptions::in_group("a/b")).await;
    assert!(matches!(refused, Err(Error::InvalidArgument(_))), "{refused:?}");
    let mut subscription = events.consume("t", ConsumeOptions::in_group("g")).await.expect("subscribed");
    let item = tokio::time::timeout(STEP_TIMEOUT, subscription.next()).await.expect("the error in time");
    assert!(matches!(item, Some(Err(Error::InvalidArgument(_)))), "{item:?}");
    let end = tokio::time::timeout(STEP_TIMEOUT, subscription.next()).await.expect("the end in time");
    assert!(end.is_none(), "the subscription ends after a refusal: {end:?}");
    let _output = script.await.expect("the script ran");
    server.abort();
}

#[tokio::test]
async fn an_ack_the_cluster_says_settled_nothing_is_not_pending_and_the_stream_goes_on() {
    let (events, mut opened, server) = scripted().await;
    let script = tokio::spawn(async move {
        let (mut requests, output) = next_stream(&mut opened).await;
        subscribe_of(&mut requests).await;
        send(&output, subscribed(0)).await;
        send(&output, deliveries(&[(0, 1), (1, 1)])).await;
        let settle = next_request(&mut requests).await;
        assert!(matches!(&settle, Request::Settle(s) if s.acks == [0]), "{settle:?}");
        // Offset 0 was settled elsewhere meanwhile (its ack wait ran out, another consumer acked).
        send(&output, Ok(pb::ConsumeResponse { not_pending: vec![0], ..Default::default() })).await;
        let settle = next_request(&mut requests).await;
        assert!(matches!(&settle, Request::Settle(s) if s.acks == [1]), "{settle:?}");
        send(&output, Ok(pb::ConsumeResponse { acked: vec![1], ..Default::default() })).await;
        output
    });
    let mut subscription = events.consume("t", ConsumeOptions::in_group("g")).await.expect("subscribed");
    let first = next_delivery(&mut subscription).await;
    assert_eq!(first.ack().await, Err(Error::NotPending { offset: 0 }), "never reported acknowledged");
    let second = next_delivery(&mut subscription).await;
    assert_eq!(second.ack().await, Ok(()), "the stream carries on");
    let _output = script.await.expect("the script ran");
    server.abort();
}
