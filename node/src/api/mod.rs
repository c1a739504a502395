//! The client-facing gRPC API: etcd's v3 services as tonic adapters over `Member`.
//!
//! Each handler is boring on purpose: validate, call the member, map the error (through the
//! one table in `status`), fill the header. No Raft, no storage, no business rules here.

mod auth;
mod cluster;
mod concurrency;
mod config;
mod convert;
mod election;
mod events;
mod events_consume;
mod grpc_metrics;
mod h2_authority;
mod hpack;
mod http;
mod kv;
mod learner_guard;
mod lease;
mod lock;
mod maintenance;
mod micro_auth;
mod native_guard;
mod registry;
mod status;
mod store;
mod transport_status;
mod validate;
mod watch;

use std::sync::Arc;

use keel_proto::etcd::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbResponseHeader, PbWatchServer,
};
use tonic::service::Routes;
use tonic::transport::server::Router;

use crate::member::{Credentials, Member};
use keel_model::auth::etcd::{AuthError, Caller};

pub(crate) use config::read_document;
pub(crate) use events::check_topic;
pub use events::EventsError;
pub(crate) use events::{read_events, topic_info};
pub use grpc_metrics::fuzz_call_labels;
pub use h2_authority::{fuzz_authority_fix, AuthorityFix};
pub use hpack::fuzz_hpack_decode;
pub(crate) use http::resident_memory_bytes;
pub use status::to_status;

/// The router serving every client service of `member` (gRPC, refusing messages over
/// `decoding_limit` bytes, at most `max_concurrent_streams` calls at once per connection) and,
/// over HTTP/1.1 or HTTP/2, `/health` and `/metrics`.
pub fn client_router(member: Arc<Member>, decoding_limit: usize, max_concurrent_streams: u32) -> Router {
    let grpc =
        Routes::new(PbKvServer::new(kv::KvService::new(member.clone())).max_decoding_message_size(decoding_limit))
            .add_service(
                PbClusterServer::new(cluster::ClusterService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                PbMaintenanceServer::new(maintenance::MaintenanceService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                PbLeaseServer::new(lease::LeaseService::new(member.clone())).max_decoding_message_size(decoding_limit),
            )
            .add_service(
                PbWatchServer::new(watch::WatchService::new(member.clone())).max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::etcd_auth::etcdserverpb::auth_server::AuthServer::new(auth::AuthService::new(
                    member.clone(),
                ))
                .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::v1::auth_server::AuthServer::new(micro_auth::MicroAuthService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::etcd_lock::lock_server::LockServer::new(lock::LockService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::etcd_election::election_server::ElectionServer::new(election::ElectionService::new(
                    member.clone(),
                ))
                .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::v1::registry_server::RegistryServer::new(registry::RegistryService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::v1::store_server::StoreServer::new(store::StoreService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::v1::config_server::ConfigServer::new(config::ConfigService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            )
            .add_service(
                keel_proto::v1::events_server::EventsServer::new(events::EventsService::new(member.clone()))
                    .max_decoding_message_size(decoding_limit),
            );
    let routes = grpc
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(member.clone(), native_guard::root_only_while_auth_is_on))
        .layer(axum::middleware::from_fn_with_state(member.clone(), learner_guard::refuse_on_learners))
        .merge(http::router(member.clone()))
        .merge(crate::ui::router(member))
        .layer(axum::middleware::from_fn(transport_status::etcd_transport_errors))
        .layer(axum::middleware::from_fn(grpc_metrics::count_grpc_calls));
    let routes = Routes::from(routes);
    tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(max_concurrent_streams)
        .add_routes(routes)
}

/// Who sent `request`: the user its `token` metadata (etcd's; `authorization` for etcd's
/// gateway) speaks for, `None` without one.
async fn caller<T>(member: &Member, request: &tonic::Request<T>) -> Result<Option<Caller>, tonic::Status> {
    member.caller(&credentials(member, request)?).await.map_err(|e| to_status(&e))
}

/// What `request` presents as its sender: its token, and its client certificate's user.
fn credentials<T>(member: &Member, request: &tonic::Request<T>) -> Result<Credentials, tonic::Status> {
    let token = token(request)?;
    let certificate_user = member.certificate_user(request.peer_certs().as_deref().map(Vec::as_slice));
    Ok(Credentials { token, certificate_user })
}

/// etcd's `IsAdminPermitted` for the sender of `request`: root-only operations (membership
/// changes, hashes, defragment, snapshot) pass only for a root user while auth is enabled.
async fn check_admin<T>(member: &Member, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
    let caller = caller(member, request).await?;
    member.check_admin(caller.as_ref()).map_err(|e| to_status(&e))
}

/// The token `request` carries, if any.
fn token<T>(request: &tonic::Request<T>) -> Result<Option<String>, tonic::Status> {
    let metadata = request.metadata();
    let value = TOKEN_HEADERS.iter().find_map(|name| metadata.get(*name));
    token_text(value.map(|value| value.as_bytes())).map_err(|e| to_status(&e.into()))
}

/// Where a request carries its token: etcd's `token` metadata, or `authorization` as etcd's
/// gRPC gateway sends it.
const TOKEN_HEADERS: [&str; 2] = ["token", "authorization"];

/// A token header's value as text; one that is not text is no token of ours.
fn token_text(value: Option<&[u8]>) -> Result<Option<String>, AuthError> {
    value
        .map(|bytes| std::str::from_utf8(bytes).map(str::to_string).map_err(|_| AuthError::InvalidAuthToken))
        .transpose()
}

/// etcd's response header: which cluster and member answered, at which revision and term.
fn header(member: &Member, revision: i64) -> Option<PbResponseHeader> {
    Some(PbResponseHeader {
        cluster_id: member.cluster_id,
        member_id: member.id,
        revision,
        raft_term: member.raft_term(),
    })
}
