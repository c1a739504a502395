//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_proto::etcd::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbTxnRequest, PbTxnResponse,
};
use tonic::{Request, Response, Status};

use super::{convert, header, status::to_status, validate};
use crate::command::{CompactRequest, Proposal};
use crate::error::ServerError;
use crate::member::Member;

pub struct KvService {
    member: Arc<Member>,
}

impl KvService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member }
    }

    async fn propose<P: Proposal>(&self, request: P) -> Result<P::Response, Status> {
        self.member.propose(request).await.map_err(|e| to_status(&e))
    }
}

type RangeStream = Pin<Box<dyn Stream<Item = Result<PbRangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl PbKvService for KvService {
    async fn range(&self, request: Request<PbRangeRequest>) -> Result<Response<PbRangeResponse>, Status> {
        let request = request.into_inner();
        validate::range(&request).map_err(|e| to_status(&e))?;
        if !request.serializable {
            self.member.read_barrier().await.map_err(|e| to_status(&e))?;
        }
        let response = self.member.shared().range(&convert::range_request(request));
        let response = response.map_err(|e| to_status(&ServerError::from(e)))?;
        Ok(Response::new(convert::range_response(header(&self.member, response.header_revision), response)))
    }

    type RangeStreamStream = RangeStream;

    async fn range_stream(&self, _request: Request<PbRangeRequest>) -> Result<Response<RangeStream>, Status> {
        Err(to_status(&ServerError::Unimplemented("KV.RangeStream")))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        let request = request.into_inner();
        let r = self.propose(convert::put_request(request)).await?;
        Ok(Response::new(convert::put_response(header(&self.member, r.header_revision), r)))
    }

    async fn delete_range(&self, request: Request<PbDeleteRequest>) -> Result<Response<PbDeleteResponse>, Status> {
        let request = request.into_inner();
        let r = self.propose(convert::delete_request(request)).await?;
        Ok(Response::new(convert::delete_response(header(&self.member, r.header_revision), r)))
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        let request = request.into_inner();
        validate::txn(&request).map_err(|e| to_status(&e))?;
        let r = self.propose(convert::txn_request(request)).await?;
        Ok(Response::new(convert::txn_response(header(&self.member, r.header_revision), r)))
    }

    async fn compact(&self, request: Request<PbCompactionRequest>) -> Result<Response<PbCompactionResponse>, Status> {
        let request = request.into_inner();
        let r = self.propose(CompactRequest { revision: request.revision, physical: request.physical }).await?;
        Ok(Response::new(PbCompactionResponse { header: header(&self.member, r.header_revision) }))
    }
}
