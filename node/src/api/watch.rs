//! etcd's Watch service: one `watch::Session` per client stream, fed by the client's requests;
//! its outputs become etcd's WatchResponses.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use keel_proto::etcd::{PbEvent, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use prost::Message;

use keel_model::auth::etcd::Access;

use super::status::{go_error_text, to_status};
use super::{convert, credentials, header};
use crate::limits::{GRPC_OVERHEAD_BYTES, WATCH_INPUT_QUEUE_MAX, WATCH_OUTPUT_QUEUE_MAX};
use crate::member::{Credentials, Member};
use crate::mvcc::EventKind;
use crate::watch::{CreateWatch, Session, WatchInput, WatchOutput, WatchedEvent};

/// etcd's `mvccpb.Event_EventType`.
const EVENT_PUT: i32 = 0;
const EVENT_DELETE: i32 = 1;
/// etcd's `WatchCreateRequest_FilterType`.
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;

pub struct WatchService {
    member: Arc<Member>,
}

impl WatchService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<PbWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<Streaming<PbWatchRequest>>) -> Result<Response<WatchStream>, Status> {
        // As etcd: the stream's token is checked at each create, so one that expires or is
        // revoked refuses the watches created after that.
        let credentials = credentials(&self.member, &request)?;
        let mut requests = request.into_inner();
        let (input_tx, input_rx) = mpsc::channel(WATCH_INPUT_QUEUE_MAX);
        let (output_tx, output_rx) = mpsc::channel(WATCH_OUTPUT_QUEUE_MAX);
        let session = Session::new(self.member.shared_state(), self.member.watch_limits(), output_tx);
        tokio::spawn(session.run(input_rx));
        // A request the gRPC layer refused (not protobuf, too large) ends the stream with
        // that status, as etcd's does.
        let (refused_tx, refused_rx) = oneshot::channel::<Status>();
        let member = self.member.clone();
        tokio::spawn(async move {
            // Ends when the client closes its side or breaks the stream (dropping `input_tx`
            // then stops the session), or when the session ends (the member stops): the
            // client's half of the stream is then let go too, or it would hold the connection
            // open and the member's shutdown with it.
            loop {
                let request = tokio::select! {
                    () = input_tx.closed() => return,
                    request = requests.next() => request,
                };
                let request = match request {
                    None => return,
                    Some(Ok(request)) => request,
                    Some(Err(status)) => {
                        let _ = refused_tx.send(status);
                        return;
                    }
                };
                let Some(mut input) = watch_input(request) else { continue };
                if let WatchInput::Create(create) = &input {
                    catch_up_before_watching(&member).await;
                    if let Err(reason) = check_watch(&member, &credentials, create).await {
                        input = WatchInput::Refuse(reason);
                    }
                }
                if input_tx.send(input).await.is_err() {
                    return;
                }
            }
        });
        let member = self.member.clone();
        let fragment_bytes = self.member.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let responses = ReceiverStream::new(output_rx).flat_map(move |output| {
            let response = watch_response(&member, output);
            futures::stream::iter(fragments(response, fragment_bytes).into_iter().map(Ok))
        });
        // Once the session's responses end, a refused request (sent before the reader
        // stopped, hence before the session ended) ends the stream with its status. Looked
        // at only then, so a session ended by shutdown still ends its stream at once.
        let refused = futures::stream::once(async move {
            let mut refused_rx = refused_rx;
            refused_rx.try_recv().ok().map(Err)
        })
        .filter_map(std::future::ready);
        Ok(Response::new(Box::pin(responses.chain(refused))))
    }
}

/// etcd's `sendFragments`: a response of `bytes_max` or more with several events, whose
/// watcher asked for fragments, goes as several responses, each filled with events until the
/// next would reach `bytes_max` (at least one each), all but the last marked `fragment`.
fn fragments(response: PbWatchResponse, bytes_max: usize) -> Vec<PbWatchResponse> {
    if !response.fragment || response.encoded_len() < bytes_max || response.events.len() < 2 {
        return vec![PbWatchResponse { fragment: false, ..response }];
    }
    let mut parts = Vec::new();
    let mut events = response.events.iter().cloned().peekable();
    while events.peek().is_some() {
        let mut part = PbWatchResponse { events: Vec::new(), fragment: true, ..response.clone() };
        while let Some(event) = events.peek() {
            part.events.push(event.clone());
            if part.events.len() > 1 && part.encoded_len() >= bytes_max {
                part.events.pop();
                break;
            }
            events.next();
        }
        parts.push(part);
    }
    if let Some(last) = parts.last_mut() {
        last.fragment = false;
    }
    parts
}

/// Before a watch starts, this member catches up with everything committed (a read barrier),
/// so that a follower a little behind neither starts "now" before acknowledged writes nor reads
/// history from before an acknowledged compaction (which would never cancel the watch). Bounded:
/// without a leader the watch starts anyway, from this member's state, as etcd's would.
async fn catch_up_before_watching(member: &Member) {
    if tokio::time::timeout(WATCH_CATCH_UP_TIMEOUT, member.read_barrier()).await.is_err() {
        tracing::debug!("watch created without catching up: no quorum answered in time");
    }
}

/// etcd's `isWatchPermitted`: the caller may read the watched range, or the create is refused
/// with the grpc-go text of the error. Unlike etcd 3.4, a `--from-key` or whole-keyspace watch
/// is checked as the range it is (etcd checks it as the single key it starts at).
async fn check_watch(member: &Member, credentials: &Credentials, create: &CreateWatch) -> Result<(), String> {
    let caller = member.caller(credentials).await;
    let checked = caller.and_then(|caller| {
        let key: &[u8] = if create.key.is_empty() { &[0] } else { &create.key };
        member.check_read(caller.as_ref(), &[Access::read(key, &create.range_end)])
    });
    checked.map_err(|e| go_error_text(&to_status(&e)))
}

/// How long a watch create waits to catch up with the leader before starting anyway.
const WATCH_CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A request with no union set is ignored, as etcd ignores it.
fn watch_input(request: PbWatchRequest) -> Option<WatchInput> {
    Some(match request.request_union? {
        PbWatchRequestUnion::CreateRequest(create) => WatchInput::Create(CreateWatch {
            no_put: create.filters.contains(&FILTER_NOPUT),
            no_delete: create.filters.contains(&FILTER_NODELETE),
            key: create.key,
            range_end: create.range_end,
            start_revision: create.start_revision,
            progress_notify: create.progress_notify,
            prev_kv: create.prev_kv,
            watch_id: create.watch_id,
            fragment: create.fragment,
        }),
        PbWatchRequestUnion::CancelRequest(cancel) => WatchInput::Cancel(cancel.watch_id),
        PbWatchRequestUnion::ProgressRequest(_) => WatchInput::Progress,
    })
}

fn watch_response(member: &Member, output: WatchOutput) -> PbWatchResponse {
    match output {
        WatchOutput::Created { watch_id, revision, refused } => PbWatchResponse {
            header: header(member, revision),
            watch_id,
            created: true,
            canceled: refused.is_some(),
            cancel_reason: refused.unwrap_or_default(),
            ..Default::default()
        },
        WatchOutput::Events { watch_id, revision, events, fragment } => PbWatchResponse {
            header: header(member, revision),
            watch_id,
            fragment,
            events: events.into_iter().map(event).collect(),
            ..Default::default()
        },
        WatchOutput::Canceled { watch_id, revision, compact_revision, reason } => PbWatchResponse {
            header: header(member, revision),
            watch_id,
            canceled: true,
            compact_revision,
            cancel_reason: reason,
            ..Default::default()
        },
        WatchOutput::Progress { watch_id, revision } => {
            PbWatchResponse { header: header(member, revision), watch_id, ..Default::default() }
        }
    }
}

fn event(watched: WatchedEvent) -> PbEvent {
    let kind = match watched.event.kind {
        EventKind::Put => EVENT_PUT,
        EventKind::Delete => EVENT_DELETE,
    };
    PbEvent {
        r#type: kind,
        kv: Some(convert::key_value(watched.event.kv)),
        prev_kv: watched.prev_kv.map(convert::key_value),
    }
}
