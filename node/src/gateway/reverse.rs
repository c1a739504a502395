//! Services registered with `handler=http`: the request is passed to one of their nodes as plain
//! HTTP, path and query unchanged, as micro's http handler (Go's `httputil.ReverseProxy`) does:
//! hop-by-hop headers dropped, the caller's address added to `X-Forwarded-For`, the answer
//! streamed back as it comes.
//!
//! The body is read first, within the gateway's limits (413, 408), so that a node that refuses
//! the connection can be skipped and the same request sent to the next.

use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, StatusCode, Uri};

use super::directory::{host_port, Instance};
use super::h1::SendError;
use super::http::Failure;
use super::{identity, Gateway};

/// What the gateway knows of the request besides its body.
pub struct Forward<'a> {
    pub parts: &'a http::request::Parts,
    pub body: bytes::Bytes,
    /// The account the gateway checked, passed in `micro-account-id`.
    pub account: Option<&'a str>,
    pub client_ip: &'a str,
}

/// Sends the request to the first node of `nodes` that takes the connection.
pub async fn forward(
    gateway: &Gateway,
    service: &str,
    nodes: &[Instance],
    request: Forward<'_>,
) -> Result<Response, Failure> {
    let mut last_failure = String::new();
    for node in nodes {
        let outgoing = outgoing(&node.address, &request)?;
        let sent =
            tokio::time::timeout(gateway.options.request_timeout, gateway.http.send(&node.address, outgoing)).await;
        match sent {
            Err(_) => {
                let detail = format!("service {service} did not answer within {:?}", gateway.options.request_timeout);
                return Err(Failure::new(StatusCode::GATEWAY_TIMEOUT, detail));
            }
            Ok(Ok(answer)) => {
                let (mut parts, body) = answer.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                return Ok(Response::from_parts(parts, Body::new(body)).into_response());
            }
            // The connection was never made: nothing reached the node.
            Ok(Err(SendError::Connect(error))) => {
                gateway.selector.eject(&node.address, Instant::now());
                last_failure = format!("{}: {error}", node.address);
            }
            Ok(Err(SendError::Exchange(error))) => {
                let detail = format!("service {service} at {}: {}", node.address, source_text(&error));
                return Err(Failure::new(StatusCode::BAD_GATEWAY, detail));
            }
        }
    }
    Err(super::http::unreachable(service, &last_failure))
}

/// The request for the node at `address` (`host:port`, or an `http://` URL): path and query in
/// origin form, the caller's `Host` kept (the node's address when the caller sent none).
fn outgoing(address: &str, request: &Forward<'_>) -> Result<Request<Body>, Failure> {
    let uri = match request.parts.uri.path_and_query() {
        Some(path) => Uri::from(path.clone()),
        None => Uri::from_static("/"),
    };
    let mut headers = request.parts.headers.clone();
    if !headers.contains_key(header::HOST) {
        let host = match request.parts.uri.authority() {
            Some(authority) => authority.as_str(),
            None => host_port(address),
        };
        let host = http::HeaderValue::from_str(host).map_err(|e| {
            Failure::new(StatusCode::BAD_GATEWAY, format!("the node address {address:?} is not a host:port: {e}"))
        })?;
        headers.insert(header::HOST, host);
    }
    remove_hop_by_hop(&mut headers);
    headers.remove(identity::ACCOUNT_HEADER);
    if let Some(value) = request.account.and_then(|id| http::HeaderValue::from_str(id).ok()) {
        headers.insert(identity::ACCOUNT_HEADER, value);
    }
    append_forwarded_for(&mut headers, request.client_ip);
    let mut outgoing = Request::new(Body::from(request.body.clone()));
    *outgoing.method_mut() = request.parts.method.clone();
    *outgoing.uri_mut() = uri;
    *outgoing.headers_mut() = headers;
    Ok(outgoing)
}

/// Go's ReverseProxy: the client's address after any the request already carries.
fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &str) {
    if client_ip.is_empty() {
        return;
    }
    let forwarded = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip.to_string(),
    };
    if let Ok(value) = http::HeaderValue::from_str(&forwarded) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Headers about one connection, not the request (RFC 9110 §7.6.1), and any the `Connection`
/// header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// The innermost cause: hyper's own message may be only its kind.
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret-hop".parse().expect("value"));
        headers.insert("x-secret-hop", "1".parse().expect("value"));
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().expect("value"));
        headers.insert(header::UPGRADE, "websocket".parse().expect("value"));
        headers.insert("x-kept", "1".parse().expect("value"));
        remove_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn the_callers_address_follows_those_already_forwarded() {
        let mut headers = HeaderMap::new();
        append_forwarded_for(&mut headers, "127.0.0.9");
        assert_eq!(headers[X_FORWARDED_FOR], "127.0.0.9");
        append_forwarded_for(&mut headers, "127.0.0.10");
        assert_eq!(headers[X_FORWARDED_FOR], "127.0.0.9, 127.0.0.10");
    }
}
