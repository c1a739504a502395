//! Moving the leadership on purpose: etcd's MoveLeader, and a leader's hand-over before it
//! stops (SIGTERM), so that a rolling restart never waits out an election timeout. Built on
//! openraft's transfer: the leader stops extending its lease and tells the target, which
//! campaigns at once once its log has caught up.

use std::time::Duration;

use crate::error::ServerError;

use super::Member;

/// How long a transfer may take before MoveLeader gives up (etcd waits its request timeout).
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a transfer waits for the target to lead before asking it again.
const TRANSFER_RETRY: Duration = Duration::from_millis(500);

impl Member {
    /// etcd's MoveLeader: only the leader moves its leadership, to a voter, and answers once
    /// the target leads.
    pub async fn move_leader(&self, target: u64) -> Result<(), ServerError> {
        let metrics = self.metrics();
        if metrics.current_leader != Some(self.id) {
            return Err(ServerError::NotLeader);
        }
        let is_voter = metrics.membership_config.membership().voter_ids().any(|id| id == target);
        if !is_voter {
            return Err(ServerError::BadLeaderTransferee);
        }
        if target == self.id {
            return Ok(());
        }
        self.transfer_to(target, TRANSFER_TIMEOUT).await
    }

    /// Before a leader stops: hands the leadership to the voter whose log is furthest along and
    /// waits (at most `patience`) for it to lead. Nothing to do on a follower or a lone member.
    pub async fn hand_over_leadership(&self, patience: Duration) {
        let metrics = self.metrics();
        if metrics.current_leader != Some(self.id) {
            return;
        }
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().filter(|id| *id != self.id).collect();
        let matched =
            |id: &u64| metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index);
        let Some(target) = voters.iter().max_by_key(|id| matched(id)).copied() else { return };
        let started = std::time::Instant::now();
        match self.transfer_to(target, patience).await {
            Ok(()) => {
                tracing::info!(to = %format!("{target:x}"), took = ?started.elapsed(), "handed the leadership over")
            }
            Err(error) => tracing::warn!(to = %format!("{target:x}"), "handing the leadership over: {error}"),
        }
    }

    /// Waits until no proposal of this member, and no write a follower forwarded to it while
    /// it led, is in flight, at most `patience`. A former leader answers those once the new
    /// leader commits them, which it learns as a follower: its Raft must still run.
    pub async fn wait_for_proposals(&self, patience: Duration) {
        let deadline = std::time::Instant::now() + patience;
        while self.counters.in_flight() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Asks `target` to take over, again every `TRANSFER_RETRY` until it leads or `patience`
    /// runs out. The target refuses while its log is behind the leader's (openraft waits an
    /// election timeout for it to catch up, then gives up), and a leader that is transferring
    /// takes no writes meanwhile: asking again soon costs nothing, waiting out the patience
    /// costs every client its writes for that long.
    async fn transfer_to(&self, target: u64, patience: Duration) -> Result<(), ServerError> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            self.raft.trigger().transfer_leader(target).await.map_err(|_| ServerError::Stopped)?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let wait = left.min(TRANSFER_RETRY);
            let led = self.raft.wait(Some(wait)).metrics(|m| m.current_leader == Some(target), "the new leader").await;
            match led {
                Ok(_) => return Ok(()),
                Err(openraft::metrics::WaitError::ShuttingDown) => return Err(ServerError::Stopped),
                Err(_) if wait == left => return Err(ServerError::LeaderTransferTimeout),
                Err(_) => match self.metrics().current_leader {
                    // Still leading: the target refused or has not heard; ask again (the
                    // trigger is ignored once this member no longer leads).
                    Some(leader) if leader == self.id => {
                        tracing::debug!(to = %format!("{target:x}"), "the leadership transfer is slow; asking again")
                    }
                    // Another member won an election that overtook the transfer.
                    Some(_) => return Err(ServerError::LeaderTransferTimeout),
                    // An election is under way: wait for its outcome.
                    None => {}
                },
            }
        }
    }
}
