//! The incoming half of the peer API: hands Raft RPCs to openraft, receives streamed snapshots
//! into a file, and serves requests forwarded by followers (writes and read barriers), unary or
//! on a forward stream (`forward_stream`).
//! Served only on the peer URL, and only to current members (`peer_auth::PeerGate` runs first).
//!
//! Nothing a peer sends reaches openraft or the state machine unchecked: every message must come
//! from the member it names (`peer_checks`), a snapshot must verify whole before it is offered
//! for install, and a forwarded write passes exactly the checks of a local one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keel_proto::peer::peer_server::Peer;
use keel_proto::peer::{RaftMessage, SnapshotChunk};
use openraft::raft::TransferLeaderRequest;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use super::codec::{decode, encode};
use super::lease_authority::LeaseTime;
use super::peer_auth::{claimed_sender, sender, PeerSender};
use super::snapshot::{self, SnapshotFile};
use super::{append_stream, forward_stream};
use super::{peer_checks, MemberId, ReadPolicy, SnapshotMeta, Vote};
use crate::command::{Command, CommandResponse};
use crate::member::Member;

/// A request a follower sends to the leader on a client's behalf.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command through the leader write path (`member::leader_write`: stamping, the
    /// choice of a lease id left 0, the renewal of a re-registered lease); answer its result.
    Write(Command),
    /// Confirm leadership with a quorum (ReadIndex) and answer with the log index a
    /// linearizable read must wait for.
    ReadIndex,
    /// Renew a lease on the leader's clock; answer its TTL (0 = gone).
    LeaseKeepAlive(i64),
    /// The leader's view of a lease's remaining time.
    LeaseTimeToLive(i64),
    /// Propose the commands, each checked on its own, in one message to the leader's core; answer
    /// each result, in order. (New variants go last: postcard numbers variants in order.)
    Writes(Vec<Command>),
    /// Change the membership (etcd's MemberAdd, …) with the leader's checks; answer the ID of
    /// the member concerned.
    Membership(crate::member::MembershipChange),
}

/// Why a forwarded request failed, for the follower to map to etcd's errors.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardError {
    /// The receiver is not the leader (any more); `leader` is who it thinks is.
    NotLeader { leader: Option<MemberId> },
    /// The request may or may not have been applied (e.g. leadership lost after proposing).
    Indeterminate(String),
    /// The request definitely failed.
    Failed(String),
    /// The leader refused the command before proposing it (its checks or limits): nothing
    /// changed. (Last: postcard numbers variants in order.)
    Refused(Refusal),
}

/// What the leader's checks refused a forwarded command for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Larger than the leader's `--max-request-bytes`.
    TooLarge,
    /// Any other rule, with the leader's message.
    Invalid(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardResponse {
    Write(Result<(CommandResponse, u64), ForwardError>),
    ReadIndex(Result<u64, ForwardError>),
    LeaseKeepAlive(Result<i64, ForwardError>),
    LeaseTimeToLive(Result<Option<LeaseTime>, ForwardError>),
    Writes(Vec<Result<(CommandResponse, u64), ForwardError>>),
    Membership(Result<u64, crate::member::MembershipRefusal>),
}

/// What a member answers on a stream of requests (`append_stream`, `forward_stream`).
pub type Answers = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftMessage, Status>> + Send>>;

/// The prefix of a snapshot being received; anything left with it (a crash mid-stream) is
/// removed at the next start (`remove_incoming`).
const INCOMING_PREFIX: &str = "incoming-";
const INCOMING_SUFFIX: &str = ".part";

pub struct PeerService {
    member: Arc<Member>,
    incoming_dir: PathBuf,
}

impl PeerService {
    pub fn new(member: Arc<Member>, incoming_dir: PathBuf) -> Self {
        Self { member, incoming_dir }
    }

    /// Receives a streamed snapshot into a file and verifies it whole; a stream that fails or
    /// ends early leaves no file behind.
    async fn receive_snapshot(
        &self,
        claimed: PeerSender,
        mut stream: Streaming<SnapshotChunk>,
    ) -> Result<(Vote, SnapshotMeta, SnapshotFile), Status> {
        let first = stream.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) = decode(&first.header).map_err(invalid)?;
        let sender = claimed.as_leader(vote.leader_id.term, self.member.raft_term())?;
        peer_checks::snapshot(&vote, &meta, sender).map_err(invalid)?;
        tokio::fs::create_dir_all(&self.incoming_dir).await.map_err(internal)?;
        let name = format!("{INCOMING_PREFIX}{}{INCOMING_SUFFIX}", rand::random::<u64>());
        let part = PartFile { path: Some(self.incoming_dir.join(name)) };
        let path = part.path().to_path_buf();
        let mut file = tokio::fs::File::create(&path).await.map_err(internal)?;
        file.write_all(&first.data).await.map_err(internal)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?.data).await.map_err(internal)?;
        }
        file.sync_all().await.map_err(internal)?;
        drop(file);
        let verify_path = path.clone();
        let verified = tokio::task::spawn_blocking(move || snapshot::verify(&verify_path)).await.map_err(internal)?;
        let file_meta = verified.map_err(|e| Status::data_loss(format!("keel: snapshot refused: {e}")))?;
        if file_meta != meta {
            return Err(Status::invalid_argument(
                "keel: snapshot refused: the file's metadata differs from the stream's",
            ));
        }
        Ok((vote, meta, SnapshotFile { path: part.keep() }))
    }
}

/// A received snapshot's file, removed when dropped unless kept.
struct PartFile {
    path: Option<PathBuf>,
}

impl PartFile {
    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), "cannot remove an incomplete snapshot: {e}");
            }
        }
    }
}

/// Removes snapshots that were being received when the member stopped: they can never be
/// completed, and an attacker could otherwise fill the disk with them.
pub fn remove_incoming(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(INCOMING_PREFIX) && name.ends_with(INCOMING_SUFFIX) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %name, "cannot remove an incomplete snapshot: {e}");
            }
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    Ok(Response::new(RaftMessage { data: encode(value).map_err(internal)? }))
}

/// How long the leader waits for a quorum to confirm a read barrier.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let claimed = claimed_sender(&request)?;
        let rpc = append_stream::check(&self.member, claimed, &request.into_inner().data)?;
        let response = self.member.raft().append_entries(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    type AppendStreamStream = Answers;

    async fn append_stream(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let claimed = claimed_sender(&request)?;
        Ok(Response::new(append_stream::answer(self.member.clone(), claimed, request.into_inner())))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let sender = sender(&request)?;
        let rpc = decode(&request.into_inner().data).map_err(invalid)?;
        peer_checks::vote(&rpc, sender).map_err(invalid)?;
        let response = self.member.raft().vote(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let claimed = claimed_sender(&request)?;
        let (vote, meta, file) = self.receive_snapshot(claimed, request.into_inner()).await?;
        let snapshot = openraft::alias::SnapshotOf::<super::TypeConfig, SnapshotFile> { meta, snapshot: file };
        let response = self
            .member
            .raft()
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn transfer_leader(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let claimed = claimed_sender(&request)?;
        let rpc: TransferLeaderRequest<super::TypeConfig> = decode(&request.into_inner().data).map_err(invalid)?;
        let sender = claimed.as_leader(rpc.from_leader().leader_id.term, self.member.raft_term())?;
        peer_checks::transfer_leader(&rpc, sender).map_err(invalid)?;
        let response =
            self.member.raft().handle_transfer_leader(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn forward(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let sender = sender(&request)?;
        let forwarded: ForwardRequest = decode(&request.into_inner().data).map_err(invalid)?;
        reply(&serve_forwarded(&self.member, sender, forwarded).await)
    }

    type ForwardStreamStream = Answers;

    async fn forward_stream(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::ForwardStreamStream>, Status> {
        let sender = sender(&request)?;
        Ok(Response::new(forward_stream::answer(self.member.clone(), sender, request.into_inner())))
    }
}

/// What the leader answers a request `sender` forwarded, unary or on a forward stream.
pub(super) async fn serve_forwarded(member: &Member, sender: MemberId, request: ForwardRequest) -> ForwardResponse {
    match request {
        ForwardRequest::Write(command) => ForwardResponse::Write(member.write_for_follower(sender, command).await),
        ForwardRequest::Writes(commands) => ForwardResponse::Writes(member.writes_for_follower(sender, commands).await),
        ForwardRequest::ReadIndex => ForwardResponse::ReadIndex(read_index(member).await),
        ForwardRequest::LeaseKeepAlive(id) => ForwardResponse::LeaseKeepAlive(member.leases().keep_alive(id)),
        ForwardRequest::LeaseTimeToLive(id) => ForwardResponse::LeaseTimeToLive(member.leases().time_to_live(id)),
        ForwardRequest::Membership(change) => ForwardResponse::Membership(member.change_as_leader(&change).await),
    }
}

async fn read_index(member: &Member) -> Result<u64, ForwardError> {
    let linearizer = member.raft().get_read_linearizer(ReadPolicy::ReadIndex);
    let linearizer = tokio::time::timeout(READ_INDEX_TIMEOUT, linearizer)
        .await
        .map_err(|_| ForwardError::Failed("read index timed out".into()))?;
    match linearizer {
        Ok(linearizer) => Ok(linearizer.read_log_id().index()),
        Err(e) => Err(match e.forward_to_leader() {
            Some(forward) => ForwardError::NotLeader { leader: forward.leader_id },
            None => ForwardError::Failed(e.to_string()),
        }),
    }
}
