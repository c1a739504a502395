//! etcd's Maintenance service. Status reports the truth (version, db size, leader, raft index,
//! term and applied index); Hash and HashKV checksum the replicated state so that replicas can
//! be compared; the rest answers UNIMPLEMENTED until its issue lands. As in etcd 3.4, Hash,
//! HashKV, Defragment and Snapshot are root's once auth is on; Status, Alarm and MoveLeader are not.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_proto::etcd::{
    PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest,
    PbStatusResponse,
};
use tonic::{Request, Response, Status};

use super::{check_admin, header, status::to_status};
use crate::error::ServerError;
use crate::limits::ETCD_COMPATIBLE_VERSION;
use crate::member::Member;

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
    async fn alarm(&self, _: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        // No alarms exist yet (no space quota): an empty list is the truth.
        let revision = self.member.shared().mvcc().current_revision();
        Ok(Response::new(PbAlarmResponse { header: header(&self.member, revision), alarms: Vec::new() }))
    }

    async fn status(&self, _: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        let metrics = self.member.metrics();
        let revision = self.member.shared().mvcc().current_revision();
        let db_size = i64::try_from(self.member.db_size_bytes()).unwrap_or(i64::MAX);
        let is_learner = metrics.membership_config.membership().learner_ids().any(|id| id == self.member.id);
        Ok(Response::new(PbStatusResponse {
            header: header(&self.member, revision),
            version: ETCD_COMPATIBLE_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |id| id.index),
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        check_admin(&self.member, &request).await?;
        unimplemented("Maintenance.Defragment")
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
        unimplemented("Maintenance.Snapshot")
    }

    async fn move_leader(&self, _: Request<PbMoveLeaderRequest>) -> Result<Response<PbMoveLeaderResponse>, Status> {
        unimplemented("Maintenance.MoveLeader")
    }

    async fn downgrade(&self, _: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        unimplemented("Maintenance.Downgrade")
    }
}
