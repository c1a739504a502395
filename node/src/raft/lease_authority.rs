//! The leader's answers about lease time: keep-alives, remaining TTLs, and which leases have
//! expired. Asked locally on the leader, or through `ForwardRequest` from a follower. Any
//! member that is not the leader answers `NotLeader`, so a follower never renews or expires a
//! lease on its own clock.

use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use openraft::Instant as _;
use tokio::time::Instant;

use super::peer_service::ForwardError;
use super::{Raft, ServerState, SharedState};
use crate::lease::{Leadership, Lessor};

/// What LeaseTimeToLive reports about a lease that exists.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseTime {
    pub granted_ttl_secs: i64,
    pub remaining_secs: i64,
}

#[derive(Clone)]
pub struct LeaseAuthority {
    raft: Raft,
    shared: Arc<SharedState>,
    lessor: Arc<Lessor>,
}

impl LeaseAuthority {
    pub fn new(raft: Raft, shared: Arc<SharedState>) -> Self {
        Self { raft, shared, lessor: Arc::new(Lessor::default()) }
    }

    /// Renews lease `id`: its TTL, or 0 if it does not exist or has expired.
    pub fn keep_alive(&self, id: i64) -> Result<i64, ForwardError> {
        let term = self.leader_term()?;
        let ttl_secs = self.shared.mvcc().lease(id).map(|lease| lease.ttl_secs);
        Ok(self.lessor.keep_alive(term, id, ttl_secs, Instant::now()))
    }

    /// `None` when the lease does not exist.
    pub fn time_to_live(&self, id: i64) -> Result<Option<LeaseTime>, ForwardError> {
        let term = self.leader_term()?;
        let Some(granted_ttl_secs) = self.shared.mvcc().lease(id).map(|lease| lease.ttl_secs) else {
            return Ok(None);
        };
        let remaining_secs = self.lessor.remaining_secs(term, id, granted_ttl_secs, Instant::now());
        Ok(Some(LeaseTime { granted_ttl_secs, remaining_secs }))
    }

    /// The leases to revoke now (see `Lessor::due`).
    pub fn expired(&self) -> Vec<i64> {
        self.lessor.due(self.leadership(), || self.shared.mvcc().leases(), Instant::now())
    }

    /// The term this member leads, if it leads with a quorum that acknowledged it within the
    /// shortest election timeout. A leader cut off from the others still believes it leads
    /// (nothing tells it otherwise), while the majority elects a new leader that gives every
    /// lease its full TTL and then revokes those nobody renews through it: renewing on the old
    /// leader would tell a client its lease lives while it is being revoked (found by
    /// keel-jepsen's lease workload; etcd fixed the same bug, etcd-io/etcd#15247). Followers
    /// refuse to vote for election_timeout_max after hearing from the leader, and start an
    /// election no sooner than election_timeout_min, so no new leader can exist yet while the
    /// last quorum acknowledgement is younger than election_timeout_min.
    fn leader_term(&self) -> Result<u64, ForwardError> {
        match self.leadership() {
            Leadership::Fresh(term) => Ok(term),
            Leadership::Unconfirmed => Err(ForwardError::NotLeader { leader: None }),
            Leadership::Follower => {
                Err(ForwardError::NotLeader { leader: self.raft.metrics().borrow_watched().current_leader })
            }
        }
    }

    fn leadership(&self) -> Leadership {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        if metrics.state != ServerState::Leader {
            return Leadership::Follower;
        }
        let alone = metrics.membership_config.membership().voter_ids().count() == 1;
        let fresh = std::time::Duration::from_millis(self.raft.config().election_timeout_min);
        if alone || metrics.last_quorum_acked.as_ref().is_some_and(|acked| acked.elapsed() < fresh) {
            Leadership::Fresh(metrics.current_term)
        } else {
            Leadership::Unconfirmed
        }
    }
}
