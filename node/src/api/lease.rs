//! etcd's Lease service: LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive, LeaseLeases.
//! Grants and revokes are replicated commands; keep-alives and remaining time are the leader's
//! to answer (`Member` forwards them).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use keel_proto::etcd::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse, PbLeaseLeasesRequest,
    PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse, PbLeaseService, PbLeaseStatus,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use keel_model::auth::etcd::{Access, Caller};

use super::{caller, header, status::to_status};
use crate::command::{As, LeaseGrantRequest, LeaseRevokeRequest};
use crate::error::ServerError;
use crate::lease;
use crate::limits::KEEP_ALIVE_QUEUE_MAX;
use crate::member::Member;

pub struct LeaseService {
    member: Arc<Member>,
}

impl LeaseService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    fn current_header(&self) -> Option<keel_proto::etcd::PbResponseHeader> {
        header(&self.member, self.member.shared().mvcc().current_revision())
    }

    /// Grants lease `id` (0: the leader chooses it) of `ttl_secs`, as `caller`.
    async fn grant(&self, caller: Option<Caller>, id: i64, ttl_secs: i64) -> Result<PbLeaseGrantResponse, ServerError> {
        let r = self.member.propose(As::new(caller, LeaseGrantRequest { id, ttl_secs })).await?;
        Ok(PbLeaseGrantResponse {
            header: header(&self.member, r.header_revision),
            id: r.id,
            ttl: r.ttl_secs,
            error: String::new(),
        })
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<PbLeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbLeaseService for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let request = request.into_inner();
        if !lease::ttl_is_allowed(request.ttl) {
            return Err(to_status(&ServerError::LeaseTtlTooLarge));
        }
        let ttl_secs = request.ttl.max(self.member.lease_ttl_min_secs);
        // ID 0: the leader chooses one (etcd's rule), in its write path.
        self.grant(caller, request.id, ttl_secs).await.map(Response::new).map_err(|e| to_status(&e))
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let revoke = LeaseRevokeRequest { id: request.into_inner().id };
        let r = self.member.propose(As::new(caller, revoke)).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(PbLeaseRevokeResponse { header: header(&self.member, r.header_revision) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_QUEUE_MAX);
        let member = self.member.clone();
        let stopped = self.member.shared().hub().stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let request = tokio::select! {
                    () = &mut stopped => return,
                    request = requests.next() => request,
                };
                let request = match request {
                    Some(Ok(request)) => request,
                    // A request the gRPC layer refused ends the stream with its status, as
                    // etcd's does.
                    Some(Err(status)) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                    None => return,
                };
                let answer = match member.lease_keep_alive(request.id).await {
                    Ok(ttl) => Ok(PbLeaseKeepAliveResponse {
                        header: header(&member, member.shared().mvcc().current_revision()),
                        id: request.id,
                        ttl,
                    }),
                    Err(e) => Err(to_status(&e)),
                };
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let request = request.into_inner();
        let time = self.member.lease_time_to_live(request.id).await.map_err(|e| to_status(&e))?;
        let keys: Vec<Vec<u8>> = match (&time, request.keys) {
            (Some(_), true) => self
                .member
                .shared()
                .mvcc()
                .lease(request.id)
                .map(|lease| lease.keys.iter().cloned().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        // The keys are the lease's secret to those who may read them (etcd 3.4 shows them to
        // anyone; later etcd releases check them as we do).
        if !keys.is_empty() {
            let needs: Vec<Access<'_>> = keys.iter().map(|key| Access::read(key, b"")).collect();
            self.member.check_read(caller.as_ref(), &needs).map_err(|e| to_status(&e))?;
        }
        // etcd answers an unknown lease with TTL -1 rather than an error.
        let (ttl, granted_ttl) = time.map_or((-1, 0), |t| (t.remaining_secs, t.granted_ttl_secs));
        Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: self.current_header(),
            id: request.id,
            ttl,
            granted_ttl,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        let leases = self.member.shared().mvcc().leases().into_iter().map(|(id, _)| PbLeaseStatus { id }).collect();
        Ok(Response::new(PbLeaseLeasesResponse { header: self.current_header(), leases }))
    }
}
