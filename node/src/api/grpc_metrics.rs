//! go-grpc-prometheus's server metrics for every client call, as etcd exports them:
//! `grpc_server_started_total` when a call arrives, `grpc_server_handled_total` (with the
//! call's final code) and `grpc_server_handling_seconds` when its response ends, and the bytes
//! each way (`etcd_network_client_grpc_{received,sent}_bytes_total`). etcd's alerting rules
//! read the failed codes and the slow calls from these; its dashboard counts active watch and
//! lease streams as started minus handled.
//!
//! One middleware, outermost on the client router, so it sees the status a client sees (after
//! `transport_status` has rewritten tonic's into etcd's). A call ends when its response body
//! is done: the code is the one in the trailers, or in the headers of a trailers-only answer;
//! a body dropped before either (the client went away) counts as `Canceled`, as grpc-go does.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tonic::codegen::http::HeaderMap;
use tonic::Code;

use crate::telemetry::{telemetry, GrpcCall};

/// Calls whose messages stream; every other method of the client API is unary.
const STREAMING: [(&str, &str, &str); 8] = [
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("v3electionpb.Election", "Observe", "server_stream"),
    ("keel.v1.Events", "Consume", "bidi_stream"),
    ("keel.v1.Registry", "Watch", "server_stream"),
    ("keel.v1.Config", "Watch", "server_stream"),
    ("keel.v1.Store", "List", "server_stream"),
];

/// The middleware: counts the call and wraps both bodies to count bytes and see its end.
pub async fn count_grpc_calls(request: Request, next: Next) -> Response {
    let Some((service, method)) = grpc_method(&request) else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let request = request.map(|inner| Body::new(CountedBody { inner, end: None }));
    let response = next.run(request).await;
    let code = header_code(response.headers());
    // A service or method that does not exist is answered Unimplemented at once: its names
    // are the client's choice and must not become label values (they would grow without
    // bound), so all such calls count under one.
    let call = match code {
        Some(Code::Unimplemented) => OwnedCall::unknown(),
        _ => OwnedCall { kind: call_kind(&service, &method), service, method },
    };
    telemetry().grpc_started(call.labels());
    let end = CallEnd { call, started, code, recorded: false };
    response.map(|inner| Body::new(CountedBody { inner, end: Some(end) }))
}

/// `(service, method)` of a gRPC request: a POST to `/package.Service/Method` with a gRPC
/// content type. Anything else (`/metrics`, `/health`) is not counted.
fn grpc_method(request: &Request) -> Option<(String, String)> {
    let is_grpc =
        request.headers().get("content-type").is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    if !is_grpc {
        return None;
    }
    let (service, method) = request.uri().path().strip_prefix('/')?.split_once('/')?;
    let is_name = |part: &str, extra: u8| {
        (1..=NAME_MAX).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == extra)
    };
    if !(is_name(service, b'.') && is_name(method, b'_')) {
        let unknown = OwnedCall::unknown();
        return Some((unknown.service, unknown.method));
    }
    Some((service.to_string(), method.to_string()))
}

/// The longest service or method name counted under its own name.
const NAME_MAX: usize = 64;

fn call_kind(service: &str, method: &str) -> &'static str {
    STREAMING.iter().find(|(s, m, _)| *s == service && *m == method).map_or("unary", |(_, _, kind)| kind)
}

/// The status code in `headers` (a trailers-only answer, or the trailers), by Go's name.
fn header_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

/// grpc-go's `codes.Code.String()`, which go-grpc-prometheus puts in `grpc_code`.
fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

struct OwnedCall {
    kind: &'static str,
    service: String,
    method: String,
}

impl OwnedCall {
    fn unknown() -> Self {
        OwnedCall { kind: "unary", service: "unknown".to_string(), method: "unknown".to_string() }
    }

    fn labels(&self) -> GrpcCall<'_> {
        GrpcCall { kind: self.kind, service: &self.service, method: &self.method }
    }
}

/// Records the end of a call once: when its trailers pass, or when its body is dropped.
struct CallEnd {
    call: OwnedCall,
    started: Instant,
    code: Option<Code>,
    recorded: bool,
}

impl CallEnd {
    fn record(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let code = go_code_name(self.code.unwrap_or(Code::Cancelled));
        telemetry().grpc_handled(self.call.labels(), code, self.started.elapsed());
    }
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        self.record();
    }
}

/// A request body (`end: None`: bytes received) or a response body (bytes sent, and the
/// call's end).
struct CountedBody {
    inner: Body,
    end: Option<CallEnd>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    match self.end {
                        None => telemetry().client_received(data.len()),
                        Some(_) => telemetry().client_sent(data.len()),
                    }
                }
                if let (Some(trailers), Some(end)) = (frame.trailers_ref(), self.end.as_mut()) {
                    end.code = header_code(trailers).or(end.code);
                    end.record();
                }
            }
            // The body ended: a trailers-only answer carried its code in the headers.
            None => {
                if let Some(end) = self.end.as_mut() {
                    end.record();
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Fuzz target `client_grpc_call_labels`: a request path and a `grpc-status` value from a
/// client's bytes (split at the first NUL) become labels that are always bounded.
pub fn fuzz_call_labels(data: &[u8]) {
    let (path, status) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at.saturating_add(1)..]),
        None => (data, &[][..]),
    };
    let Ok(uri) = axum::http::Uri::try_from(path) else { return };
    let Ok(request) =
        axum::http::Request::builder().uri(uri).header("content-type", "application/grpc").body(Body::empty())
    else {
        return;
    };
    if let Some((service, method)) = grpc_method(&request) {
        let _ = call_kind(&service, &method);
        assert!(service.len() <= NAME_MAX.max(7) && method.len() <= NAME_MAX.max(7), "unbounded label");
    }
    let mut headers = HeaderMap::new();
    if let Ok(value) = axum::http::HeaderValue::from_bytes(status) {
        headers.insert("grpc-status", value);
    }
    let _ = header_code(&headers).map(go_code_name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_calls_are_told_from_unary_ones() {
        assert_eq!(call_kind("etcdserverpb.Watch", "Watch"), "bidi_stream");
        assert_eq!(call_kind("etcdserverpb.Maintenance", "Snapshot"), "server_stream");
        assert_eq!(call_kind("keel.v1.Store", "List"), "server_stream");
        assert_eq!(call_kind("etcdserverpb.KV", "Put"), "unary");
    }

    #[test]
    fn codes_are_named_as_grpc_go_names_them() {
        assert_eq!(go_code_name(Code::Cancelled), "Canceled");
        assert_eq!(go_code_name(Code::Ok), "OK");
        assert_eq!(go_code_name(Code::Unavailable), "Unavailable");
    }

    #[test]
    fn labels_from_strangers_paths_stay_bounded() {
        let request = |path: &str| {
            axum::http::Request::builder()
                .uri(path)
                .header("content-type", "application/grpc")
                .body(Body::empty())
                .expect("request")
        };
        assert_eq!(
            grpc_method(&request("/etcdserverpb.KV/Range")),
            Some(("etcdserverpb.KV".to_string(), "Range".to_string()))
        );
        let unknown = Some(("unknown".to_string(), "unknown".to_string()));
        assert_eq!(grpc_method(&request("/a/b/c")), unknown);
        assert_eq!(grpc_method(&request("/etcdserverpb.KV/%20")), unknown);
        assert_eq!(grpc_method(&request(&format!("/etcdserverpb.{}/X", "a".repeat(500)))), unknown);
        let not_grpc = axum::http::Request::builder().uri("/metrics").body(Body::empty()).expect("request");
        assert_eq!(grpc_method(&not_grpc), None);
    }
}
