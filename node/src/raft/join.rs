//! The peer port's `Join` service: how a member started into an existing cluster learns the
//! cluster's ID (which its peer token must name) and the member ID MemberAdd gave its peer URLs. It is
//! checked against the peer secret alone (`JoinGate`), since the asker cannot know the cluster
//! ID yet, and answers nothing else: no Raft message, no data.

use keel_proto::peer::join_client::JoinClient;
use keel_proto::peer::{JoinRequest, JoinResponse};
use openraft::async_runtime::WatchReceiver;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::network::PeerClients;
use super::peer_auth::{PeerCredentials, PeerSecret};
use super::Raft;

/// Answers `Join.Cluster` from this member's identity and Raft membership.
pub struct JoinService {
    raft: Raft,
    cluster_id: u64,
}

impl JoinService {
    pub fn new(raft: Raft, cluster_id: u64) -> Self {
        JoinService { raft, cluster_id }
    }
}

#[tonic::async_trait]
impl keel_proto::peer::join_server::Join for JoinService {
    async fn cluster(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let mut asked = request.into_inner().peer_urls;
        asked.sort();
        let config = self.raft.metrics().borrow_watched().membership_config.clone();
        let member_id = config
            .membership()
            .nodes()
            .find(|(_, node)| {
                let mut urls = node.peer_urls.clone();
                urls.sort();
                !asked.is_empty() && urls == asked
            })
            .map_or(0, |(id, _)| *id);
        Ok(Response::new(JoinResponse { cluster_id: self.cluster_id, member_id }))
    }
}

/// Admits holders of the cluster's peer secret, whatever cluster ID they name.
#[derive(Clone)]
pub struct JoinGate {
    secret: PeerSecret,
}

impl JoinGate {
    pub fn new(secret: &PeerSecret) -> Self {
        JoinGate { secret: secret.clone() }
    }
}

impl tonic::service::Interceptor for JoinGate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.secret.admits(request.metadata()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "keel: peer refused: missing or wrong peer token (is --peer-secret-file the same on every member?)",
            ))
        }
    }
}

/// Asks the member at `url` about the cluster, for the member with `peer_urls`.
pub async fn ask(clients: &PeerClients, url: &str, peer_urls: &[String]) -> Result<JoinResponse, String> {
    let channel = clients.channel(url)?;
    let credentials: PeerCredentials = clients.credentials();
    let mut client = JoinClient::with_interceptor(channel, credentials);
    let request = JoinRequest { peer_urls: peer_urls.to_vec() };
    let answer = client.cluster(request).await.map_err(|status| status.message().to_string())?;
    Ok(answer.into_inner())
}

/// Whether `metadata` carries the cluster's peer token.
pub(super) fn has_token(secret_token: &str, metadata: &MetadataMap) -> bool {
    use subtle::ConstantTimeEq;
    let token = metadata.get(super::peer_auth::TOKEN_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    bool::from(token.ct_eq(secret_token.as_bytes()))
}
