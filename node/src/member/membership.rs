//! etcd's membership changes (MemberAdd, MemberRemove, MemberUpdate, MemberPromote) on top of
//! openraft's joint-consensus `change_membership`, with etcd 3.4's rules and refusals: a voter
//! is added only while enough members are started and connected (`--strict-reconfig-check`,
//! etcd's default), at most one learner, a learner promoted only once in sync with the leader,
//! a voter removed only when the remaining started members keep a quorum.
//!
//! Only the leader changes the membership: a follower forwards the change
//! (`ForwardRequest::Membership`) and answers once it has applied it itself.
//!
//! MemberAdd gives the member a fresh ID (its peer URLs, the cluster token and the time, as
//! etcd does); the member, started with those URLs, asks a running member for it (`join.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use crate::config;
use crate::error::ServerError;
use crate::raft::{ForwardRequest, ForwardResponse, MemberNode, RaftMetrics};

use super::{Attempt, Member};

/// A change to the membership, as a client asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    Add { peer_urls: Vec<String>, learner: bool },
    Remove { id: u64 },
    Update { id: u64, peer_urls: Vec<String> },
    Promote { id: u64 },
}

/// Why the leader refused a change (etcd's errors), or why it failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipRefusal {
    MemberNotFound,
    PeerUrlExists,
    TooManyLearners,
    MemberNotLearner,
    LearnerNotReady,
    NotEnoughStarted,
    Unhealthy,
    InvalidPeerUrl(String),
    NotLeader,
    /// Raft could not make the change (leadership lost, stopped, a change in progress).
    Failed(String),
}

impl From<MembershipRefusal> for ServerError {
    fn from(refusal: MembershipRefusal) -> ServerError {
        match refusal {
            MembershipRefusal::MemberNotFound => ServerError::MemberNotFound,
            MembershipRefusal::PeerUrlExists => ServerError::PeerUrlExists,
            MembershipRefusal::TooManyLearners => ServerError::TooManyLearners,
            MembershipRefusal::MemberNotLearner => ServerError::MemberNotLearner,
            MembershipRefusal::LearnerNotReady => ServerError::LearnerNotReady,
            MembershipRefusal::NotEnoughStarted => ServerError::NotEnoughStartedMembers,
            MembershipRefusal::Unhealthy => ServerError::UnhealthyCluster,
            MembershipRefusal::InvalidPeerUrl(url) => ServerError::InvalidPeerUrl(url),
            MembershipRefusal::NotLeader => ServerError::NoLeader,
            MembershipRefusal::Failed(why) => ServerError::MembershipFailed(why),
        }
    }
}

/// etcd's `HealthInterval`: a peer heard from within it counts as connected.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// etcd's `readyPercent`: a learner within 90% of the leader's log may be promoted.
const LEARNER_READY_PERCENT: u64 = 90;
/// The most learners a cluster may have (etcd's `maxLearners`).
const LEARNERS_MAX: usize = 1;

impl Member {
    /// Makes `change` through the leader; answers the ID of the member it concerns, once this
    /// member has applied it.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<u64, ServerError> {
        let change = &change;
        let id = self
            .through_leader(|leader, deadline| async move {
                if leader == self.id {
                    return match self.change_as_leader(change).await {
                        Err(MembershipRefusal::NotLeader) => Attempt::Retry,
                        result => Attempt::Done(result.map_err(ServerError::from)),
                    };
                }
                match self.forward(leader, ForwardRequest::Membership(change.clone()), deadline).await {
                    Attempt::Done(Ok(ForwardResponse::Membership(Err(MembershipRefusal::NotLeader)))) => Attempt::Retry,
                    Attempt::Done(Ok(ForwardResponse::Membership(result))) => {
                        Attempt::Done(result.map_err(ServerError::from))
                    }
                    Attempt::Done(Ok(_)) => Attempt::Done(Err(ServerError::Mismatched)),
                    Attempt::Done(Err(error)) => Attempt::Done(Err(error)),
                    Attempt::Retry => Attempt::Retry,
                }
            })
            .await?;
        // Answer with this member's own view of the new membership, as etcd does; a member that
        // removed itself answers from what it committed (it leads nobody any more).
        let removed_itself = matches!(change, MembershipChange::Remove { id } if *id == self.id);
        if !removed_itself {
            self.read_barrier().await?;
        }
        Ok(id)
    }

    /// On the leader: seconds since each other member last acknowledged (never: infinity).
    pub fn peer_ack_ages(&self) -> Vec<(u64, f64)> {
        let metrics = self.metrics();
        let Some(beats) = metrics.heartbeat.as_ref() else { return Vec::new() };
        beats
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, at)| (*id, at.as_ref().map_or(f64::INFINITY, |at| age(at).as_secs_f64())))
            .collect()
    }

    /// The leader's side: etcd's checks, then the change through Raft, committed.
    pub(crate) async fn change_as_leader(&self, change: &MembershipChange) -> Result<u64, MembershipRefusal> {
        let metrics = self.metrics();
        if metrics.current_leader != Some(self.id) {
            return Err(MembershipRefusal::NotLeader);
        }
        let view = View::of(&metrics, &self.shared.members());
        let (id, change) = match change {
            MembershipChange::Add { peer_urls, learner } => {
                let peer_urls = check_urls(peer_urls)?;
                view.check_urls_free(&peer_urls, None)?;
                if *learner && view.learners.len() >= LEARNERS_MAX {
                    return Err(MembershipRefusal::TooManyLearners);
                }
                let id = new_member_id(&peer_urls, &self.cluster_token, &view);
                view.check_can_add(self.id, *learner)?;
                let node = MemberNode { name: String::new(), peer_urls };
                let nodes = BTreeMap::from([(id, node)]);
                (id, if *learner { ChangeMembers::AddNodes(nodes) } else { ChangeMembers::AddVoters(nodes) })
            }
            MembershipChange::Remove { id } => {
                if !view.nodes.contains_key(id) {
                    return Err(MembershipRefusal::MemberNotFound);
                }
                if view.learners.contains(id) {
                    (*id, ChangeMembers::RemoveNodes(BTreeSet::from([*id])))
                } else {
                    view.check_can_remove_voter(*id, self.id)?;
                    (*id, ChangeMembers::RemoveVoters(BTreeSet::from([*id])))
                }
            }
            MembershipChange::Update { id, peer_urls } => {
                let node = view.nodes.get(id).ok_or(MembershipRefusal::MemberNotFound)?;
                let peer_urls = check_urls(peer_urls)?;
                view.check_urls_free(&peer_urls, Some(*id))?;
                let node = MemberNode { name: node.name.clone(), peer_urls };
                (*id, ChangeMembers::SetNodes(BTreeMap::from([(*id, node)])))
            }
            MembershipChange::Promote { id } => {
                if !view.nodes.contains_key(id) {
                    return Err(MembershipRefusal::MemberNotFound);
                }
                if !view.learners.contains(id) {
                    return Err(MembershipRefusal::MemberNotLearner);
                }
                view.check_learner_ready(*id, &metrics)?;
                (*id, ChangeMembers::AddVoterIds(BTreeSet::from([*id])))
            }
        };
        // retain = false: a removed voter leaves the membership, not stays as a learner.
        match self.raft.change_membership(change, false).await {
            Ok(_) => Ok(id),
            Err(error) => {
                tracing::warn!("membership change failed: {error}");
                Err(match error.forward_to_leader() {
                    Some(_) => MembershipRefusal::NotLeader,
                    None => MembershipRefusal::Failed(error.to_string()),
                })
            }
        }
    }
}

/// The membership as the leader sees it, with who is started and connected.
struct View {
    nodes: BTreeMap<u64, MemberNode>,
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
    /// Voters that published their attributes (etcd's "started": they have a name).
    started: BTreeSet<u64>,
    /// Members the leader heard from within `HEALTH_INTERVAL`.
    connected: BTreeSet<u64>,
}

impl View {
    fn of(metrics: &RaftMetrics, published: &BTreeMap<u64, keel_model::command::MemberAttributes>) -> View {
        let membership = metrics.membership_config.membership();
        let nodes: BTreeMap<u64, MemberNode> = membership.nodes().map(|(id, node)| (*id, node.clone())).collect();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        let started = voters.iter().copied().filter(|id| published.contains_key(id)).collect();
        let mut connected: BTreeSet<u64> = metrics
            .heartbeat
            .as_ref()
            .map(|beats| beats.iter().filter(|(_, at)| heard_recently(at)).map(|(id, _)| *id).collect())
            .unwrap_or_default();
        connected.insert(metrics.id);
        View { nodes, voters, learners, started, connected }
    }

    fn check_urls_free(&self, urls: &[String], except: Option<u64>) -> Result<(), MembershipRefusal> {
        let taken = self
            .nodes
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .any(|(_, node)| node.peer_urls.iter().any(|url| urls.contains(url)));
        if taken {
            return Err(MembershipRefusal::PeerUrlExists);
        }
        Ok(())
    }

    /// etcd's `mayAddMember`: for a voter, the started voters keep a quorum of the bigger
    /// cluster; for any member, the leader is connected to every voter.
    fn check_can_add(&self, leader: u64, learner: bool) -> Result<(), MembershipRefusal> {
        if !learner && self.started.len() < quorum(self.voters.len() + 1) {
            return Err(MembershipRefusal::NotEnoughStarted);
        }
        if self.voters.iter().any(|id| *id != leader && !self.connected.contains(id)) {
            return Err(MembershipRefusal::Unhealthy);
        }
        Ok(())
    }

    /// etcd's `mayRemoveMember`: the started voters left keep a quorum, and removing a member
    /// that is up does not leave the connected ones short of one. A member that is down may go.
    fn check_can_remove_voter(&self, id: u64, leader: u64) -> Result<(), MembershipRefusal> {
        let remaining = self.voters.len().saturating_sub(1);
        let started_remaining = self.started.iter().filter(|started| **started != id).count();
        if started_remaining < quorum(remaining) {
            return Err(MembershipRefusal::NotEnoughStarted);
        }
        if id != leader && !self.connected.contains(&id) {
            return Ok(());
        }
        let active = self.voters.iter().filter(|voter| self.connected.contains(voter)).count();
        if active.saturating_sub(1) < quorum(self.voters.len()) {
            return Err(MembershipRefusal::Unhealthy);
        }
        Ok(())
    }

    /// etcd's `isLearnerReady`: the learner's log is within 90% of the leader's.
    fn check_learner_ready(&self, id: u64, metrics: &RaftMetrics) -> Result<(), MembershipRefusal> {
        let leader_index = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&id).cloned().flatten())
            .map_or(0, |log_id| log_id.index);
        if matched.saturating_mul(100) < leader_index.saturating_mul(LEARNER_READY_PERCENT) {
            return Err(MembershipRefusal::LearnerNotReady);
        }
        Ok(())
    }
}

/// What a leader knows of one member's replication, for the dashboard.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicationSeen {
    /// The last log index the member is known to hold.
    pub matched_index: Option<u64>,
    /// How long ago the member last acknowledged the leader.
    pub heard_ago: Option<Duration>,
}

impl Member {
    /// Each member's replication as this member sees it while it leads; empty on a follower.
    pub fn replication_seen(&self) -> BTreeMap<u64, ReplicationSeen> {
        let metrics = self.metrics();
        let mut seen = BTreeMap::new();
        for (id, log_id) in metrics.replication.iter().flatten() {
            let matched_index = log_id.as_ref().map(|log_id| log_id.index);
            seen.insert(*id, ReplicationSeen { matched_index, ..ReplicationSeen::default() });
        }
        for (id, at) in metrics.heartbeat.iter().flatten() {
            seen.entry(*id).or_default().heard_ago = at.as_ref().map(age);
        }
        seen
    }
}

/// Whether the leader heard from a member (`at`: its last acknowledgement) within etcd's
/// `HealthInterval`.
fn heard_recently<I: openraft::Instant>(at: &Option<openraft::metrics::SerdeInstant<I>>) -> bool {
    at.as_ref().is_some_and(|at| age(at) < HEALTH_INTERVAL)
}

fn age<I: openraft::Instant>(at: &openraft::metrics::SerdeInstant<I>) -> Duration {
    openraft::Instant::elapsed(&**at)
}

/// A fresh ID for a member added with `peer_urls`: from the URLs, the cluster token and the
/// time, as etcd makes one, so that a member removed and added again with the same URLs is a new
/// member (it replays its old removal from the log without taking it for its own).
fn new_member_id(peer_urls: &[String], token: &str, view: &View) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut salt = 0u32;
    loop {
        let id = config::member_id(peer_urls, &format!("{token}/{nanos}/{salt}"));
        if !view.nodes.contains_key(&id) {
            return id;
        }
        salt = salt.wrapping_add(1);
    }
}

/// A majority of `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Peer URLs as etcd accepts them: at least one, each http(s)://host:port with nothing after.
fn check_urls(urls: &[String]) -> Result<Vec<String>, MembershipRefusal> {
    if urls.is_empty() {
        return Err(MembershipRefusal::InvalidPeerUrl("no peer URL given".into()));
    }
    for url in urls {
        config::split_urls("--peer-urls", url).map_err(MembershipRefusal::InvalidPeerUrl)?;
    }
    let mut urls = urls.to_vec();
    urls.sort();
    urls.dedup();
    Ok(urls)
}

/// Resolves once `member` has seen itself in the committed membership and then out of it: it
/// was removed, and stops (etcd: "the member has been permanently removed from the cluster").
/// A grace of `REMOVED_GRACE` lets a removed leader answer the request that removed it.
pub async fn removed(member: &Member) {
    wait_until_removed(member).await;
    tokio::time::sleep(REMOVED_GRACE).await;
}

/// How long a removed member goes on before it stops: the answer to the MemberRemove that
/// removed it is on its way.
const REMOVED_GRACE: Duration = Duration::from_millis(500);

async fn wait_until_removed(member: &Member) {
    let mut was_member = false;
    // The server metrics change with roles and memberships only, not with every write.
    let mut metrics = member.raft.server_metrics();
    let mut refused = member.peers.refused_as_stranger();
    loop {
        let (committed, latest) = {
            let metrics = metrics.borrow_watched();
            (metrics.committed_membership_config.clone(), metrics.membership_config.clone())
        };
        let membership = committed.membership();
        let (known, present) = (membership.nodes().next().is_some(), membership.get_node(&member.id).is_some());
        match (known, present) {
            (true, true) => was_member = true,
            (true, false) if was_member => return,
            _ => {}
        }
        // A removed follower seldom sees its removal committed: the leader stops replicating to
        // it as soon as it appends the configuration without it. It learns it from the last
        // configuration it did receive, which leaves it out, and from the others, which refuse
        // its messages (its votes, once it hears no leader) as a stranger's.
        if was_member && *refused.borrow() && leaves_out(latest.membership(), member.id) {
            return;
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
            changed = refused.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Whether the newest configuration of `membership` (the target of a joint change) has no
/// place for `id`, neither as a voter nor as a learner.
fn leaves_out(membership: &openraft::Membership<u64, MemberNode>, id: u64) -> bool {
    let votes = membership.get_joint_config().last().is_some_and(|voters| voters.contains(&id));
    let learns = membership.learner_ids().any(|learner| learner == id);
    !(votes || learns)
}
