//! The outgoing half of the peer API: Raft RPCs and forwarded requests to other members, over
//! tonic channels cached per peer URL (one HTTP/2 connection per peer, reused by every RPC).
//! Every RPC carries this member's peer credentials (`peer_auth`), and no message exceeds what
//! the receiver accepts. AppendEntries go pipelined on a stream (`append_stream`); to a peer
//! without it, unary, a large one as a prefix that fits.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use keel_proto::peer::{RaftMessage, SnapshotChunk};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{stream_append_sequential, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use tokio::io::AsyncReadExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::append_stream::NotOpened;
use super::codec::{decode, encode};
use super::peer_auth::PeerCredentials;
use super::snapshot::{SnapshotFile, CHUNK_BYTES};
use super::{MemberId, MemberNode, TypeConfig, Vote};
use crate::limits::{PEER_APPEND_BYTES_MAX, PEER_MESSAGE_BYTES_MAX, PEER_RESPONSE_BYTES_MAX};

/// A client of one peer's API, presenting this member's credentials on every call.
pub type PeerClient = keel_proto::peer::peer_client::PeerClient<InterceptedService<Channel, PeerCredentials>>;

/// How long a connection attempt to a peer may take before the RPC counts as unreachable.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The shortest time an AppendEntries may take before it counts as lost. Generous: a slow
/// append only delays that follower, while one timed out too early is sent again whole and
/// can never succeed.
const APPEND_ENTRIES_TIMEOUT_MIN: Duration = Duration::from_secs(5);
/// A transfer's target answers once its log has caught up, for at most an election timeout.
const TRANSFER_LEADER_TIMEOUT_MIN: Duration = Duration::from_secs(5);

/// Snapshot chunks read ahead of the transport.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;

/// Peer clients by URL, shared by Raft replication and request forwarding.
#[derive(Clone)]
pub struct PeerClients {
    // std Mutex: held only to look up or insert a client, never across an await.
    clients: Arc<Mutex<HashMap<String, PeerClient>>>,
    /// The local IP connections are opened from: `None` (the OS chooses) unless the test-only
    /// `--unsafe-peer-source-address` is set.
    source_address: Option<std::net::IpAddr>,
    credentials: PeerCredentials,
    /// For https:// peer URLs: the peer CA and this member's certificate (`--peer-*` flags).
    tls: Option<ClientTlsConfig>,
    /// Set once a peer refused this member as not a member of the cluster.
    refused_as_stranger: Arc<tokio::sync::watch::Sender<bool>>,
}

impl PeerClients {
    /// Peer clients that present `credentials` (and `tls`'s certificate to https:// peers) and
    /// whose connections start from `source_address` (`None`: the OS chooses).
    pub fn new(
        credentials: PeerCredentials,
        tls: Option<ClientTlsConfig>,
        source_address: Option<std::net::IpAddr>,
    ) -> Self {
        let refused_as_stranger = Arc::new(tokio::sync::watch::Sender::new(false));
        PeerClients { clients: Arc::default(), source_address, credentials, tls, refused_as_stranger }
    }

    /// Whether a peer has refused this member as not a member of the cluster: what a removed
    /// member hears (etcd's peers answer a removed member 410 Gone).
    pub fn refused_as_stranger(&self) -> tokio::sync::watch::Receiver<bool> {
        self.refused_as_stranger.subscribe()
    }

    pub(super) fn note_refusal(&self, status: &tonic::Status) {
        if status.code() == tonic::Code::Unauthenticated && status.message().contains(super::peer_auth::NOT_A_MEMBER) {
            self.refused_as_stranger.send_if_modified(|refused| !std::mem::replace(refused, true));
        }
    }

    /// A client for `url`, connecting lazily on first use and reconnecting after failures.
    pub fn get(&self, url: &str) -> Result<PeerClient, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(url) {
            return Ok(client.clone());
        }
        let client =
            keel_proto::peer::peer_client::PeerClient::with_interceptor(self.channel(url)?, self.credentials())
                .max_decoding_message_size(PEER_RESPONSE_BYTES_MAX)
                .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX);
        clients.insert(url.to_string(), client.clone());
        Ok(client)
    }

    /// A lazily connecting channel to the peer port at `url` (TLS for https://).
    pub fn channel(&self, url: &str) -> Result<Channel, String> {
        let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| format!("bad peer URL {url}: {e}"))?;
        if url.starts_with("https://") {
            let tls =
                self.tls.clone().ok_or_else(|| format!("peer URL {url} is https:// but no --peer-cert-file is set"))?;
            endpoint = endpoint.tls_config(tls).map_err(|e| format!("peer URL {url}: {e}"))?;
        }
        Ok(endpoint
            .connect_timeout(PEER_CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .local_address(self.source_address)
            .connect_lazy())
    }

    /// What this member presents on every peer RPC.
    pub fn credentials(&self) -> PeerCredentials {
        self.credentials.clone()
    }

    /// A client for a member, by the URL it is reached on (`peer_url`).
    pub fn for_member(&self, node: &MemberNode) -> Result<PeerClient, String> {
        self.get(peer_url(node)?)
    }
}

/// The URL a member is reached on: the first of its peer URLs.
pub fn peer_url(node: &MemberNode) -> Result<&str, String> {
    node.peer_urls.first().map(String::as_str).ok_or_else(|| format!("member {} has no peer URL", node.name))
}

pub struct NetworkFactory {
    clients: PeerClients,
}

impl NetworkFactory {
    pub fn new(clients: PeerClients) -> Self {
        Self { clients }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: MemberId, node: &MemberNode) -> Self::Network {
        Connection { target, client: self.clients.for_member(node), clients: self.clients.clone(), unary_only: false }
    }
}

/// One peer as seen by openraft's replication and election tasks.
pub struct Connection {
    target: MemberId,
    client: Result<PeerClient, String>,
    clients: PeerClients,
    /// Set once the peer answered that it has no append stream (a Keel before it): its
    /// AppendEntries then go unary, one at a time.
    unary_only: bool,
}

type RpcResult<T> = Result<T, RPCError<TypeConfig>>;

impl Connection {
    fn client(&self) -> RpcResult<PeerClient> {
        self.client.clone().map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    async fn call<Req, Resp, F, Fut>(&self, request: &Req, timeout: Duration, rpc: F) -> RpcResult<Resp>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(PeerClient, RaftMessage) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let data = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let telemetry = crate::telemetry::telemetry();
        telemetry.peer_sent(self.target, data.len());
        let call = rpc(self.client()?, RaftMessage { data });
        let response = match tokio::time::timeout(timeout, call).await {
            Err(_) => {
                telemetry.peer_send_failed(self.target);
                return Err(RPCError::Unreachable(Unreachable::from_string(format!("peer {} timed out", self.target))));
            }
            Ok(Err(status)) => {
                telemetry.peer_send_failed(self.target);
                self.clients.note_refusal(&status);
                return Err(status_to_rpc_error(status));
            }
            Ok(Ok(response)) => response.into_inner(),
        };
        telemetry.peer_received(self.target, response.data.len());
        decode(&response.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

/// `rpc` as it can be sent: whole when it encodes within `PEER_APPEND_BYTES_MAX`, otherwise the
/// longest prefix of its entries that does (at least one entry), with the log id of the last
/// entry sent.
fn fit_append(
    mut rpc: AppendEntriesRequest<TypeConfig>,
) -> Result<(AppendEntriesRequest<TypeConfig>, Option<super::LogId>), std::io::Error> {
    if rpc.entries.len() <= 1 || encode(&rpc)?.len() <= PEER_APPEND_BYTES_MAX {
        return Ok((rpc, None));
    }
    let keep = entries_that_fit(&rpc.entries)?;
    rpc.entries.truncate(keep);
    let last_sent = rpc.entries.last().map(|entry| entry.log_id);
    Ok((rpc, last_sent))
}

/// How many of `entries`, from the first, encode within `PEER_APPEND_BYTES_MAX` together; at
/// least one (an entry alone is never split).
pub(super) fn entries_that_fit(entries: &[super::Entry]) -> Result<usize, std::io::Error> {
    let mut bytes = 0usize;
    let mut fit = 0usize;
    for entry in entries {
        bytes = bytes.saturating_add(encode(entry)?.len());
        if fit > 0 && bytes > PEER_APPEND_BYTES_MAX {
            break;
        }
        fit += 1;
    }
    Ok(fit)
}

pub(super) fn status_to_rpc_error(status: tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => {
            RPCError::Unreachable(Unreachable::from_string(status.message()))
        }
        _ => RPCError::Network(NetworkError::from_string(format!("{}: {}", status.code(), status.message()))),
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = SnapshotFile;

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, RpcResult<BoxStream<'s, RpcResult<StreamAppendResult<TypeConfig>>>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        // A stream that holds one request at most (openraft's heartbeats, one per stream) goes
        // as a unary call: opening a stream costs more than the call, and read barriers wait
        // for heartbeats.
        let at_most_one = matches!(input.size_hint(), (_, Some(upper)) if upper <= 1);
        if self.unary_only || at_most_one {
            return stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            match super::append_stream::send(self.client()?, self.clients.clone(), self.target, input).await {
                Ok(answers) => Ok(answers),
                Err(NotOpened::Failed(e)) => Err(e),
                Err(NotOpened::NoStream) => {
                    // This session's requests are lost with the stream; openraft sends them again.
                    tracing::info!(peer = self.target, "the peer has no append stream: AppendEntries go unary");
                    self.unary_only = true;
                    Err(RPCError::Unreachable(Unreachable::from_string("the peer has no append stream")))
                }
            }
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft's TTL here is one heartbeat interval, sized for empty heartbeats; an append
        // of large entries (each up to 1.5 MiB, fsynced by the follower before it answers)
        // can take longer, and timing it out would resend it forever: replication would stall.
        let timeout = option.hard_ttl().max(APPEND_ENTRIES_TIMEOUT_MIN);
        let (rpc, last_sent) = fit_append(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // A heartbeat's answer waits for no disk: its round trip is the network's (etcd's
        // `etcd_network_peer_round_trip_time_seconds`).
        let is_heartbeat = rpc.entries.is_empty();
        let started = std::time::Instant::now();
        let response: AppendEntriesResponse<TypeConfig> =
            self.call(&rpc, timeout, |mut c, m| async move { c.append_entries(m).await }).await?;
        if is_heartbeat {
            crate::telemetry::telemetry().peer_round_trip(self.target, started.elapsed());
        }
        Ok(match (response, last_sent) {
            // Only a prefix went: it is all the follower can have matched.
            (AppendEntriesResponse::Success, Some(last_sent)) => AppendEntriesResponse::PartialSuccess(Some(last_sent)),
            (response, _) => response,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), |mut c, m| async move { c.vote(m).await }).await
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        // The target waits up to an election timeout for its log to catch up before it answers.
        let timeout = option.hard_ttl().max(TRANSFER_LEADER_TIMEOUT_MIN);
        self.call(&rpc, timeout, |mut c, m| async move { c.transfer_leader(m).await }).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header = encode(&(vote, snapshot.meta.clone())).map_err(|e| NetworkError::new(&e))?;
        let mut file = tokio::fs::File::open(&snapshot.snapshot.path).await.map_err(|e| NetworkError::new(&e))?;
        // A reader task feeds a small bounded channel: memory stays at a few chunks in flight,
        // whatever the snapshot's size.
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(SNAPSHOT_CHUNKS_IN_FLIGHT);
        tokio::spawn(async move {
            let mut header = Some(header);
            loop {
                let mut data = vec![0u8; CHUNK_BYTES];
                let read = match file.read(&mut data).await {
                    Ok(n) => n,
                    Err(e) => {
                        // The stream ends short; the receiver's verification refuses it.
                        tracing::warn!("reading snapshot to send: {e}");
                        return;
                    }
                };
                if read == 0 && header.is_none() {
                    return;
                }
                data.truncate(read);
                let chunk = SnapshotChunk { header: header.take().unwrap_or_default(), data };
                if chunk_tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        let chunks = tokio_stream::wrappers::ReceiverStream::new(chunk_rx);
        let mut client = self.client().map_err(|e| Unreachable::from_string(e.to_string()))?;
        let send = client.install_snapshot(chunks);
        let response = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            response = send => response.map_err(|s| NetworkError::from_string(s.to_string()))?,
        };
        decode(&response.into_inner().data).map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}
