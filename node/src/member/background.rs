//! The member's background duties, each a task that runs until the member stops: publishing
//! its attributes, creating the cluster's secret key once, and (on the leader) expiring leases
//! and trimming topics to their retention.
//! They act only through `Member`'s own API, like any client of it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Member;
use crate::command::{LeaseRevokeRequest, MemberAttributes, TrimTopicRequest};
use crate::lease;

/// Publishes this member's name and client URLs through Raft (etcd's "publish"), retrying
/// until it is committed or the member stops.
pub(super) async fn publish_attributes(member: Arc<Member>, client_urls: Vec<String>, stop_rx: watch::Receiver<bool>) {
    let attributes = MemberAttributes { member_id: member.id, name: member.name.clone(), client_urls };
    while !*stop_rx.borrow() {
        if member.shared.members().get(&member.id) == Some(&attributes) {
            return;
        }
        match member.propose(attributes.clone()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::debug!("publishing member attributes: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Creates the cluster's key for config secrets once: the leader proposes a random key until
/// one is applied (the first applied wins, so a race between leaders is harmless).
pub(super) async fn ensure_secret_key(member: Arc<Member>, mut stop_rx: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop_rx.wait_for(|stop| *stop) => return,
        }
        if member.shared.secret_key().is_some() {
            return;
        }
        if member.metrics().current_leader != Some(member.id) {
            continue;
        }
        if let Err(e) = member.propose_as_leader(crate::dynamic_config::secret::new_key()).await {
            tracing::debug!("creating the cluster's secret key: {e}; retrying");
        }
    }
}

/// On the leader, revokes the leases whose TTL ran out; elsewhere keeps no deadlines at all.
/// Revokes of one check go out together, through this member only (`propose_as_leader`); one
/// that fails is tried again at the next check, if this member still leads.
pub(super) async fn expire_leases(member: Arc<Member>, mut stop_rx: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(lease::EXPIRY_CHECK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop_rx.wait_for(|stop| *stop) => return,
        }
        let expired = member.leases.expired();
        if expired.is_empty() {
            continue;
        }
        tracing::info!(count = expired.len(), "revoking expired leases");
        let revokes = expired.into_iter().map(|id| {
            let member = member.clone();
            async move {
                if let Err(e) = member.propose_as_leader(LeaseRevokeRequest { id }).await {
                    tracing::debug!(lease = %format!("{id:x}"), "revoking expired lease: {e}");
                }
            }
        });
        futures::future::join_all(revokes).await;
    }
}

/// How often the leader checks topics against their retention limits.
const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// On the leader, trims every topic that is over its retention limits, by proposing where to
/// cut it (the cut depends on the leader's clock; applying it does not).
pub(super) async fn enforce_retention(member: Arc<Member>, mut stop_rx: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(RETENTION_CHECK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop_rx.wait_for(|stop| *stop) => return,
        }
        if member.metrics().current_leader != Some(member.id) {
            continue;
        }
        for trim in retention_cuts(&member) {
            let topic = trim.topic.clone();
            if let Err(e) = member.propose_as_leader(trim).await {
                tracing::debug!(%topic, "trimming a topic to its retention: {e}");
            }
        }
    }
}

/// The trims the topics need now.
fn retention_cuts(member: &Member) -> Vec<TrimTopicRequest> {
    let now_ms = crate::store::now_unix_ms();
    let mvcc = member.shared.mvcc();
    let mut trims = Vec::new();
    for (topic, state) in mvcc.topics() {
        if state.retention.is_unlimited() {
            continue;
        }
        match mvcc.retention_cut(&topic, now_ms) {
            Ok(Some(before)) => trims.push(TrimTopicRequest { topic, before }),
            Ok(None) => {}
            Err(e) => tracing::warn!(%topic, "computing a topic's retention: {e:?}"),
        }
    }
    trims
}
