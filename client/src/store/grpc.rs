//! [`GrpcStore`]: the store of a Keel cluster, over its `keel.v1.Store` gRPC API, with failover
//! between members (see [`crate::cluster`]). The cluster checks every request: this side only
//! converts, so its rules live in one place.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keel_proto::v1 as pb;
use keel_proto::v1::store_client::StoreClient;

use super::{
    expiry_unix_seconds, ttl_seconds, unix_time, DeleteOptions, ListOptions, Order, ReadOptions, Record, Store,
    WriteOptions,
};
use crate::cluster::Cluster;
use crate::connect::ConnectOptions;
use crate::error::Result;

/// A [`Store`] backed by a Keel cluster. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct GrpcStore {
    cluster: Arc<Cluster>,
}

impl GrpcStore {
    /// Prepares connections to the cluster's members, e.g. `["http://127.0.0.1:2379"]` (a URL
    /// without a scheme gets `http://`). Nothing is contacted yet: the first request connects.
    /// Fails only on a malformed endpoint list.
    pub async fn connect(endpoints: &[String]) -> Result<GrpcStore> {
        Self::connect_with(endpoints, &ConnectOptions::default()).await
    }

    /// As [`Self::connect`], with TLS for `https://` endpoints.
    pub async fn connect_with(endpoints: &[String], options: &ConnectOptions) -> Result<GrpcStore> {
        Ok(GrpcStore { cluster: Arc::new(Cluster::new(endpoints, options)?) })
    }
}

#[async_trait]
impl Store for GrpcStore {
    async fn read(&self, key: &str, options: ReadOptions) -> Result<Vec<Record>> {
        let request = pb::ReadRequest {
            database: options.database,
            table: options.table,
            key: key.to_string(),
            prefix: options.prefix,
            suffix: options.suffix,
            limit: options.limit.unwrap_or(0),
            offset: options.offset,
            order: order(options.order) as i32,
        };
        let response = self
            .cluster
            .call("read from the store", |channel| {
                let request = request.clone();
                async move { StoreClient::new(channel).read(request).await }
            })
            .await?;
        Ok(response.into_inner().records.into_iter().map(record).collect())
    }

    async fn write(&self, record: &Record, options: WriteOptions) -> Result<()> {
        let request = pb::WriteRequest {
            database: options.database,
            table: options.table,
            record: Some(pb::Record {
                key: record.key.clone(),
                value: record.value.clone(),
                metadata: record.metadata.clone().into_iter().collect(),
                ttl_seconds: 0,
                expiry: 0,
            }),
            ttl_seconds: options.ttl.map(ttl_seconds),
            expiry: options.expiry.map(expiry_unix_seconds),
        };
        self.cluster
            .call("write to the store", |channel| {
                let request = request.clone();
                async move { StoreClient::new(channel).write(request).await }
            })
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str, options: DeleteOptions) -> Result<()> {
        let request = pb::DeleteRequest { database: options.database, table: options.table, key: key.to_string() };
        self.cluster
            .call("delete from the store", |channel| {
                let request = request.clone();
                async move { StoreClient::new(channel).delete(request).await }
            })
            .await?;
        Ok(())
    }

    async fn list(&self, options: ListOptions) -> Result<Vec<String>> {
        let request = pb::ListRequest {
            database: options.database,
            table: options.table,
            prefix: options.prefix.unwrap_or_default(),
            suffix: options.suffix.unwrap_or_default(),
            limit: options.limit.unwrap_or(0),
            offset: options.offset,
            order: order(options.order) as i32,
        };
        // The whole stream inside one call: a stream broken halfway is asked again, in full,
        // of the next member, so no page is lost or repeated.
        self.cluster
            .call("list the store", |channel| {
                let request = request.clone();
                async move {
                    let mut pages = StoreClient::new(channel).list(request).await?.into_inner();
                    let mut keys = Vec::new();
                    while let Some(page) = pages.message().await? {
                        keys.extend(page.keys);
                    }
                    Ok(keys)
                }
            })
            .await
    }

    async fn databases(&self) -> Result<Vec<String>> {
        let response = self
            .cluster
            .call("list the store's databases", |channel| async move {
                StoreClient::new(channel).databases(pb::DatabasesRequest {}).await
            })
            .await?;
        Ok(response.into_inner().databases)
    }

    async fn tables(&self, database: &str) -> Result<Vec<String>> {
        let request = pb::TablesRequest { database: database.to_string() };
        let response = self
            .cluster
            .call("list the store's tables", |channel| {
                let request = request.clone();
                async move { StoreClient::new(channel).tables(request).await }
            })
            .await?;
        Ok(response.into_inner().tables)
    }
}

fn order(order: Order) -> pb::Order {
    match order {
        Order::Ascending => pb::Order::Ascending,
        Order::Descending => pb::Order::Descending,
    }
}

fn record(record: pb::Record) -> Record {
    let ttl = u64::try_from(record.ttl_seconds).ok().filter(|seconds| *seconds > 0).map(Duration::from_secs);
    Record {
        key: record.key,
        value: record.value,
        metadata: record.metadata.into_iter().collect(),
        ttl,
        expiry: unix_time(record.expiry),
    }
}
