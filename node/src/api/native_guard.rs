//! While etcd auth is enabled, Keel's native services (`keel.v1.*`: Registry, Store, Config,
//! Events) answer etcd's root users, and micro accounts the rules let in: each call is the
//! resource `service:keel.v1.<Service>:<Service>.<Method>` (Config's secrets are one more,
//! `Config.Secrets`, checked by the Config service). Their keys are go-micro's, and their reads (a
//! config secret, a topic's events) are not ranges that etcd's permissions can be checked
//! against one by one, so no other etcd user gets in. An open cluster stays open.
//!
//! Like etcd's membership checks, this one is made where the request arrives: a root user whose
//! role is revoked while its write is in flight still has that write applied.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use keel_model::auth::etcd::AuthError;
use keel_model::auth::rules::Resource;

use super::status::to_status;
use crate::error::ServerError;
use crate::member::{Credentials, Member};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The gRPC path prefix of every native service.
const NATIVE_PREFIX: &str = "/keel.v1.";
/// micro's Auth checks its callers itself: Token, Inspect and Verify are open (a secret or a
/// token is the proof), changes and lists are root's (`api/micro_auth.rs`).
const MICRO_AUTH_PREFIX: &str = "/keel.v1.Auth/";

/// The middleware: while auth is enabled, lets a native call through for etcd's root, or for
/// a micro account (`authorization: Bearer <access token>`) the rules let reach
/// `service:keel.v1.<Service>:<Service>.<Method>`; refuses everyone else.
pub async fn root_only_while_auth_is_on(
    State(member): State<Arc<Member>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let guarded = path.starts_with(NATIVE_PREFIX) && !path.starts_with(MICRO_AUTH_PREFIX);
    if !guarded || !member.read_auth(|auth| auth.enabled) {
        return next.run(request).await;
    }
    if let Some(token) = bearer(&request) {
        let resource = native_resource(path);
        return match member.micro_authorize(&token, &resource) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                next.run(request).await
            }
            Err(error) => to_status(&error).into_http(),
        };
    }
    let credentials = credentials(&member, &request);
    match check_root(&member, credentials).await {
        Ok(()) => next.run(request).await,
        Err(error) => to_status(&error).into_http(),
    }
}

/// A micro access token: `authorization: Bearer …` (etcd's gateway sends its own tokens in
/// `authorization` without the prefix, and those stay etcd's).
fn bearer(request: &Request) -> Option<String> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_string)
}

/// `/keel.v1.Store/Read` → `service:keel.v1.Store:Store.Read`, as micro names a resource.
pub(super) fn native_resource(path: &str) -> Resource {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let short = service.rsplit('.').next().unwrap_or(service);
    Resource { r#type: "service".into(), name: service.to_string(), endpoint: format!("{short}.{method}") }
}

fn credentials(member: &Member, request: &Request) -> Result<Credentials, AuthError> {
    let headers = request.headers();
    let value = super::TOKEN_HEADERS.iter().find_map(|name| headers.get(*name));
    let token = super::token_text(value.map(|value| value.as_bytes()))?;
    let tls = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
    let certificate_user =
        member.certificate_user(tls.and_then(TlsConnectInfo::peer_certs).as_deref().map(Vec::as_slice));
    Ok(Credentials { token, certificate_user })
}

async fn check_root(member: &Member, credentials: Result<Credentials, AuthError>) -> Result<(), ServerError> {
    let caller = member.caller(&credentials?).await?;
    member.check_admin(caller.as_ref())
}
