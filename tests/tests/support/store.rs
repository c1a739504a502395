//! What the Store test files share: clients, calls and clocks.

// Each test file uses part of this.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_proto::v1::store_client::StoreClient;
use keel_proto::v1::{ListRequest, ReadRequest, Record, WriteRequest};
use keel_tests::{grpc_channel, retry_unavailable, TestCluster, CALL_TIMEOUT};
use tonic::transport::Channel;

/// Where every store record lives in the etcd keyspace.
pub const PREFIX: &str = "/micro/store/";

/// The largest record value the store accepts (1 MiB).
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

/// How much longer than its record a lease may live: records that expire within a few
/// seconds of each other share one lease, which ends when the last of them expires.
pub const LEASE_SHARING_SECS_MAX: i64 = 12;

pub async fn store(cluster: &TestCluster, i: usize) -> StoreClient<Channel> {
    StoreClient::new(grpc_channel(&cluster.members[i].client_url).await)
}

/// A write of `key` = `value` into `database`/`table` ("" = "micro"), no TTL.
pub fn write_request(database: &str, table: &str, key: &str, value: &[u8]) -> WriteRequest {
    let record = Record { key: key.into(), value: value.to_vec(), ..Default::default() };
    WriteRequest { database: database.into(), table: table.into(), record: Some(record), ..Default::default() }
}

pub async fn write(client: &StoreClient<Channel>, request: WriteRequest) -> i64 {
    let key = request.record.as_ref().map(|r| r.key.clone()).unwrap_or_default();
    let written = retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.write(request).await }
    });
    written.await.unwrap_or_else(|status| panic!("write {key}: {status:?}")).revision
}

pub async fn try_read(client: &StoreClient<Channel>, request: ReadRequest) -> Result<Vec<Record>, tonic::Status> {
    let read = retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.read(request).await }
    });
    read.await.map(|response| response.records)
}

/// The one record at `key` in the default database and table, or `None` when NOT_FOUND.
pub async fn read_one(client: &StoreClient<Channel>, key: &str) -> Option<Record> {
    let request = ReadRequest { key: key.into(), ..Default::default() };
    match try_read(client, request).await {
        Ok(records) => {
            assert_eq!(records.len(), 1, "a key read returns one record: {records:?}");
            assert_eq!(records[0].key, key);
            Some(records[0].clone())
        }
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::NotFound, "read {key}: {status:?}");
            assert_eq!(status.message(), "store: not found", "read {key}: {status:?}");
            None
        }
    }
}

/// The keys of a read, in the order returned; NOT_FOUND (no match) is an empty list.
pub async fn read_keys(client: &StoreClient<Channel>, request: ReadRequest) -> Vec<String> {
    match try_read(client, request.clone()).await {
        Ok(records) => records.into_iter().map(|r| r.key).collect(),
        Err(status) if status.code() == tonic::Code::NotFound => Vec::new(),
        Err(status) => panic!("read {request:?}: {status:?}"),
    }
}

/// Every key a List streams, in order, across all its pages.
pub async fn list_keys(client: &StoreClient<Channel>, request: ListRequest) -> Vec<String> {
    let listed = retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.list(request).await }
    });
    let mut stream = listed.await.unwrap_or_else(|status| panic!("list {request:?}: {status:?}"));
    let mut keys = Vec::new();
    while let Some(page) = tokio::time::timeout(CALL_TIMEOUT, stream.message())
        .await
        .expect("a list page in time")
        .unwrap_or_else(|status| panic!("list {request:?}: {status:?}"))
    {
        keys.extend(page.keys);
    }
    keys
}

/// Unix time now, in seconds with a fraction.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// Sleeps until the Unix time `at` (seconds). Elapsed time is the point of the TTL tests.
pub async fn sleep_until_unix(at: f64) {
    let left = at - unix_now();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left)).await;
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
