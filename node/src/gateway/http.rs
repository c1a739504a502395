//! The gateway's HTTP side: one handler for every path. It resolves the path, reads the body
//! within its limits, transcodes JSON to the method's request message, calls a node and
//! answers with the response as JSON (or passes the request to a `handler=http` service as it
//! is, `reverse.rs`), or with micro's error JSON
//! (`{"id","code","detail","status"}`) and the HTTP status grpc-gateway would give.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Request, StatusCode};
use prost_reflect::{DeserializeOptions, DynamicMessage, MethodDescriptor, SerializeOptions};

use super::directory::Instance;
use super::route::{self, Handler, RequestLine, Target};
use super::{grpc, identity, limits, reverse, schema, streaming, Gateway};

/// The header that names the namespace a path resolves in (micro's).
pub const NAMESPACE_HEADER: &str = "micro-namespace";

/// Every path, every method.
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request<Body>) -> Response {
    let Ok(_permit) = gateway.in_flight.try_acquire() else {
        let detail = format!("the gateway is serving {} requests already", super::REQUESTS_IN_FLIGHT_MAX);
        return Failure::new(StatusCode::SERVICE_UNAVAILABLE, detail).into_response();
    };
    match serve(&gateway, request).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

/// A request the gateway answers itself, with micro's error JSON.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub detail: String,
    /// Sent as `Retry-After`.
    pub retry_after_secs: Option<u64>,
}

impl Failure {
    pub(super) fn new(status: StatusCode, detail: impl Into<String>) -> Failure {
        Failure { status, detail: detail.into(), retry_after_secs: None }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "id": "keel.gateway",
            "code": self.status.as_u16(),
            "detail": self.detail,
            "status": self.status.canonical_reason().unwrap_or(""),
        });
        let mut response =
            (self.status, [(http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

async fn serve(gateway: &Gateway, request: Request<Body>) -> Result<Response, Failure> {
    let (parts, body) = request.into_parts();
    if !gateway.directory.is_synced() {
        let detail = "the gateway has not read the registry yet (is the cluster reachable?)";
        return Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, detail));
    }
    let snapshot = gateway.directory.snapshot();
    let target = resolve(gateway, &parts, &snapshot.routes)?;
    // Before anything about the service is told: a stranger learns nothing from a 404.
    let account = match &gateway.identity {
        Some(identity) => identity.check(&parts.headers, &target.service, &target.endpoint).await.map_err(refused)?,
        None => None,
    };
    let client_ip = client_address(&parts);
    let caller = limits::caller_key(account.as_deref(), &client_ip);
    gateway.limits.check(&target.service, &target.endpoint, &caller).map_err(|over| Failure {
        retry_after_secs: Some(over.retry_after_secs()),
        ..Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} {}: over the rate limit", target.service, target.endpoint),
        )
    })?;
    let instances = snapshot.instances(&target.service);
    if instances.is_empty() {
        return Err(Failure::new(StatusCode::NOT_FOUND, format!("service {} not found", target.service)));
    }
    let tried = gateway.selector.order(&target.service, instances, Instant::now());
    if tried.is_empty() {
        let detail = format!("service {}: no healthy node (every node was unreachable just now)", target.service);
        return Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, detail));
    }
    if target.handler == Handler::Http {
        let body = read_body(gateway, body).await?;
        let request = reverse::Forward { parts: &parts, body, account: account.as_deref(), client_ip: &client_ip };
        return reverse::forward(gateway, &target.service, &tried, request).await;
    }
    let (method, reachable) = gateway.method(&target, &tried).await?;
    let body = read_body(gateway, body).await?;
    let metadata = forwarded_metadata(&parts.headers, account.as_deref());
    let timeout = gateway.options.request_timeout;
    if method.is_client_streaming() || method.is_server_streaming() {
        let requests = streaming::requests_from_json(&method, &body)?;
        let answers = first_reachable(gateway, &target.service, reachable, |channel| {
            grpc::call_streaming(channel, &method, requests.clone(), metadata.clone(), timeout)
        })
        .await?;
        return streaming::answer(&method, answers).await;
    }
    let message = from_json(&method, &body)?;
    let answer = first_reachable(gateway, &target.service, reachable, |channel| {
        grpc::call_unary(channel, &method, message.clone(), metadata.clone(), timeout)
    })
    .await?;
    to_json(&answer)
}

/// `call`'s result on the first of `nodes` that could be reached; nodes that could not are
/// ejected. Only calls that certainly never reached a node are tried again elsewhere.
async fn first_reachable<T, F, Fut>(gateway: &Gateway, service: &str, nodes: &[Instance], call: F) -> Result<T, Failure>
where
    F: Fn(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut last_failure = String::new();
    for instance in nodes {
        let channel = gateway.channels.get(&instance.address).map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, e))?;
        match call(channel).await {
            Ok(answer) => return Ok(answer),
            Err(status) if grpc::never_reached(&status) => {
                gateway.selector.eject(&instance.address, Instant::now());
                last_failure = status.message().to_string();
            }
            Err(status) => return Err(service_failure(&status)),
        }
    }
    Err(unreachable(service, &last_failure))
}

/// A service's gRPC error as micro's error JSON, with the service's `retry-after` if it sent one.
pub(super) fn service_failure(status: &tonic::Status) -> Failure {
    let retry_after = status.metadata().get(keel_client::limiter::RETRY_AFTER);
    Failure {
        retry_after_secs: retry_after.and_then(|v| v.to_str().ok()?.parse().ok()),
        ..Failure::new(grpc::http_status(status.code()), status.message())
    }
}

pub(super) fn unreachable(service: &str, reason: &str) -> Failure {
    Failure::new(StatusCode::SERVICE_UNAVAILABLE, format!("service {service}: no node could be reached ({reason})"))
}

fn resolve(gateway: &Gateway, parts: &http::request::Parts, routes: &[route::Route]) -> Result<Target, Failure> {
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let host = header(http::header::HOST.as_str()).or(parts.uri.host()).unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(name, _)| name).to_ascii_lowercase();
    let namespace = header(NAMESPACE_HEADER).unwrap_or(&gateway.options.namespace);
    let line = RequestLine { method: parts.method.as_str(), path: parts.uri.path(), host: &host, namespace };
    route::resolve(routes, &line).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// The body, refused past `max_body_bytes` (413) or when it does not arrive in time (408).
async fn read_body(gateway: &Gateway, body: Body) -> Result<bytes::Bytes, Failure> {
    use http_body_util::BodyExt;
    let limit = gateway.options.max_body_bytes;
    let mut read = std::pin::pin!(http_body_util::Limited::new(body, limit).collect());
    // A small body has usually arrived with the head: no timer for it.
    let read = match futures::poll!(read.as_mut()) {
        std::task::Poll::Ready(read) => Ok(read),
        std::task::Poll::Pending => tokio::time::timeout(gateway.options.body_timeout, read).await,
    };
    match read {
        Err(_) => {
            let detail = format!("the request body did not arrive within {:?}", gateway.options.body_timeout);
            Err(Failure::new(StatusCode::REQUEST_TIMEOUT, detail))
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Failure::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {limit} bytes")))
        }
        Ok(Err(error)) => Err(Failure::new(StatusCode::BAD_REQUEST, format!("cannot read the request body: {error}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The request message from JSON; an empty body is the empty message, as in micro.
pub(super) fn from_json(method: &MethodDescriptor, body: &[u8]) -> Result<DynamicMessage, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(method.input()));
    }
    let bad = |e: serde_json::Error| {
        Failure::new(StatusCode::BAD_REQUEST, format!("the body is not a {} in JSON: {e}", method.input().full_name()))
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let message = DynamicMessage::deserialize_with_options(method.input(), &mut json, &options).map_err(bad)?;
    json.end().map_err(bad)?;
    Ok(message)
}

/// The answer as JSON with the proto field names and without default values, as micro's
/// jsonpb marshaler writes it.
pub(super) fn to_json(answer: &DynamicMessage) -> Result<Response, Failure> {
    let headers = [(http::header::CONTENT_TYPE, "application/json")];
    Ok((StatusCode::OK, headers, json_bytes(answer)?).into_response())
}

/// `message` as micro's JSON.
pub(super) fn json_bytes(message: &DynamicMessage) -> Result<Vec<u8>, Failure> {
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut json = serde_json::Serializer::new(Vec::new());
    message.serialize_with_options(&mut json, &options).map_err(|e| {
        Failure::new(StatusCode::BAD_GATEWAY, format!("the service's answer cannot be written as JSON: {e}"))
    })?;
    Ok(json.into_inner())
}

/// The headers passed on to the service as gRPC metadata: the caller's credentials, micro's
/// and custom (`x-`) headers, and the account the gateway checked (never the caller's own
/// claim of one); not hop-by-hop or HTTP framing headers.
fn forwarded_metadata(headers: &HeaderMap, account: Option<&str>) -> tonic::metadata::MetadataMap {
    let mut forwarded = HeaderMap::new();
    for (name, value) in headers {
        let name_str = name.as_str();
        let passed = name_str == "authorization" || name_str.starts_with("micro-") || name_str.starts_with("x-");
        if passed && name_str != identity::ACCOUNT_HEADER {
            forwarded.append(name.clone(), value.clone());
        }
    }
    if let Some(value) = account.and_then(|id| http::HeaderValue::from_str(id).ok()) {
        forwarded.insert(identity::ACCOUNT_HEADER, value);
    }
    tonic::metadata::MetadataMap::from_headers(forwarded)
}

/// The client's IP address, a caller's rate-limit key when it has no account.
pub(super) fn client_address(parts: &http::request::Parts) -> String {
    let connected = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
    connected.map(|info| info.0.ip().to_string()).unwrap_or_default()
}

fn refused(refusal: identity::Refusal) -> Failure {
    match refusal {
        identity::Refusal::Unauthenticated(detail) => Failure::new(StatusCode::UNAUTHORIZED, detail),
        identity::Refusal::Forbidden(detail) => Failure::new(StatusCode::FORBIDDEN, detail),
        identity::Refusal::Unavailable(detail) => Failure::new(StatusCode::SERVICE_UNAVAILABLE, detail),
    }
}

impl Gateway {
    /// The gRPC method `target` names, from the service's schema (reflected the first time,
    /// then cached), and the nodes still worth trying: those before the first that answered
    /// reflection could not be reached, and are ejected.
    async fn method<'a>(
        &self,
        target: &Target,
        tried: &'a [Instance],
    ) -> Result<(MethodDescriptor, &'a [Instance]), Failure> {
        let mut last_failure = String::new();
        for (position, instance) in tried.iter().enumerate() {
            let pool = match self.schema(&target.service, instance).await {
                Ok(pool) => pool,
                Err(schema::SchemaError::Unreachable(reason)) => {
                    self.selector.eject(&instance.address, Instant::now());
                    last_failure = reason;
                    continue;
                }
                Err(error) => {
                    return Err(Failure::new(StatusCode::BAD_GATEWAY, format!("service {}: {error}", target.service)))
                }
            };
            let Some(method) = schema::find_method(&pool, &target.service, &target.endpoint) else {
                let detail = format!(
                    "service {} has no endpoint {} (its reflected services do not name it)",
                    target.service, target.endpoint
                );
                return Err(Failure::new(StatusCode::NOT_FOUND, detail));
            };
            return Ok((method, &tried[position..]));
        }
        Err(unreachable(&target.service, &last_failure))
    }
}

/// Fuzz entry point: a request as the gateway reads it, a path on the first line and a JSON body
/// after it, resolved and transcoded to the greeter's request message, and to a client stream of
/// them.
#[doc(hidden)]
pub fn fuzz_request(data: &[u8]) {
    let (path, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let line = RequestLine { method: "POST", path: &String::from_utf8_lossy(path), host: "", namespace: "" };
    let _ = route::resolve(&[], &line);
    if let Ok(pool) = prost_reflect::DescriptorPool::decode(keel_proto::greeter::FILE_DESCRIPTOR_SET) {
        if let Some(method) = schema::find_method(&pool, "greeter", "Say.Hello") {
            if let Ok(message) = from_json(&method, body) {
                let _ = to_json(&message);
            }
        }
        if let Some(method) = schema::find_method(&pool, "greeter", "Say.Stream") {
            let _ = streaming::requests_from_json(&method, body);
        }
    }
}
