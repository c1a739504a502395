//! etcd's Maintenance service. Status reports the truth (version, db size, leader, raft index,
//! term and applied index); Hash and HashKV checksum the replicated state so that replicas can
//! be compared; Alarm raises, clears and lists etcd's alarms through the log; Defragment gives
//! back the space of deleted records; Snapshot streams a backup (a snapshot file of the state,
//! SHA-256 trailer included, `member/backup.rs`); the rest answers UNIMPLEMENTED until its issue lands.
//! MoveLeader hands the leadership to another voter (on the leader only, as etcd).
//! As in etcd 3.4, Hash, HashKV, Defragment and Snapshot are root's once auth is on, and Status
//! is not; MoveLeader is root's as in etcd 3.5 (3.4 lets anyone move it); listing alarms is open,
//! raising or clearing one is root's (etcd 3.4 lets anyone, so anyone could stop every write with
//! a NOSPACE).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_proto::etcd::{
    PbAlarmMember, PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbResponseHeader, PbSnapshotRequest, PbSnapshotResponse,
    PbStatusRequest, PbStatusResponse,
};
use tonic::{Request, Response, Status};

use super::{caller, check_admin, header, status::to_status};
use crate::command::{AlarmAction, AlarmRequest, AlarmResponse, AlarmType, As};
use crate::error::ServerError;
use crate::limits::ETCD_COMPATIBLE_VERSION;
use crate::member::{BackupFile, Member};

pub struct MaintenanceService {
    member: Arc<Member>,
}

impl MaintenanceService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<PbSnapshotResponse, Status>> + Send>>;

fn unimplemented<T>(what: &'static str) -> Result<T, Status> {
    Err(to_status(&ServerError::Unimplemented(what)))
}

/// Runs a scan of the whole keyspace on the blocking pool, not on the async threads.
async fn off_the_runtime<T: Send + 'static, E: Into<ServerError> + Send + 'static>(
    scan: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(scan).await {
        Ok(result) => result.map_err(|error| to_status(&error.into())),
        Err(join) => Err(Status::internal(format!("keel: hash task failed: {join}"))),
    }
}

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    async fn alarm(&self, request: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let request = alarm_request(request.into_inner())?;
        let response = match request.action {
            // etcd 3.4 reads the alarms through the log: a barrier gives the same guarantee.
            AlarmAction::Get => {
                self.member.read_barrier().await.map_err(|e| to_status(&e))?;
                let revision = self.member.shared().mvcc().current_revision();
                AlarmResponse { header_revision: revision, alarms: self.member.alarms(request.alarm) }
            }
            AlarmAction::Activate if !self.member.member_list().iter().any(|m| m.id == request.member_id) => {
                return Err(to_status(&ServerError::MemberNotFound));
            }
            AlarmAction::Activate | AlarmAction::Deactivate => {
                self.member.propose(As::new(caller, request)).await.map_err(|e| to_status(&e))?
            }
        };
        Ok(Response::new(PbAlarmResponse {
            header: header(&self.member, response.header_revision),
            alarms: response
                .alarms
                .iter()
                .map(|a| PbAlarmMember { member_id: a.member_id, alarm: alarm_code(a.alarm) })
                .collect(),
        }))
    }

    async fn status(&self, _: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        let metrics = self.member.metrics();
        let revision = self.member.shared().mvcc().current_revision();
        let db_size = i64::try_from(self.member.db_size_bytes()).unwrap_or(i64::MAX);
        let is_learner = self.member.is_learner();
        Ok(Response::new(PbStatusResponse {
            header: header(&self.member, revision),
            version: ETCD_COMPATIBLE_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |id| id.index),
            errors: status_errors(&self.member, metrics.current_leader.is_none()),
            db_size_in_use: i64::try_from(self.member.db_size_in_use_bytes()).unwrap_or(i64::MAX),
            is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        check_admin(&self.member, &request).await?;
        self.member.defragment().await.map_err(|e| to_status(&e))?;
        let revision = self.member.shared().mvcc().current_revision();
        Ok(Response::new(PbDefragmentResponse { header: header(&self.member, revision) }))
    }

    async fn hash(&self, request: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        check_admin(&self.member, &request).await?;
        let member = self.member.clone();
        let hashed = off_the_runtime(move || member.shared().hash_state()).await?;
        Ok(Response::new(PbHashResponse { header: header(&self.member, hashed.current_revision), hash: hashed.hash }))
    }

    async fn hash_kv(&self, request: Request<PbHashKvRequest>) -> Result<Response<PbHashKvResponse>, Status> {
        check_admin(&self.member, &request).await?;
        let (member, revision) = (self.member.clone(), request.into_inner().revision);
        let hashed = off_the_runtime(move || member.shared().hash_kv(revision)).await?;
        Ok(Response::new(PbHashKvResponse {
            header: header(&self.member, hashed.current_revision),
            hash: hashed.hash,
            compact_revision: hashed.compact_revision,
            hash_revision: hashed.hashed_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, request: Request<PbSnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        check_admin(&self.member, &request).await?;
        // What every write acknowledged before this call holds, as etcd's snapshot does.
        self.member.read_barrier().await.map_err(|e| to_status(&e))?;
        let file = self.member.backup().await.map_err(|e| to_status(&e))?;
        let revision = self.member.shared().mvcc().current_revision();
        Ok(Response::new(Box::pin(backup_stream(file, header(&self.member, revision)))))
    }

    async fn move_leader(
        &self,
        request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        check_admin(&self.member, &request).await?;
        self.member.move_leader(request.get_ref().target_id).await.map_err(|e| to_status(&e))?;
        let revision = self.member.shared().mvcc().current_revision();
        Ok(Response::new(PbMoveLeaderResponse { header: header(&self.member, revision) }))
    }

    async fn downgrade(&self, _: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        unimplemented("Maintenance.Downgrade")
    }
}

/// etcd's AlarmRequest as Keel's; an action or type etcd does not have is refused.
fn alarm_request(request: PbAlarmRequest) -> Result<AlarmRequest, Status> {
    let action = match request.action {
        0 => AlarmAction::Get,
        1 => AlarmAction::Activate,
        2 => AlarmAction::Deactivate,
        other => return Err(Status::invalid_argument(format!("etcdserver: unknown alarm action {other}"))),
    };
    let alarm = match request.alarm {
        0 => AlarmType::None,
        1 => AlarmType::NoSpace,
        2 => AlarmType::Corrupt,
        other => return Err(Status::invalid_argument(format!("etcdserver: unknown alarm type {other}"))),
    };
    Ok(AlarmRequest { action, member_id: request.member_id, alarm })
}

fn alarm_code(alarm: AlarmType) -> i32 {
    match alarm {
        AlarmType::None => 0,
        AlarmType::NoSpace => 1,
        AlarmType::Corrupt => 2,
    }
}

/// etcd's Status `errors`: "etcdserver: no leader" without one, and each active alarm as Go's
/// protobuf text of its `AlarmMember`.
fn status_errors(member: &Member, no_leader: bool) -> Vec<String> {
    let no_leader = no_leader.then(|| "etcdserver: no leader".to_string());
    let alarms = member.alarms(AlarmType::None).into_iter();
    no_leader.into_iter().chain(alarms.map(|a| format!("memberID:{} alarm:{} ", a.member_id, a.alarm.name()))).collect()
}

/// The backup file in chunks, each with the bytes still to come; the first carries the header.
/// The file is removed when the stream ends or is dropped.
fn backup_stream(
    file: BackupFile,
    header: Option<PbResponseHeader>,
) -> impl Stream<Item = Result<PbSnapshotResponse, Status>> + Send {
    struct Reading {
        file: BackupFile,
        opened: Option<tokio::fs::File>,
        remaining: u64,
        header: Option<PbResponseHeader>,
    }
    let remaining = file.bytes;
    let state = Reading { file, opened: None, remaining, header };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        if state.remaining == 0 {
            return None;
        }
        match next_chunk(&mut state.opened, &state.file, state.remaining).await {
            Ok(blob) => {
                state.remaining = state.remaining.saturating_sub(blob.len() as u64);
                let chunk = PbSnapshotResponse {
                    header: state.header.take(),
                    remaining_bytes: state.remaining,
                    blob,
                    version: String::new(),
                };
                Some((Ok(chunk), Some(state)))
            }
            Err(error) => Some((Err(Status::internal(format!("keel: reading the backup: {error}"))), None)),
        }
    })
}

async fn next_chunk(
    opened: &mut Option<tokio::fs::File>,
    file: &BackupFile,
    remaining: u64,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let reader = match opened {
        Some(reader) => reader,
        None => opened.insert(tokio::fs::File::open(&file.path).await?),
    };
    let want = usize::try_from(remaining).unwrap_or(usize::MAX).min(crate::raft::snapshot::CHUNK_BYTES);
    let mut blob = vec![0; want];
    reader.read_exact(&mut blob).await?;
    Ok(blob)
}
