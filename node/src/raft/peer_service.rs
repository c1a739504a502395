//! The incoming half of the peer API: hands Raft RPCs to openraft, receives streamed snapshots
//! into a file, and serves requests forwarded by followers (writes and read barriers).
//! Served only on the peer URL.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use keel_proto::peer::peer_server::Peer;
use keel_proto::peer::{RaftMessage, SnapshotChunk};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use super::codec::{decode, encode};
use super::lease_authority::{LeaseAuthority, LeaseTime};
use super::snapshot::SnapshotFile;
use super::{MemberId, Raft, ReadPolicy, SnapshotMeta, Vote};
use crate::command::{Command, CommandResponse};

/// A request a follower sends to the leader on a client's behalf.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command; answer with its result.
    Write(Command),
    /// Confirm leadership with a quorum (ReadIndex) and answer with the log index a
    /// linearizable read must wait for.
    ReadIndex,
    /// Renew a lease on the leader's clock; answer its TTL (0 = gone).
    LeaseKeepAlive(i64),
    /// The leader's view of a lease's remaining time.
    LeaseTimeToLive(i64),
    /// Propose each command (concurrently, so they share the leader's group commit); answer
    /// each result, in order. (Last: postcard numbers variants in order.)
    Writes(Vec<Command>),
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
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardResponse {
    Write(Result<(CommandResponse, u64), ForwardError>),
    ReadIndex(Result<u64, ForwardError>),
    LeaseKeepAlive(Result<i64, ForwardError>),
    LeaseTimeToLive(Result<Option<LeaseTime>, ForwardError>),
    Writes(Vec<Result<(CommandResponse, u64), ForwardError>>),
}

pub struct PeerService {
    raft: Raft,
    leases: LeaseAuthority,
    incoming_dir: PathBuf,
}

impl PeerService {
    pub fn new(raft: Raft, leases: LeaseAuthority, incoming_dir: PathBuf) -> Self {
        Self { raft, leases, incoming_dir }
    }

    async fn receive_snapshot(
        &self,
        mut stream: Streaming<SnapshotChunk>,
    ) -> Result<(Vote, SnapshotMeta, SnapshotFile), Status> {
        let first = stream.next().await.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) = decode(&first.header).map_err(invalid)?;
        tokio::fs::create_dir_all(&self.incoming_dir).await.map_err(internal)?;
        let path = self.incoming_dir.join(format!("incoming-{}.part", rand::random::<u64>()));
        let mut file = tokio::fs::File::create(&path).await.map_err(internal)?;
        file.write_all(&first.data).await.map_err(internal)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?.data).await.map_err(internal)?;
        }
        file.sync_all().await.map_err(internal)?;
        Ok((vote, meta, SnapshotFile { path }))
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
        let rpc = decode(&request.into_inner().data).map_err(invalid)?;
        let response = self.raft.append_entries(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().data).map_err(invalid)?;
        let response = self.raft.vote(rpc).await.map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let (vote, meta, file) = self.receive_snapshot(request.into_inner()).await?;
        let snapshot = openraft::alias::SnapshotOf::<super::TypeConfig, SnapshotFile> { meta, snapshot: file };
        let response =
            self.raft.install_full_snapshot(vote, snapshot).await.map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn forward(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let forwarded: ForwardRequest = decode(&request.into_inner().data).map_err(invalid)?;
        let response = match forwarded {
            ForwardRequest::Write(command) => ForwardResponse::Write(self.write(command).await),
            ForwardRequest::Writes(commands) => {
                let writes = commands.into_iter().map(|command| self.write(command));
                ForwardResponse::Writes(futures::future::join_all(writes).await)
            }
            ForwardRequest::ReadIndex => ForwardResponse::ReadIndex(self.read_index().await),
            ForwardRequest::LeaseKeepAlive(id) => ForwardResponse::LeaseKeepAlive(self.leases.keep_alive(id)),
            ForwardRequest::LeaseTimeToLive(id) => ForwardResponse::LeaseTimeToLive(self.leases.time_to_live(id)),
        };
        reply(&response)
    }
}

impl PeerService {
    async fn write(&self, command: Command) -> Result<(CommandResponse, u64), ForwardError> {
        // Stamped here, on the leader: time-dependent commands carry the leader's clock.
        let command = command.stamped(crate::store::now_unix_ms());
        match self.raft.client_write(command).await {
            Ok(written) => Ok((written.data, written.log_id.leader_id.term)),
            Err(e) => Err(match e.forward_to_leader() {
                Some(forward) => ForwardError::NotLeader { leader: forward.leader_id },
                None => ForwardError::Indeterminate(e.to_string()),
            }),
        }
    }

    async fn read_index(&self) -> Result<u64, ForwardError> {
        let linearizer = tokio::time::timeout(READ_INDEX_TIMEOUT, self.raft.get_read_linearizer(ReadPolicy::ReadIndex))
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
}
