//! etcd's answers to the messages the gRPC layer itself refuses, before any handler sees them:
//! a body that is not protobuf, one nested past prost's recursion limit, one over the size
//! limit. tonic answers these with its own codes and texts; grpc-go (etcd 3.4) answers
//! INTERNAL "grpc: error unmarshalling request: proto: ..." (a stream's message: "grpc: failed
//! to unmarshal the received message proto: ...") and RESOURCE_EXHAUSTED "grpc: received
//! message larger than max (N vs. M)". A Txn nested past prost's limit (50 levels) gets etcd's
//! "etcdserver: too many operations in txn request", which etcd gives from 129 levels on (each
//! level spends its 128-op budget); between the two, etcd accepts what Keel refuses.
//!
//! One middleware around the client router rewrites the status wherever it is carried: in
//! the headers of a trailers-only answer (a unary request, or a stream refused at its start)
//! or in the trailers that end a stream. It recognises tonic's statuses by their text, so a
//! tonic upgrade that changes them shows up in `tests/tests/hostile/transport.rs`, which
//! compares Keel's answers with etcd's. It never touches a status a handler made, nor any
//! other response.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tonic::codegen::http::HeaderMap;
use tonic::{Code, Status};

use super::status::to_status;
use crate::error::ServerError;

/// tonic-prost's text for a message prost could not decode, before prost's own words.
const DECODE_FAILED: &str = "failed to decode Protobuf message: ";
/// tonic's text for a message over `max_decoding_message_size`: "...found N bytes, the limit
/// is: M bytes".
const TOO_LARGE: &str = "Error, decoded message length too large: found ";
const TOO_LARGE_LIMIT: &str = " bytes, the limit is: ";
/// prost's description when a message nests deeper than its recursion limit (100).
const RECURSION_LIMIT: &str = "recursion limit reached";
/// The only request of etcd's API that nests: a Txn holding Txns.
const TXN_PATH: &str = "/etcdserverpb.KV/Txn";

/// Where a status was found, which decides grpc-go's wording.
#[derive(Clone, Copy)]
enum Carrier {
    /// The headers of a trailers-only answer: the request (a unary call's only message).
    Headers,
    /// The trailers after a response began: a message received on a stream.
    Trailers,
}

/// The middleware: rewrites tonic's statuses for refused messages into etcd's.
pub async fn etcd_transport_errors(request: Request, next: Next) -> Response {
    let is_txn = request.uri().path() == TXN_PATH;
    let mut response = next.run(request).await;
    if !is_grpc(response.headers()) {
        return response;
    }
    rewrite(response.headers_mut(), Carrier::Headers, is_txn);
    response.map(|inner| Body::new(EtcdTrailers { inner, is_txn }))
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get("content-type").is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// Replaces the status in `headers` with etcd's, if it is one of tonic's for a refused
/// message; leaves everything else alone.
fn rewrite(headers: &mut HeaderMap, carrier: Carrier, is_txn: bool) {
    // Fast path: most answers carry no status here, or OK.
    match headers.get("grpc-status") {
        None => return,
        Some(code) if code.as_bytes() == b"0" => return,
        Some(_) => {}
    }
    let Some(status) = Status::from_header_map(headers) else { return };
    let Some(etcd) = etcd_status(&status, carrier, is_txn) else { return };
    if let Err(e) = etcd.add_header(headers) {
        tracing::debug!("cannot write etcd's status {etcd:?}: {e}");
    }
}

/// etcd's status for one of tonic's, or `None` when the status is not a refused message.
fn etcd_status(status: &Status, carrier: Carrier, is_txn: bool) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::OutOfRange => {
            let (found, rest) = message.strip_prefix(TOO_LARGE)?.split_once(TOO_LARGE_LIMIT)?;
            let limit = rest.strip_suffix(" bytes")?;
            Some(Status::resource_exhausted(format!("grpc: received message larger than max ({found} vs. {limit})")))
        }
        Code::Internal => {
            let description = without_field_path(message.strip_prefix(DECODE_FAILED)?);
            if is_txn && description == RECURSION_LIMIT {
                return Some(to_status(&ServerError::TooManyTxnOps));
            }
            let context = match carrier {
                Carrier::Headers => "grpc: error unmarshalling request: ",
                Carrier::Trailers => "grpc: failed to unmarshal the received message ",
            };
            Some(Status::internal(format!("{context}proto: {description}")))
        }
        _ => None,
    }
}

/// prost's description without the path of fields it was decoding ("TxnRequest.success:
/// RequestOp.request: ..."), which can be a hundred levels long.
fn without_field_path(mut detail: &str) -> &str {
    while let Some((segment, rest)) = detail.split_once(": ") {
        let is_field =
            segment.split_once('.').is_some_and(|(message, field)| is_identifier(message) && is_identifier(field));
        if !is_field {
            break;
        }
        detail = rest;
    }
    detail
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A response body whose trailers get etcd's status.
struct EtcdTrailers {
    inner: Body,
    is_txn: bool,
}

impl http_body::Body for EtcdTrailers {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let is_txn = self.is_txn;
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(polled.map(|result| {
            result.map(|mut frame| {
                if let Some(trailers) = frame.trailers_mut() {
                    rewrite(trailers, Carrier::Trailers, is_txn);
                }
                frame
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_messages_get_etcds_statuses() {
        let cases = [
            (
                Status::out_of_range(
                    "Error, decoded message length too large: found 3145733 bytes, the limit is: 2097152 bytes",
                ),
                Carrier::Headers,
                false,
                Some((Code::ResourceExhausted, "grpc: received message larger than max (3145733 vs. 2097152)")),
            ),
            (
                Status::internal("failed to decode Protobuf message: invalid wire type value: 7"),
                Carrier::Headers,
                false,
                Some((Code::Internal, "grpc: error unmarshalling request: proto: invalid wire type value: 7")),
            ),
            (
                Status::internal(
                    "failed to decode Protobuf message: WatchRequest.create_request: invalid wire type value: 7",
                ),
                Carrier::Trailers,
                false,
                Some((
                    Code::Internal,
                    "grpc: failed to unmarshal the received message proto: invalid wire type value: 7",
                )),
            ),
            (
                Status::internal(
                    "failed to decode Protobuf message: TxnRequest.success: RequestOp.request: recursion limit reached",
                ),
                Carrier::Headers,
                true,
                Some((Code::InvalidArgument, "etcdserver: too many operations in txn request")),
            ),
            (
                Status::internal("failed to decode Protobuf message: A.b: recursion limit reached"),
                Carrier::Headers,
                false,
                Some((Code::Internal, "grpc: error unmarshalling request: proto: recursion limit reached")),
            ),
            // A handler's own statuses stay as they are.
            (Status::internal("keel: something else"), Carrier::Headers, false, None),
            (
                Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
                Carrier::Headers,
                false,
                None,
            ),
            (Status::invalid_argument("failed to decode Protobuf message: x"), Carrier::Headers, false, None),
        ];
        for (status, carrier, is_txn, expected) in cases {
            let etcd = etcd_status(&status, carrier, is_txn);
            let got = etcd.as_ref().map(|s| (s.code(), s.message()));
            assert_eq!(got, expected, "{status:?}");
        }
    }

    #[test]
    fn the_status_is_rewritten_in_place_in_headers() {
        let mut headers = HeaderMap::new();
        Status::internal("failed to decode Protobuf message: invalid wire type value: 7")
            .add_header(&mut headers)
            .expect("valid header");
        rewrite(&mut headers, Carrier::Headers, false);
        let status = Status::from_header_map(&headers).expect("a status");
        assert_eq!(status.message(), "grpc: error unmarshalling request: proto: invalid wire type value: 7");
        let mut ok = HeaderMap::new();
        ok.insert("grpc-status", "0".parse().expect("valid"));
        rewrite(&mut ok, Carrier::Trailers, false);
        assert_eq!(ok.len(), 1);
    }
}
