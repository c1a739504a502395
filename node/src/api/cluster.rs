//! etcd's Cluster service. MemberList reports the truth for every member; membership changes
//! arrive with their own issue and answer UNIMPLEMENTED until then, to root only once auth is on.

use std::sync::Arc;

use keel_proto::etcd::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::{check_admin, header, status::to_status};
use crate::error::ServerError;
use crate::member::Member;

pub struct ClusterService {
    member: Arc<Member>,
}

impl ClusterService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(&self, request: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        check_admin(&self.member, &request).await?;
        Err(to_status(&ServerError::Unimplemented("Cluster.MemberAdd")))
    }

    async fn member_remove(
        &self,
        request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        check_admin(&self.member, &request).await?;
        Err(to_status(&ServerError::Unimplemented("Cluster.MemberRemove")))
    }

    async fn member_update(
        &self,
        request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        check_admin(&self.member, &request).await?;
        Err(to_status(&ServerError::Unimplemented("Cluster.MemberUpdate")))
    }

    async fn member_list(
        &self,
        request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.member.read_barrier().await.map_err(|e| to_status(&e))?;
        }
        let members = self
            .member
            .member_list()
            .into_iter()
            .map(|m| PbMember {
                id: m.id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect();
        let revision = self.member.shared().mvcc().current_revision();
        Ok(Response::new(PbMemberListResponse { header: header(&self.member, revision), members }))
    }

    async fn member_promote(
        &self,
        request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        check_admin(&self.member, &request).await?;
        Err(to_status(&ServerError::Unimplemented("Cluster.MemberPromote")))
    }
}
