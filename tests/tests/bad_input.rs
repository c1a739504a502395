//! Bad input gets etcd's error, code and text, and changes nothing.

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use keel_tests::{Server, TestCluster};

async fn revision(client: &mut Client) -> i64 {
    client.get("any", None).await.expect("get").header().expect("header").revision()
}

/// The gRPC message of an etcd-client error.
fn message(error: etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_etcds_errors_and_change_nothing() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let mut client = cluster.client().await;
    client.put("k", "v", None).await.expect("put");
    let start = revision(&mut client).await;

    let too_many: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("t{i}"), "v", None)).collect();
    let cases: Vec<(&str, Result<(), etcd_client::Error>, &str)> = vec![
        ("empty key put", client.put("", "v", None).await.map(drop), "etcdserver: key is not provided"),
        ("empty key get", client.get("", None).await.map(drop), "etcdserver: key is not provided"),
        ("empty key delete", client.delete("", None).await.map(drop), "etcdserver: key is not provided"),
        (
            "request over --max-request-bytes",
            client.put("big", vec![b'x'; 1_700_000], None).await.map(drop),
            "etcdserver: request is too large",
        ),
        (
            "compact to a future revision",
            client.compact(start + 100, None).await.map(drop),
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            "read a future revision",
            client.get("k", Some(GetOptions::new().with_revision(start + 100))).await.map(drop),
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            "too many txn ops",
            client.txn(Txn::new().and_then(too_many)).await.map(drop),
            "etcdserver: too many operations in txn request",
        ),
        (
            "duplicate key in txn",
            client.txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)])).await.map(drop),
            "etcdserver: duplicate key given in txn request",
        ),
        (
            "unknown lease",
            client.put("leased", "v", Some(PutOptions::new().with_lease(12345))).await.map(drop),
            "etcdserver: requested lease not found",
        ),
        (
            "compare on empty key",
            client.txn(Txn::new().when([Compare::value("", CompareOp::Equal, "x")])).await.map(drop),
            "etcdserver: key is not provided",
        ),
    ];
    for (what, result, expected) in cases {
        let error = result.expect_err(what);
        assert_eq!(message(error), expected, "{what}");
    }
    assert_eq!(revision(&mut client).await, start, "a rejected request changed the revision");

    // Far over the gRPC limit: refused by the transport, nothing applied.
    let huge = client.put("huge", vec![b'x'; 3 << 20], None).await;
    assert!(huge.is_err(), "a 3 MiB request must be refused");
    assert_eq!(revision(&mut client).await, start);

    // Compaction, then a read below it.
    client.put("k", "v2", None).await.expect("put");
    let current = revision(&mut client).await;
    client.compact(current, None).await.expect("compact");
    let compacted = client.get("k", Some(GetOptions::new().with_revision(current - 1))).await.map(drop);
    assert_eq!(message(compacted.expect_err("compacted")), "etcdserver: mvcc: required revision has been compacted");
    let again = client.compact(current - 1, None).await.map(drop);
    assert_eq!(message(again.expect_err("compacted")), "etcdserver: mvcc: required revision has been compacted");
    assert_eq!(revision(&mut client).await, current);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_are_refused_without_harm() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let mut client = cluster.client().await;
    client.put("k", "v", None).await.expect("put");
    let start = revision(&mut client).await;

    // Raw bytes that are not a protobuf RangeRequest / PutRequest, and an out-of-range enum.
    let channel = tonic::transport::Endpoint::from_shared(cluster.members[0].client_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    for path in ["/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/Txn"] {
        let status = raw_call(channel.clone(), path, vec![0xff, 0xff, 0xff, 0x0f, 0x12]).await.expect_err(path);
        assert_eq!(status.code(), tonic::Code::Internal, "{path}: {status:?}");
    }
    let bad_sort = keel_proto::etcd::PbRangeRequest { key: b"k".to_vec(), sort_order: 99, ..Default::default() };
    let status = raw_call(channel.clone(), "/etcdserverpb.KV/Range", prost::Message::encode_to_vec(&bad_sort))
        .await
        .expect_err("bad sort order");
    assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "etcdserver: invalid sort option"));
    assert_eq!(revision(&mut client).await, start);
}

/// Sends `body` as the raw message of the unary gRPC method `path` and decodes no response.
async fn raw_call(channel: tonic::transport::Channel, path: &'static str, body: Vec<u8>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = RawCodec;
    grpc.unary(tonic::Request::new(body), tonic::codegen::http::uri::PathAndQuery::from_static(path), codec)
        .await
        .map(drop)
}

/// A codec that sends bytes as they are and ignores the response body.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        let remaining = bytes::Buf::remaining(src);
        bytes::Buf::advance(src, remaining);
        Ok(Some(()))
    }
}
