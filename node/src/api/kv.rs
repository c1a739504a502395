//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_proto::etcd::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbTxnRequest, PbTxnResponse,
};
use tonic::{Request, Response, Status};

use keel_model::auth::etcd::{Access, Caller};

use super::{caller, convert, header, status::to_status, validate};
use crate::command::{As, CompactRequest, Proposal};
use crate::error::ServerError;
use crate::member::Member;

pub struct KvService {
    member: Arc<Member>,
}

impl KvService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    /// Proposes `request` as `caller`: checked at apply against the auth state of that point.
    async fn propose<P: Proposal>(&self, caller: Option<Caller>, request: P) -> Result<P::Response, Status> {
        self.member.propose(As::new(caller, request)).await.map_err(|e| to_status(&e))
    }
}

type RangeStream = Pin<Box<dyn Stream<Item = Result<PbRangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbKvService for KvService {
    async fn range(&self, request: Request<PbRangeRequest>) -> Result<Response<PbRangeResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let request = request.into_inner();
        validate::range(&request).map_err(|e| to_status(&e))?;
        if !request.serializable && self.member.is_learner() {
            return Err(to_status(&ServerError::NotSupportedForLearner));
        }
        if !request.serializable {
            self.member.read_barrier().await.map_err(|e| to_status(&e))?;
        }
        let needs = [Access::read(&request.key, &request.range_end)];
        self.member.check_read(caller.as_ref(), &needs).map_err(|e| to_status(&e))?;
        let response = self.member.shared().range(&convert::range_request(request));
        let response = response.map_err(|e| to_status(&ServerError::from(e)))?;
        Ok(Response::new(convert::range_response(header(&self.member, response.header_revision), response)))
    }

    type RangeStreamStream = RangeStream;

    async fn range_stream(&self, _request: Request<PbRangeRequest>) -> Result<Response<RangeStream>, Status> {
        Err(to_status(&ServerError::Unimplemented("KV.RangeStream")))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let r = self.propose(caller, convert::put_request(request.into_inner())).await?;
        Ok(Response::new(convert::put_response(header(&self.member, r.header_revision), r)))
    }

    async fn delete_range(&self, request: Request<PbDeleteRequest>) -> Result<Response<PbDeleteResponse>, Status> {
        let caller = caller(&self.member, &request).await?;
        let r = self.propose(caller, convert::delete_request(request.into_inner())).await?;
        Ok(Response::new(convert::delete_response(header(&self.member, r.header_revision), r)))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        validate::txn(request.get_ref()).map_err(|e| to_status(&e))?;
        let caller = caller(&self.member, &request).await?;
        let txn = convert::txn_request(request.into_inner());
        let r = self.propose(caller, txn).await?;
        Ok(Response::new(convert::txn_response(header(&self.member, r.header_revision), r)))
    }

    async fn compact(&self, request: Request<PbCompactionRequest>) -> Result<Response<PbCompactionResponse>, Status> {
        let compact = CompactRequest { revision: request.get_ref().revision, physical: request.get_ref().physical };
        let caller = caller(&self.member, &request).await?;
        let r = self.propose(caller, compact).await?;
        Ok(Response::new(PbCompactionResponse { header: header(&self.member, r.header_revision) }))
    }
}
