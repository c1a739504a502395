//! The client-facing gRPC API: etcd's v3 services as tonic adapters over `Member`.
//!
//! Each handler is boring on purpose: validate, call the member, map the error (through the
//! one table in `status`), fill the header. No Raft, no storage, no business rules here.

mod cluster;
mod convert;
mod h2_authority;
mod kv;
mod maintenance;
mod status;
mod validate;

use std::sync::Arc;

use keel_proto::etcd::{PbClusterServer, PbKvServer, PbMaintenanceServer, PbResponseHeader};
use tonic::transport::server::Router;

use crate::member::Member;

pub use h2_authority::AuthorityFix;
pub use status::to_status;

/// The router serving every client service of `member`, refusing messages over
/// `decoding_limit` bytes at the gRPC layer.
pub fn client_router(member: Arc<Member>, decoding_limit: usize) -> Router {
    tonic::transport::Server::builder()
        .add_service(PbKvServer::new(kv::KvService::new(member.clone())).max_decoding_message_size(decoding_limit))
        .add_service(PbClusterServer::new(cluster::ClusterService::new(member.clone())).max_decoding_message_size(decoding_limit))
        .add_service(
            PbMaintenanceServer::new(maintenance::MaintenanceService::new(member)).max_decoding_message_size(decoding_limit),
        )
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
