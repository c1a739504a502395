//! etcd's Cluster service: MemberList reports the truth for every member; MemberAdd,
//! MemberRemove, MemberUpdate and MemberPromote change the membership through the leader
//! (`member/membership.rs`, etcd's rules and refusals), root only once auth is on.

use std::sync::Arc;

use keel_proto::etcd::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse, PbResponseHeader,
};
use tonic::{Request, Response, Status};

use super::{check_admin, header, status::to_status};
use crate::member::{Member, MemberInfo, MembershipChange};

pub struct ClusterService {
    member: Arc<Member>,
}

impl ClusterService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    async fn change(&self, change: MembershipChange) -> Result<u64, Status> {
        self.member.change_membership(change).await.map_err(|e| to_status(&e))
    }

    /// The header and every member, as this member sees them now.
    fn members(&self) -> (Option<PbResponseHeader>, Vec<PbMember>) {
        let revision = self.member.shared().mvcc().current_revision();
        (header(&self.member, revision), self.member.member_list().into_iter().map(pb_member).collect())
    }
}

fn pb_member(m: MemberInfo) -> PbMember {
    PbMember { id: m.id, name: m.name, peer_ur_ls: m.peer_urls, client_ur_ls: m.client_urls, is_learner: m.is_learner }
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(&self, request: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        check_admin(&self.member, &request).await?;
        let request = request.into_inner();
        let change = MembershipChange::Add { peer_urls: request.peer_ur_ls, learner: request.is_learner };
        let id = self.change(change).await?;
        let (header, members) = self.members();
        let member = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(PbMemberAddResponse { header, member, members }))
    }

    async fn member_remove(
        &self,
        request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        check_admin(&self.member, &request).await?;
        self.change(MembershipChange::Remove { id: request.get_ref().id }).await?;
        let (header, members) = self.members();
        Ok(Response::new(PbMemberRemoveResponse { header, members }))
    }

    async fn member_update(
        &self,
        request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        check_admin(&self.member, &request).await?;
        let request = request.into_inner();
        self.change(MembershipChange::Update { id: request.id, peer_urls: request.peer_ur_ls }).await?;
        let (header, members) = self.members();
        Ok(Response::new(PbMemberUpdateResponse { header, members }))
    }

    async fn member_list(
        &self,
        request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.member.read_barrier().await.map_err(|e| to_status(&e))?;
        }
        let (header, members) = self.members();
        Ok(Response::new(PbMemberListResponse { header, members }))
    }

    async fn member_promote(
        &self,
        request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        check_admin(&self.member, &request).await?;
        self.change(MembershipChange::Promote { id: request.get_ref().id }).await?;
        let (header, members) = self.members();
        Ok(Response::new(PbMemberPromoteResponse { header, members }))
    }
}
