//! While etcd auth is enabled, Keel's native services (`keel.v1.*`: Registry, Store, Config,
//! Events) answer root users only: their keys are go-micro's, and their reads (a config secret, a
//! topic's events) are not ranges that etcd's permissions can be checked against one by one.
//! micro's rules (the Auth issue's native face) will narrow this to per-endpoint grants; until
//! then a locked-down cluster is locked down everywhere, and an open one stays open.
//!
//! Like etcd's membership checks, this one is made where the request arrives: a root user whose
//! role is revoked while its write is in flight still has that write applied.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use keel_model::auth::etcd::AuthError;

use super::status::to_status;
use crate::error::ServerError;
use crate::member::{Credentials, Member};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The gRPC path prefix of every native service.
const NATIVE_PREFIX: &str = "/keel.v1.";
/// micro's Auth checks its callers itself: Token, Inspect and Verify are open (a secret or a
/// token is the proof), changes and lists are root's (`api/micro_auth.rs`).
const MICRO_AUTH_PREFIX: &str = "/keel.v1.Auth/";

/// The middleware: refuses a native call from anyone but root while auth is enabled.
pub async fn root_only_while_auth_is_on(State(member): State<Arc<Member>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let guarded = path.starts_with(NATIVE_PREFIX) && !path.starts_with(MICRO_AUTH_PREFIX);
    if !guarded || !member.read_auth(|auth| auth.enabled) {
        return next.run(request).await;
    }
    let credentials = credentials(&member, &request);
    match check_root(&member, credentials).await {
        Ok(()) => next.run(request).await,
        Err(error) => to_status(&error).into_http(),
    }
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
