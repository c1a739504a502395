//! AppendEntries pipelined on one gRPC stream per leader and follower (`Peer.AppendStream`).
//!
//! Unary AppendEntries let a leader have one request in flight per follower: entries proposed
//! meanwhile wait a whole round trip (the follower's fsync included), and so does the news that
//! they committed, which a follower needs before it can apply them and tell its watchers. On the
//! stream the leader sends each request as openraft makes it and the follower answers each, in
//! order, as its log store makes it durable.
//!
//! Sending (`send`): a request larger than `PEER_APPEND_BYTES_MAX` goes as consecutive parts,
//! answered as one; at most `PEER_APPENDS_IN_FLIGHT` requests go unanswered; an answer that
//! takes longer than `ANSWER_TIMEOUT` ends the stream (openraft then opens another).
//! Receiving (`answer`): each request is checked (its sender, `peer_checks`) before openraft
//! sees it; the first unsound one ends the stream with its error, after the answers to the
//! requests before it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use keel_proto::peer::RaftMessage;
use openraft::base::BoxStream;
use openraft::errors::{NetworkError, RPCError, Unreachable};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tonic::{Status, Streaming};

use super::codec::{decode, encode};
use super::network::{status_to_rpc_error, PeerClient, PeerClients};
use super::peer_auth::PeerSender;
use super::peer_service::Answers;
use super::{peer_checks, LogId, MemberId, TypeConfig};
use crate::limits::{PEER_APPENDS_IN_FLIGHT, PEER_APPEND_BYTES_MAX};
use crate::member::Member;

/// The longest a sent request may wait for its answer: generous, as for unary appends (a
/// follower fsyncs up to 16 MiB before it answers), yet a stalled follower is noticed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

type Append = AppendEntriesRequest<TypeConfig>;
type AppendResult = StreamAppendResult<TypeConfig>;
type RpcResult<T> = Result<T, RPCError<TypeConfig>>;

/// A request on its way: the last log id each of its parts carries, for the answers.
struct Sent {
    part_lasts: Vec<Option<LogId>>,
    heartbeat: bool,
    started: Instant,
    /// Held until the request is answered: the bound on requests in flight.
    _permit: OwnedSemaphorePermit,
}

/// Why a stream did not open.
pub(super) enum NotOpened {
    /// The peer serves no append stream (a Keel before it).
    NoStream,
    Failed(RPCError<TypeConfig>),
}

/// Opens a stream to `target` through `client` and sends it `input`'s requests as they come;
/// the answers come out in order, one per request.
pub(super) async fn send<S>(
    mut client: PeerClient,
    clients: PeerClients,
    target: MemberId,
    input: S,
) -> Result<BoxStream<'static, RpcResult<AppendResult>>, NotOpened>
where
    S: Stream<Item = Append> + Send + Unpin + 'static,
{
    let in_flight = Arc::new(Semaphore::new(PEER_APPENDS_IN_FLIGHT));
    // Never full: every entry holds one of `in_flight`'s permits until it is answered.
    let (sent_tx, sent_rx) = mpsc::channel::<Sent>(PEER_APPENDS_IN_FLIGHT);
    let outgoing = input
        .then(move |request| {
            let (in_flight, sent_tx) = (in_flight.clone(), sent_tx.clone());
            async move {
                let permit = in_flight.acquire_owned().await.ok()?;
                let heartbeat = request.entries.is_empty();
                let parts = match encode_parts(request) {
                    Ok(parts) => parts,
                    Err(e) => {
                        // Ends what is sent; the answers then miss this request and fail.
                        tracing::error!("cannot encode an AppendEntries to {target}: {e}");
                        return None;
                    }
                };
                let part_lasts = parts.iter().map(|(_, last)| *last).collect();
                let started = Instant::now();
                sent_tx.send(Sent { part_lasts, heartbeat, started, _permit: permit }).await.ok()?;
                let telemetry = crate::telemetry::telemetry();
                let messages = parts.into_iter().map(|(data, _)| {
                    telemetry.peer_sent(target, data.len());
                    RaftMessage { data }
                });
                Some(futures::stream::iter(messages.collect::<Vec<_>>()))
            }
        })
        .take_while(|parts| std::future::ready(parts.is_some()))
        .filter_map(std::future::ready)
        .flatten();
    let opened = tokio::time::timeout(ANSWER_TIMEOUT, client.append_stream(outgoing)).await;
    let answers = match opened {
        Err(_) => {
            let late = unreachable(format!("peer {target} did not open an append stream in time"));
            return Err(NotOpened::Failed(late));
        }
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => return Err(NotOpened::NoStream),
        Ok(Err(status)) => {
            clients.note_refusal(&status);
            return Err(NotOpened::Failed(status_to_rpc_error(status)));
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    let reading = Reading { answers, sent_rx, clients, target };
    Ok(Box::pin(futures::stream::unfold(Some(reading), |reading| async move {
        let mut reading = reading?;
        let sent = reading.sent_rx.recv().await?;
        match reading.answer(sent).await {
            Ok(Ok(matched)) => Some((Ok(Ok(matched)), Some(reading))),
            // The follower ends its stream after a refusal, and openraft opens a new one.
            end => Some((end, None)),
        }
    })))
}

/// The receiving end of a stream opened by `send`, with the requests it waits answers for.
struct Reading {
    answers: Streaming<RaftMessage>,
    sent_rx: mpsc::Receiver<Sent>,
    clients: PeerClients,
    target: MemberId,
}

impl Reading {
    /// The answer to `sent`: its parts' answers, the first that did not take its part whole,
    /// else the last.
    async fn answer(&mut self, sent: Sent) -> RpcResult<AppendResult> {
        let telemetry = crate::telemetry::telemetry();
        let mut result = Ok(None);
        for part_last in &sent.part_lasts {
            let data = match tokio::time::timeout(ANSWER_TIMEOUT, self.answers.next()).await {
                Err(_) => {
                    return Err(self.failed(unreachable(format!("peer {} answered no append in time", self.target))))
                }
                Ok(None) => {
                    return Err(self.failed(unreachable(format!("peer {} ended the append stream", self.target))))
                }
                Ok(Some(Err(status))) => {
                    self.clients.note_refusal(&status);
                    return Err(self.failed(status_to_rpc_error(status)));
                }
                Ok(Some(Ok(message))) => message.data,
            };
            telemetry.peer_received(self.target, data.len());
            result = decode(&data).map_err(|e| self.failed(RPCError::Network(NetworkError::new(&e))))?;
            if !matches!(&result, Ok(matched) if matched == part_last) {
                break;
            }
        }
        if sent.heartbeat {
            // A heartbeat's answer waits for no disk: its round trip is the network's (etcd's
            // `etcd_network_peer_round_trip_time_seconds`).
            telemetry.peer_round_trip(self.target, sent.started.elapsed());
        }
        Ok(result)
    }

    fn failed(&self, error: RPCError<TypeConfig>) -> RPCError<TypeConfig> {
        crate::telemetry::telemetry().peer_send_failed(self.target);
        error
    }
}

fn unreachable(message: String) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(message))
}

/// `request` encoded as parts that each fit `PEER_APPEND_BYTES_MAX` (a part holds at least one
/// entry, so a single larger entry still goes alone), each with its last log id. Parts follow
/// one another: each one's `prev_log_id` is the previous one's last entry.
fn encode_parts(request: Append) -> std::io::Result<Vec<(Vec<u8>, Option<LogId>)>> {
    let last = request.entries.last().map(|entry| entry.log_id).or(request.prev_log_id);
    let whole = encode(&request)?;
    if request.entries.len() <= 1 || whole.len() <= PEER_APPEND_BYTES_MAX {
        return Ok(vec![(whole, last)]);
    }
    let Append { vote, mut prev_log_id, leader_commit, mut entries } = request;
    let mut parts = Vec::new();
    while !entries.is_empty() {
        let rest = entries.split_off(super::network::entries_that_fit(&entries)?);
        let last = entries.last().map(|entry| entry.log_id);
        let part = Append { vote, prev_log_id, leader_commit, entries };
        parts.push((encode(&part)?, last));
        prev_log_id = last;
        entries = rest;
    }
    Ok(parts)
}

/// Answers a stream `sender` opened: hands each sound request to openraft's pipeline and
/// answers each request's result in order.
pub(super) fn answer(member: Arc<Member>, sender: PeerSender, incoming: Streaming<RaftMessage>) -> Answers {
    let refusal = Arc::new(Mutex::new(None::<Status>));
    let requests = {
        let (member, refusal) = (member.clone(), refusal.clone());
        futures::stream::unfold(Some(incoming), move |incoming| {
            let (member, refusal) = (member.clone(), refusal.clone());
            async move {
                let mut incoming = incoming?;
                // The sender closing its half ends the stream.
                let checked = incoming.next().await?.and_then(|message| check(&member, sender, &message.data));
                match checked {
                    Ok(request) => Some((request, Some(incoming))),
                    // Unsound, too large, or a broken stream: answered (if it can be) after the
                    // requests before it.
                    Err(status) => {
                        *refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(status);
                        None
                    }
                }
            }
        })
    };
    let answers = member.raft().stream_append(requests).map(|result| match result {
        Ok(result) => encode(&result).map(|data| RaftMessage { data }).map_err(|e| Status::internal(e.to_string())),
        Err(fatal) => Err(Status::unavailable(fatal.to_string())),
    });
    let refused =
        futures::stream::once(async move { refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() })
            .filter_map(|refusal| std::future::ready(refusal.map(Err)));
    Box::pin(answers.chain(refused))
}

/// `data` as an AppendEntries its sender may send: decoded, from the leader it names, sound.
pub(super) fn check(member: &Member, sender: PeerSender, data: &[u8]) -> Result<Append, Status> {
    let request: Append = decode(data).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let sender = sender.as_leader(request.vote.leader_id.term, member.raft_term())?;
    peer_checks::append_entries(&request, sender).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_model::command::{Command, PutRequest};

    fn entry(index: u64, value_bytes: usize) -> super::super::Entry {
        let leader = openraft::vote::leader_id_adv::LeaderId { term: 2, node_id: 1 };
        let put = PutRequest { key: b"k".to_vec(), value: vec![7; value_bytes], ..PutRequest::default() };
        super::super::Entry {
            log_id: LogId::new(leader, index),
            payload: openraft::EntryPayload::Normal(Command::Put(put)),
        }
    }

    #[test]
    fn a_request_too_large_goes_as_consecutive_parts_that_each_fit() {
        let leader = openraft::vote::leader_id_adv::LeaderId { term: 2, node_id: 1 };
        let vote = super::super::Vote { leader_id: leader, committed: true };
        let prev = Some(LogId::new(leader, 9));
        let entries: Vec<_> = (10..16).map(|i| entry(i, 6 << 20)).collect();
        let request = Append { vote, prev_log_id: prev, leader_commit: prev, entries };
        let parts = encode_parts(request).expect("encode");
        assert_eq!(parts.len(), 3, "two 6 MiB entries fit in 16 MiB, three do not");
        let mut expected_prev = prev;
        for (data, last) in &parts {
            assert!(data.len() <= PEER_APPEND_BYTES_MAX);
            let part: Append = decode(data).expect("decode");
            assert_eq!(part.prev_log_id, expected_prev);
            assert_eq!(part.entries.last().map(|e| e.log_id), *last);
            expected_prev = *last;
        }
        assert_eq!(expected_prev.map(|id| id.index), Some(15));
    }

    #[test]
    fn a_small_request_and_a_single_large_entry_go_whole() {
        let leader = openraft::vote::leader_id_adv::LeaderId { term: 2, node_id: 1 };
        let vote = super::super::Vote { leader_id: leader, committed: true };
        let heartbeat = Append { vote, prev_log_id: None, leader_commit: None, entries: vec![] };
        assert_eq!(encode_parts(heartbeat).expect("encode").len(), 1);
        let large = Append { vote, prev_log_id: None, leader_commit: None, entries: vec![entry(1, 20 << 20)] };
        let parts = encode_parts(large).expect("encode");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1.map(|id| id.index), Some(1));
    }
}
