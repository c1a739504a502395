//! Keel's native Store service (`keel.v1.Store`): validate, propose or read through the
//! `store` view, map the error, answer.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_proto::v1 as pb;
use keel_proto::v1::store_server::Store;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::command::{DeleteRangeRequest, KeyValue, LeasedPutRequest, PutRequest, RangeRequest};
use crate::error::ServerError;
use crate::keys::prefix_range_end;
use crate::member::Member;
use crate::store::{self, ExpiryBuckets, Record, Selection, StoreError, Table};

pub struct StoreService {
    member: Arc<Member>,
    buckets: ExpiryBuckets,
}

impl StoreService {
    pub fn new(member: Arc<Member>) -> Self {
        Self { member, buckets: ExpiryBuckets::default() }
    }

    async fn write(&self, request: pb::WriteRequest) -> Result<pb::WriteResponse, ServerError> {
        let table = Table::new(&request.database, &request.table)?;
        let record = request.record.unwrap_or_default();
        store::check_key(&record.key)?;
        if record.value.len() > store::VALUE_BYTES_MAX {
            return Err(StoreError::ValueTooLarge.into());
        }
        let now_ms = store::now_unix_ms();
        let expiry_ms = store::expiry_of(request.ttl_seconds, request.expiry, now_ms)?;
        let key = table.record_key(&record.key);
        let value = store::encode(&record.value, record.metadata.into_iter().collect(), expiry_ms);
        let revision = if expiry_ms == 0 {
            let put = PutRequest { key, value, ..PutRequest::default() };
            self.member.propose(put).await?.header_revision
        } else {
            self.write_expiring(key, value, expiry_ms, now_ms).await?
        };
        Ok(pb::WriteResponse { revision })
    }

    /// A put on the lease of the record's expiry bucket, granted to end no sooner than the
    /// bucket does.
    async fn write_expiring(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        expiry_ms: i64,
        now_ms: i64,
    ) -> Result<i64, ServerError> {
        let bucket_end = ExpiryBuckets::bucket_end(store::ms_to_secs_ceil(expiry_ms));
        let now = now_ms / 1000;
        // At most `store::TTL_MAX_SECS` plus a bucket: within etcd's MaxLeaseTTL.
        let ttl_secs = bucket_end.saturating_sub(now).max(self.member.lease_ttl_min_secs);
        let reuse = self.buckets.lease_for(bucket_end);
        // grant_id 0: the leader chooses the id if a lease is granted.
        let leased_put = LeasedPutRequest { key, value, reuse, grant_id: 0, ttl_secs };
        let response = self.member.propose(leased_put).await?;
        self.buckets.remember(bucket_end, response.lease_id, now);
        Ok(response.header_revision)
    }

    /// The live records of `table` in key order, at a linearizable point (`key` alone, or
    /// every key starting with `from`).
    async fn records(&self, table: &Table, span: Span<'_>) -> Result<(Vec<Record>, i64), ServerError> {
        self.member.read_barrier().await?;
        let request = match span {
            Span::Key(key) => RangeRequest { key: table.record_key(key), ..RangeRequest::default() },
            Span::Prefix(prefix) => {
                let from = table.record_key(prefix);
                RangeRequest { range_end: prefix_range_end(&from), key: from, ..RangeRequest::default() }
            }
        };
        let response = self.member.shared().range(&request)?;
        let now_ms = store::now_unix_ms();
        let records = response.kvs.iter().filter_map(|kv| store::decode(table, kv, now_ms)).collect();
        Ok((records, response.header_revision))
    }

    async fn read(&self, request: pb::ReadRequest) -> Result<pb::ReadResponse, ServerError> {
        let table = Table::new(&request.database, &request.table)?;
        let exact = !request.prefix && !request.suffix;
        if exact {
            store::check_key(&request.key)?;
        }
        let span = if exact {
            Span::Key(&request.key)
        } else if request.prefix {
            Span::Prefix(&request.key)
        } else {
            Span::Prefix("")
        };
        let (records, revision) = self.records(&table, span).await?;
        let selection = Selection {
            prefix: request.prefix.then(|| request.key.clone()),
            suffix: request.suffix.then(|| request.key.clone()),
            descending: request.order == pb::Order::Descending as i32,
            offset: usize::try_from(request.offset).unwrap_or(usize::MAX),
            limit: usize::try_from(request.limit).unwrap_or(usize::MAX),
        };
        let records = selection.apply(records, |record| record.key.as_str());
        if exact && records.is_empty() {
            return Err(StoreError::NotFound.into());
        }
        let now_ms = store::now_unix_ms();
        let records = records
            .into_iter()
            .map(|record| pb::Record {
                ttl_seconds: record.ttl_secs(now_ms),
                expiry: record.expiry_secs(),
                key: record.key,
                value: record.value,
                metadata: record.metadata.into_iter().collect(),
            })
            .collect();
        Ok(pb::ReadResponse { records, revision })
    }

    async fn delete(&self, request: pb::DeleteRequest) -> Result<pb::DeleteResponse, ServerError> {
        let table = Table::new(&request.database, &request.table)?;
        store::check_key(&request.key)?;
        let delete = DeleteRangeRequest { key: table.record_key(&request.key), ..DeleteRangeRequest::default() };
        let response = self.member.propose(delete).await?;
        Ok(pb::DeleteResponse { revision: response.header_revision })
    }

    async fn list(&self, request: pb::ListRequest) -> Result<Vec<String>, ServerError> {
        let table = Table::new(&request.database, &request.table)?;
        let (records, _) = self.records(&table, Span::Prefix(&request.prefix)).await?;
        let selection = Selection {
            prefix: None,
            suffix: (!request.suffix.is_empty()).then(|| request.suffix.clone()),
            descending: request.order == pb::Order::Descending as i32,
            offset: usize::try_from(request.offset).unwrap_or(usize::MAX),
            limit: usize::try_from(request.limit).unwrap_or(usize::MAX),
        };
        Ok(selection.apply(records, |record| record.key.as_str()).into_iter().map(|record| record.key).collect())
    }

    /// The live records under `prefix`, at a linearizable point (for the names of databases
    /// and tables: one whose records all expired is gone, even before their lease fires).
    async fn live_under(&self, prefix: Vec<u8>) -> Result<Vec<KeyValue>, ServerError> {
        self.member.read_barrier().await?;
        let request = RangeRequest { range_end: prefix_range_end(&prefix), key: prefix, ..RangeRequest::default() };
        let mut kvs = self.member.shared().range(&request)?.kvs;
        let now_ms = store::now_unix_ms();
        kvs.retain(|kv| store::is_live(kv, now_ms));
        Ok(kvs)
    }
}

#[derive(Clone, Copy)]
enum Span<'a> {
    Key(&'a str),
    Prefix(&'a str),
}

fn status(error: ServerError) -> Status {
    to_status(&error)
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for StoreService {
    async fn read(&self, request: Request<pb::ReadRequest>) -> Result<Response<pb::ReadResponse>, Status> {
        self.read(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn write(&self, request: Request<pb::WriteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        self.write(request.into_inner()).await.map(Response::new).map_err(status)
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        self.delete(request.into_inner()).await.map(Response::new).map_err(status)
    }

    type ListStream = ListStream;

    async fn list(&self, request: Request<pb::ListRequest>) -> Result<Response<ListStream>, Status> {
        let keys = self.list(request.into_inner()).await.map_err(status)?;
        let pages: Vec<Result<pb::ListResponse, Status>> = if keys.is_empty() {
            vec![Ok(pb::ListResponse { keys: Vec::new() })]
        } else {
            keys.chunks(store::LIST_PAGE_KEYS).map(|page| Ok(pb::ListResponse { keys: page.to_vec() })).collect()
        };
        Ok(Response::new(Box::pin(futures::stream::iter(pages))))
    }

    async fn databases(
        &self,
        _request: Request<pb::DatabasesRequest>,
    ) -> Result<Response<pb::DatabasesResponse>, Status> {
        let kvs = self.live_under(store::PREFIX.as_bytes().to_vec()).await.map_err(status)?;
        Ok(Response::new(pb::DatabasesResponse { databases: store::segments(&kvs, 0) }))
    }

    async fn tables(&self, request: Request<pb::TablesRequest>) -> Result<Response<pb::TablesResponse>, Status> {
        let database = request.into_inner().database;
        let table = Table::new(&database, "").map_err(|e| status(e.into()))?;
        let prefix = format!("{}{}/", store::PREFIX, table.database).into_bytes();
        let kvs = self.live_under(prefix).await.map_err(status)?;
        Ok(Response::new(pb::TablesResponse { tables: store::segments(&kvs, 1) }))
    }
}
