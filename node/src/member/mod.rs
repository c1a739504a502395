//! A running member: storage, Raft, the peer server and the client server wired together. The
//! one composition root. `Member` is what the API layer calls: propose a command, pass a read
//! barrier, read the keyspace, describe the cluster.

mod accept;
mod alarms;
mod auth;
mod auto_compact;
mod background;
pub mod backup;
mod batch_queue;
mod counters;
mod disk_reserve;
pub mod format;
mod forward_writes;
mod join;
mod leader_batches;
mod leader_write;
mod leadership;
pub mod listen_report;
mod membership;
pub mod micro_auth;
mod quota;
mod read_barrier;
pub mod restore;
mod start;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use tokio::time::Instant;

use crate::command::{self, CommandResponse, Origin, Proposal};
use crate::error::ServerError;
use crate::limits::{PROPOSALS_PENDING_MAX, REQUEST_TIMEOUT};
use crate::raft::{
    self, Delivery, ForwardError, ForwardLinks, ForwardRequest, ForwardResponse, LeaseAuthority, LeaseTime, MemberId,
    PeerClients, Raft, RaftMetrics, SharedState,
};
use crate::storage::Engine;
use crate::watch::SessionLimits;

pub use auth::Credentials;
pub use backup::BackupFile;
pub use disk_reserve::DISK_RESERVE_BYTES_DEFAULT;
pub use membership::{removed, MembershipChange, MembershipRefusal, ReplicationSeen};
pub use quota::QUOTA_BYTES_DEFAULT;
pub use start::{start, RunningMember, StartError};

pub(crate) const IDENTITY_KEY: &[u8] = b"identity";

/// Who this member is, fixed when its data dir is created; later flags cannot change it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Identity {
    pub(crate) member_id: u64,
    pub(crate) cluster_id: u64,
    pub(crate) name: String,
}

/// How long to wait between attempts when no leader is known or it just changed.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// How long one attempt at a question to the leader (a keep-alive) may take before it is
/// asked again, maybe of a newer leader: a healthy leader answers in milliseconds.
const QUESTION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Member {
    pub id: MemberId,
    pub cluster_id: u64,
    pub name: String,
    pub max_request_bytes: usize,
    /// Grants below this TTL are raised to it (etcd's minimum: longer than an election).
    pub lease_ttl_min_secs: i64,
    watch_limits: SessionLimits,
    /// Test-only sabotage (`--unsafe-stale-reads`): read barriers pass without ReadIndex.
    unsafe_stale_reads: bool,
    raft: Raft,
    shared: Arc<SharedState>,
    leases: LeaseAuthority,
    engine: Arc<dyn Engine>,
    peers: PeerClients,
    /// Itself, for tasks that outlive one request (shared read-barrier rounds).
    me: std::sync::Weak<Member>,
    read_rounds: read_barrier::ReadRounds,
    write_batches: batch_queue::BatchQueue<forward_writes::Pending>,
    leader_batches: batch_queue::BatchQueue<leader_batches::Pending>,
    /// The forward stream to each leader this member has forwarded to (`raft::ForwardLinks`).
    forward_links: ForwardLinks,
    forwarded: ForwardCounts,
    counters: counters::ServerCounters,
    tokens: auth::Tokens,
    /// `--client-cert-auth`: a verified client certificate's CN is its sender's user name.
    client_cert_auth: bool,
    quota: quota::Quota,
    disk_reserve: disk_reserve::DiskReserve,
    /// Where Maintenance.Snapshot writes the backups it streams.
    backup_dir: std::path::PathBuf,
    /// `--initial-cluster-token`: members' IDs derive from it and their peer URLs.
    cluster_token: String,
}

/// The requests this member sent to the leader, by kind (a batch of writes is one): what its
/// clients' requests cost in peer round trips, for `/metrics`.
#[derive(Default)]
struct ForwardCounts {
    by_kind: [AtomicU64; FORWARD_KINDS.len()],
}

/// The kinds of forwarded request, as `/metrics` labels them.
const FORWARD_KINDS: [&str; 5] = ["write", "read_index", "lease_keep_alive", "lease_time_to_live", "membership"];

impl ForwardCounts {
    fn count(&self, request: &ForwardRequest) {
        let kind = match request {
            ForwardRequest::Write(_) | ForwardRequest::Writes(_) => 0,
            ForwardRequest::ReadIndex => 1,
            ForwardRequest::LeaseKeepAlive(_) => 2,
            ForwardRequest::LeaseTimeToLive(_) => 3,
            ForwardRequest::Membership(_) => 4,
        };
        // Relaxed: a counter read by /metrics orders nothing.
        self.by_kind[kind].fetch_add(1, Ordering::Relaxed);
    }
}

/// What happened to one attempt at a request.
pub(super) enum Attempt<T> {
    Done(Result<T, ServerError>),
    /// Nothing was proposed (no leader, or not the leader any more): try again.
    Retry,
}

impl Member {
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }

    pub fn shared_state(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    pub fn watch_limits(&self) -> SessionLimits {
        self.watch_limits
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    pub(crate) fn leases(&self) -> &LeaseAuthority {
        &self.leases
    }

    /// Renews lease `id` on the leader's clock: its TTL, or 0 when it does not exist or expired.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, ServerError> {
        self.ask_leader(
            |leases| leases.keep_alive(id),
            ForwardRequest::LeaseKeepAlive(id),
            |response| match response {
                ForwardResponse::LeaseKeepAlive(answer) => Some(answer),
                _ => None,
            },
        )
        .await
    }

    /// The leader's view of lease `id`; `None` when it does not exist.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<LeaseTime>, ServerError> {
        let request = ForwardRequest::LeaseTimeToLive(id);
        self.ask_leader(
            |leases| leases.time_to_live(id),
            request,
            |response| match response {
                ForwardResponse::LeaseTimeToLive(answer) => Some(answer),
                _ => None,
            },
        )
        .await
    }

    /// Asks the leader a question only it can answer (lease time): itself, or over the peer
    /// port. Questions change nothing, so every failure is retried, each attempt bounded by
    /// `QUESTION_ATTEMPT_TIMEOUT` so that a dead or paused leader costs one attempt, not the
    /// whole request timeout.
    async fn ask_leader<T>(
        &self,
        local: impl Fn(&LeaseAuthority) -> Result<T, ForwardError>,
        request: ForwardRequest,
        extract: impl Fn(ForwardResponse) -> Option<Result<T, ForwardError>>,
    ) -> Result<T, ServerError> {
        let request = &request;
        let (local, extract) = (&local, &extract);
        self.through_leader(|leader, deadline| async move {
            let answer = if leader == self.id {
                local(&self.leases)
            } else {
                let attempt_deadline = deadline.min(Instant::now() + QUESTION_ATTEMPT_TIMEOUT);
                match self.forward(leader, request.clone(), attempt_deadline).await {
                    Attempt::Done(Ok(response)) => match extract(response) {
                        Some(answer) => answer,
                        None => return Attempt::Retry,
                    },
                    Attempt::Done(Err(_)) | Attempt::Retry => return Attempt::Retry,
                }
            };
            match answer {
                Ok(value) => Attempt::Done(Ok(value)),
                Err(_) => Attempt::Retry,
            }
        })
        .await
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow_watched().clone()
    }

    /// openraft's own counters and latency percentiles (batch sizes; time from proposal to
    /// receipt, submission, persistence, commit and apply of each entry), as a table; `None`
    /// once Raft has stopped. For `/debug/raft`: where a write's time goes inside Raft.
    pub async fn raft_runtime_stats(&self) -> Option<String> {
        let stats = self.raft.runtime_stats().await.ok()?;
        Some(stats.display().human_readable().to_string())
    }

    pub fn raft_term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The bytes of the state's tables (etcd's backend size; the Raft log is apart, as etcd's WAL).
    pub fn db_size_bytes(&self) -> u64 {
        self.engine.state_size_bytes()
    }

    /// Every byte the engine takes on disk, Raft log and write-ahead logs included.
    pub fn disk_size_bytes(&self) -> u64 {
        self.engine.size_bytes()
    }

    /// How many requests of each kind this member forwarded to the leader since it started.
    pub fn forwarded_requests(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FORWARD_KINDS.iter().zip(&self.forwarded.by_kind).map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
    }

    /// Replicates `request` through the leader and returns what applying it answered. Errors
    /// say whether the command may have been applied (`ServerError::is_definite`). A lease id
    /// left 0 (LeaseGrant, Register, LeasedPut) is the leader's to choose (`leader_write`).
    pub async fn propose<P: Proposal>(&self, request: P) -> Result<P::Response, ServerError> {
        let command = request.into();
        let size = command::validate(&command, Origin::Member(self.id), self.max_request_bytes)?;
        self.check_apply_lag()?;
        self.check_quota(&command, size).await?;
        let _pending = self.counters.try_proposing(PROPOSALS_PENDING_MAX).ok_or(ServerError::TooManyRequests)?;
        let response = self
            .through_leader(|leader, deadline| {
                let command = command.clone();
                async move {
                    if leader == self.id {
                        self.write_local(command, size, deadline).await
                    } else {
                        self.write_forwarded(leader, command, size, deadline).await
                    }
                }
            })
            .await
            .inspect_err(|_| self.counters.proposal_failed())?;
        answer::<P>(response)
    }

    /// Refuses a write while this member's state machine trails its log by more than
    /// `APPLY_LAG_ENTRIES_MAX` entries, as etcd does.
    fn check_apply_lag(&self) -> Result<(), ServerError> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let index = |log_id: Option<&crate::raft::LogId>| log_id.map_or(0, |log_id| log_id.index);
        match apply_lag_too_far(index(metrics.local_committed.as_ref()), index(metrics.last_applied.as_ref())) {
            true => Err(ServerError::TooManyRequests),
            false => Ok(()),
        }
    }

    /// Proposes `command` through this member's own Raft only, never forwarding it: for
    /// decisions that hold only for the leadership that made them, such as a lease expiring on
    /// this leader's clock. If this member was deposed (paused, partitioned) its entry cannot
    /// commit, so a stale decision dies with the leadership that made it.
    pub async fn propose_as_leader<P: Proposal>(&self, request: P) -> Result<P::Response, ServerError> {
        let command = request.into();
        let size = command::validate(&command, Origin::Leader, self.max_request_bytes)?;
        match self.write_local(command, size, Instant::now() + REQUEST_TIMEOUT).await {
            Attempt::Done(response) => answer::<P>(response?),
            Attempt::Retry => Err(ServerError::NoLeader),
        }
    }

    /// Runs `attempt` against the current leader until it is done or `REQUEST_TIMEOUT` passes,
    /// retrying only attempts that certainly had no effect (no leader, or not the leader any more).
    pub(super) async fn through_leader<T, F, Fut>(&self, attempt: F) -> Result<T, ServerError>
    where
        F: Fn(MemberId, Instant) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let leader = self.leader_before(deadline).await?;
            match attempt(leader, deadline).await {
                Attempt::Done(result) => return result,
                Attempt::Retry if Instant::now() + RETRY_INTERVAL < deadline => {
                    tokio::time::sleep(RETRY_INTERVAL).await
                }
                Attempt::Retry => return Err(ServerError::Timeout),
            }
        }
    }

    async fn leader_before(&self, deadline: Instant) -> Result<MemberId, ServerError> {
        if let Some(leader) = self.raft.metrics().borrow_watched().current_leader {
            return Ok(leader);
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a leader").await {
            Ok(metrics) => metrics.current_leader.ok_or(ServerError::NoLeader),
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::NoLeader),
        }
    }

    pub(super) async fn forward(
        &self,
        leader: MemberId,
        request: ForwardRequest,
        deadline: Instant,
    ) -> Attempt<ForwardResponse> {
        let node = self.raft.metrics().borrow_watched().membership_config.membership().get_node(&leader).cloned();
        let Some(node) = node else { return Attempt::Retry };
        let reached = raft::peer_url(&node).and_then(|url| Ok((url, self.peers.get(url)?)));
        let (url, client) = match reached {
            Ok(reached) => reached,
            Err(e) => {
                tracing::warn!(leader, "cannot reach leader: {e}");
                return Attempt::Retry;
            }
        };
        self.forwarded.count(&request);
        if self.forward_links.streams_to(url) {
            match self.forward_links.send(url, client.clone(), &request, deadline).await {
                Delivery::Answered(response) => return Attempt::Done(Ok(response)),
                Delivery::NotDelivered => return Attempt::Retry,
                Delivery::Lost => return Attempt::Done(Err(ServerError::Timeout)),
                Delivery::GoUnary => {}
            }
        }
        forward_unary(leader, client, &request, deadline).await
    }

    /// Whether this member serves as a learner now (it answers almost nothing:
    /// `api::learner_guard`): it is not a voter in the membership it knows. That includes a
    /// member that has just joined and not yet received the log entry that lists it: it
    /// cannot know yet whether it may vote, and it holds nothing, so it must not take writes
    /// or answer linearizable reads (etcd's joiner knows its role from its peers at start).
    pub fn is_learner(&self) -> bool {
        let metrics = self.raft.metrics();
        let config = metrics.borrow_watched().membership_config.clone();
        let is_voter = config.membership().voter_ids().any(|id| id == self.id);
        !is_voter
    }

    /// The members as Raft knows them, with what each published about itself.
    pub fn member_list(&self) -> Vec<MemberInfo> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let published = self.shared.members();
        let learners: Vec<MemberId> = membership.learner_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| {
                let attributes = published.get(id);
                MemberInfo {
                    id: *id,
                    name: attributes.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_urls: node.peer_urls.clone(),
                    client_urls: attributes.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: learners.contains(id),
                }
            })
            .collect()
    }
}

/// What the state machine answered `P`: its response type, or the rule that rejected it.
fn answer<P: Proposal>(response: CommandResponse) -> Result<P::Response, ServerError> {
    match response {
        CommandResponse::Rejected(e) => Err(e.into()),
        response => P::response(response).ok_or(ServerError::Mismatched),
    }
}

/// `request` forwarded to `leader` in a unary call: to a leader without a forward stream.
async fn forward_unary(
    leader: MemberId,
    mut client: raft::PeerClient,
    request: &ForwardRequest,
    deadline: Instant,
) -> Attempt<ForwardResponse> {
    let data = match raft::encode(request) {
        Ok(data) => data,
        Err(_) => return Attempt::Done(Err(ServerError::RequestTooLarge)),
    };
    let call = tokio::time::timeout_at(deadline, client.forward(keel_proto::peer::RaftMessage { data }));
    match call.await {
        Err(_) => Attempt::Done(Err(ServerError::Timeout)),
        Ok(Err(status)) if is_connect_error(&status) => Attempt::Retry,
        Ok(Err(status)) => {
            tracing::debug!(leader, "forward failed: {status}");
            Attempt::Done(Err(ServerError::Timeout))
        }
        Ok(Ok(response)) => match raft::decode(&response.into_inner().data) {
            Ok(response) => Attempt::Done(Ok(response)),
            Err(_) => Attempt::Done(Err(ServerError::Timeout)),
        },
    }
}

/// A connection that was refused: the request was never sent, so retrying it is safe. Anything
/// else (a reset, a timeout) may have happened after the leader received the request.
pub(crate) fn is_connect_error(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = error.source();
    }
    false
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: MemberId,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// Whether a member that has committed `committed` and applied `applied` is too far behind to
/// take writes.
fn apply_lag_too_far(committed: u64, applied: u64) -> bool {
    committed.saturating_sub(applied) > crate::limits::APPLY_LAG_ENTRIES_MAX
}

#[cfg(test)]
mod apply_lag_tests {
    use super::apply_lag_too_far;
    use crate::limits::APPLY_LAG_ENTRIES_MAX;

    #[test]
    fn writes_are_refused_only_past_etcds_gap() {
        assert!(!apply_lag_too_far(APPLY_LAG_ENTRIES_MAX, 0));
        assert!(apply_lag_too_far(APPLY_LAG_ENTRIES_MAX + 1, 0));
        assert!(!apply_lag_too_far(10, 20), "applied ahead of a stale committed figure is no lag");
    }
}
