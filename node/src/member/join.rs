//! A member's first start into an existing cluster (`--initial-cluster-state existing`, after
//! `etcdctl member add`): it asks the members listed in `--initial-cluster` over the peer port's
//! `Join` service for the cluster's ID and the member ID MemberAdd gave its peer URLs, as etcd's
//! joining members read the cluster's member list from their peers. It then waits for the
//! leader to replicate to it (a snapshot first, when the log was compacted).

use std::time::{Duration, Instant};

use tonic::transport::ClientTlsConfig;

use super::start::StartError;
use crate::config::MemberConfig;
use crate::raft::join;
use crate::raft::{PeerClients, PeerCredentials, PeerSecret};

/// How long a joining member keeps asking (the others may be restarting too).
const JOIN_PATIENCE: Duration = Duration::from_secs(30);
const JOIN_RETRY: Duration = Duration::from_millis(500);

/// (member ID, cluster ID) as the running members report them, once one of them lists a
/// member with this member's peer URLs.
pub(super) async fn discover_cluster(
    config: &MemberConfig,
    secret: &PeerSecret,
    tls: Option<ClientTlsConfig>,
) -> Result<(u64, u64), StartError> {
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
    // Not a member ID yet: the peers' Join service checks only the secret.
    let clients = PeerClients::new(PeerCredentials::new(secret, 0, 0), tls, config.unsafe_peer_source_address);
    let own = &config.advertise_peer_urls;
    let deadline = Instant::now() + JOIN_PATIENCE;
    loop {
        let mut problems = Vec::new();
        for url in &urls {
            match join::ask(&clients, url, own).await {
                Ok(answer) if answer.member_id != 0 => {
                    tracing::info!(
                        member_id = %format!("{:x}", answer.member_id),
                        cluster_id = %format!("{:x}", answer.cluster_id),
                        via = %url,
                        "joining an existing cluster"
                    );
                    return Ok((answer.member_id, answer.cluster_id));
                }
                Ok(_) => problems.push(format!("{url} lists no member with peer URLs {}", own.join(","))),
                Err(error) => problems.push(format!("{url}: {error}")),
            }
        }
        if Instant::now() >= deadline {
            let own = own.join(",");
            return Err(StartError(format!(
                "cannot join the cluster with peer URLs {own}: {}. Add this member first with `etcdctl member \
                 add {} --peer-urls={own}`, then start it with --initial-cluster-state existing",
                problems.join("; "),
                config.name,
            )));
        }
        tokio::time::sleep(JOIN_RETRY).await;
    }
}
