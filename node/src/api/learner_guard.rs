//! A learner serves almost nothing, as in etcd 3.4 (`isRPCSupportedForLearner`): Status,
//! MemberList and serializable Range (checked in `kv.rs`, which sees the request) are answered;
//! every other call, streams included, gets etcd's `etcdserver: rpc not supported for learner`
//! (Unavailable), so that clients move on to a voting member. A learner has no say in the
//! cluster and may be far behind; once promoted it serves everything.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::status::to_status;
use crate::error::ServerError;
use crate::member::Member;

/// What a learner answers (Range only when serializable).
const LEARNER_PATHS: [&str; 3] =
    ["/etcdserverpb.Maintenance/Status", "/etcdserverpb.Cluster/MemberList", "/etcdserverpb.KV/Range"];

/// The gRPC path of every service a member serves over gRPC (HTTP endpoints are not refused).
fn is_grpc(path: &str) -> bool {
    path.matches('/').count() == 2 && path.starts_with('/') && path.contains('.')
}

pub async fn refuse_on_learners(State(member): State<Arc<Member>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if is_grpc(path) && !LEARNER_PATHS.contains(&path) && member.is_learner() {
        return to_status(&ServerError::NotSupportedForLearner).into_http();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_are_told_from_http_ones() {
        assert!(is_grpc("/etcdserverpb.KV/Put"));
        assert!(is_grpc("/keel.v1.Registry/Register"));
        assert!(!is_grpc("/metrics"));
        assert!(!is_grpc("/health"));
        assert!(!is_grpc("/debug/raft"));
    }
}
