//! `keel proxy`: gRPC in, gRPC out, no transcoding. The path `/package.Service/Method` names
//! the registered service (`package`, as go-micro's gRPC client calls it; or the request's
//! `:authority` when that is a registered service) and micro's endpoint `Service.Method`. The
//! request and answer bodies are streamed through as they are, so unary and streaming calls in
//! both directions pass alike; the gateway's identity check and rate limits apply first.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::Request;
use tonic::Status;

use super::directory::Snapshot;
use super::{identity, Gateway};

/// Every path: one gRPC call each.
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request<Body>) -> Response {
    // Held for the call's head only: a stream's body then flows without a permit, and the
    // server's HTTP/2 stream limit bounds those per connection.
    let Ok(_permit) = gateway.in_flight.try_acquire() else {
        let detail = format!("keel proxy is serving {} calls already", super::REQUESTS_IN_FLIGHT_MAX);
        return Refusal::from(Status::unavailable(detail)).into_response();
    };
    match forward(&gateway, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

/// A call the proxy answers itself, as gRPC does: HTTP 200 with the status in the headers.
struct Refusal {
    status: Status,
    retry_after_secs: Option<u64>,
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Refusal {
        Refusal { status, retry_after_secs: None }
    }
}

impl Refusal {
    fn into_response(self) -> Response {
        let mut response = self.status.into_http::<Body>();
        if let Some(seconds) = self.retry_after_secs {
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

async fn forward(gateway: &Gateway, request: Request<Body>) -> Result<Response, Refusal> {
    if !gateway.directory.is_synced() {
        return Err(Status::unavailable("keel proxy has not read the registry yet (is the cluster reachable?)").into());
    }
    let (mut parts, body) = request.into_parts();
    let snapshot = gateway.directory.snapshot();
    let (service, endpoint) = target(&parts, &snapshot)?;
    let account = match &gateway.identity {
        Some(identity) => identity.check(&parts.headers, &service, &endpoint).await.map_err(refused)?,
        None => None,
    };
    let caller = super::limits::caller_key(account.as_deref(), &super::http::client_address(&parts));
    if let Err(over) = gateway.limits.check(&service, &endpoint, &caller) {
        let status = Status::resource_exhausted(format!("{service} {endpoint}: over the rate limit"));
        return Err(Refusal { status, retry_after_secs: Some(over.retry_after_secs()) });
    }
    scrub_headers(&mut parts.headers, account.as_deref());
    let tried = gateway.selector.order(&service, snapshot.instances(&service), Instant::now());
    if tried.is_empty() {
        return Err(Status::unavailable(format!("service {service}: no healthy node")).into());
    }
    let mut last_failure = String::new();
    for instance in &tried {
        // Connect first: the body can be sent only once, so a node is chosen only once it
        // is known to answer.
        let mut connection = match gateway.connections.connected(&instance.address).await {
            Ok(connection) => connection,
            Err(reason) => {
                gateway.selector.eject(&instance.address, Instant::now());
                last_failure = reason;
                continue;
            }
        };
        if let Err(error) = connection.ready().await {
            gateway.selector.eject(&instance.address, Instant::now());
            last_failure = error.to_string();
            continue;
        }
        let authority = instance.address.strip_prefix("http://").unwrap_or(&instance.address);
        let uri = format!("http://{authority}{}", parts.uri.path());
        parts.uri = uri
            .parse()
            .map_err(|_| Status::unavailable(format!("the node address {:?} is not usable", instance.address)))?;
        return match connection.send_request(Request::from_parts(parts, body)).await {
            Ok(response) => Ok(response.map(Body::new)),
            Err(error) => {
                gateway.selector.eject(&instance.address, Instant::now());
                Err(Status::unavailable(format!("service {service}: the node failed the call: {error}")).into())
            }
        };
    }
    Err(Status::unavailable(format!("service {service}: no node could be reached ({last_failure})")).into())
}

/// The registered service and micro endpoint a gRPC call names.
fn target(parts: &http::request::Parts, snapshot: &Snapshot) -> Result<(String, String), Status> {
    let path = parts.uri.path();
    let malformed = || Status::unimplemented(format!("{path:?} is not a gRPC method path (/package.Service/Method)"));
    let (full_service, method) = path.strip_prefix('/').and_then(|p| p.split_once('/')).ok_or_else(malformed)?;
    if method.is_empty() || method.contains('/') {
        return Err(malformed());
    }
    let (package, service_name) = full_service.rsplit_once('.').unwrap_or(("", full_service));
    let authority = parts.uri.authority().map(|a| a.host()).or_else(|| {
        parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(|h| h.split(':').next().unwrap_or(h))
    });
    let registered = |name: &str| !name.is_empty() && snapshot.services.contains_key(name);
    let service = [authority.unwrap_or(""), package, full_service].into_iter().find(|name| registered(name));
    let Some(service) = service else {
        return Err(Status::unimplemented(format!(
            "unknown service {full_service}: no service named {package:?} is registered"
        )));
    };
    Ok((service.to_string(), format!("{service_name}.{method}")))
}

/// Drops the headers a proxy must not pass on, and any account the caller claims, and adds
/// the account the proxy checked.
fn scrub_headers(headers: &mut http::HeaderMap, account: Option<&str>) {
    for name in [http::header::HOST, http::header::CONNECTION] {
        headers.remove(name);
    }
    headers.remove(identity::ACCOUNT_HEADER);
    if let Some(value) = account.and_then(|id| http::HeaderValue::from_str(id).ok()) {
        headers.insert(identity::ACCOUNT_HEADER, value);
    }
}

fn refused(refusal: identity::Refusal) -> Refusal {
    let status = match refusal {
        identity::Refusal::Unauthenticated(detail) => Status::unauthenticated(detail),
        identity::Refusal::Forbidden(detail) => Status::permission_denied(detail),
        identity::Refusal::Unavailable(detail) => Status::unavailable(detail),
    };
    status.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::directory::Instance;

    fn parts(uri: &str) -> http::request::Parts {
        Request::builder().uri(uri).body(()).expect("request").into_parts().0
    }

    #[test]
    fn grpc_paths_name_the_registered_service() {
        let mut snapshot = Snapshot::default();
        let node = Instance { node_id: "n".into(), address: "127.0.0.1:1".into(), version: "1".into() };
        for name in ["greeter", "billing"] {
            snapshot.services.insert(name.into(), vec![node.clone()]);
        }
        let check = |uri: &str| target(&parts(uri), &snapshot).map_err(|s| s.code());
        assert_eq!(check("/greeter.Say/Hello"), Ok(("greeter".into(), "Say.Hello".into())));
        assert_eq!(check("http://billing:50051/greeter.Say/Hello"), Ok(("billing".into(), "Say.Hello".into())));
        assert_eq!(check("/nosuch.Say/Hello"), Err(tonic::Code::Unimplemented));
        assert_eq!(check("/greeter.Say"), Err(tonic::Code::Unimplemented));
        assert_eq!(check("/greeter.Say/Hello/x"), Err(tonic::Code::Unimplemented));
        assert_eq!(check("/Say/Hello"), Err(tonic::Code::Unimplemented));
    }
}
