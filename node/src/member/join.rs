//! A member's first start into an existing cluster (`--initial-cluster-state existing`, after
//! `etcdctl member add`): it asks the members listed in `--initial-cluster` for the cluster's ID
//! over the peer port's `Join` service, and learns whether MemberAdd added it. It then waits for
//! the leader to replicate to it (a snapshot first, when the log was compacted).

use std::time::{Duration, Instant};

use tonic::transport::ClientTlsConfig;

use super::start::StartError;
use crate::config::MemberConfig;
use crate::raft::join;
use crate::raft::{PeerClients, PeerCredentials, PeerSecret};

/// How long a joining member keeps asking (the others may be restarting too).
const JOIN_PATIENCE: Duration = Duration::from_secs(30);
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// The cluster ID the running members report, once one of them lists `member_id`.
pub(super) async fn discover_cluster(
    config: &MemberConfig,
    secret: &PeerSecret,
    tls: Option<ClientTlsConfig>,
    member_id: u64,
) -> Result<u64, StartError> {
    let urls: Vec<&String> = config
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name != config.name)
        .filter_map(|(_, urls)| urls.first())
        .collect();
    if urls.is_empty() {
        return Err(StartError(
            "--initial-cluster-state existing: --initial-cluster must list the cluster's running members, \\
             whom this member asks to join"
                .into(),
        ));
    }
    let clients = PeerClients::new(PeerCredentials::new(secret, member_id, 0), tls, config.unsafe_peer_source_address);
    let deadline = Instant::now() + JOIN_PATIENCE;
    loop {
        let mut problems = Vec::new();
        for url in &urls {
            match join::ask(&clients, url, member_id).await {
                Ok(answer) if answer.is_member => {
                    tracing::info!(cluster_id = %format!("{:x}", answer.cluster_id), via = %url, "joining an existing cluster");
                    return Ok(answer.cluster_id);
                }
                Ok(_) => problems.push(format!("{url} does not list member {member_id:x}")),
                Err(error) => problems.push(format!("{url}: {error}")),
            }
        }
        if Instant::now() >= deadline {
            let own = config.advertise_peer_urls.join(",");
            return Err(StartError(format!(
                "cannot join the cluster as member {member_id:x} ({}): {}. Add this member first with \\
                 `etcdctl member add {} --peer-urls={own}` (same --initial-cluster-token), then start it with \\
                 --initial-cluster-state existing",
                own,
                problems.join("; "),
                config.name,
            )));
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}
