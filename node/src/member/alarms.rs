//! A member's part in etcd's alarms and space quota: the quota check before a write is
//! proposed and after writes are applied (raising this member's NOSPACE alarm when it fails), the
//! alarms as the applied state holds them, and defragmentation.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::command::{AlarmAction, AlarmMember, AlarmRequest, AlarmType, Command};
use crate::error::ServerError;
use crate::mvcc::{EventKind, MvccError};

use super::Member;

/// Every member checks its own database after applying writes, as etcd's `quotaApplierV3` does:
/// a member that a write took past the quota raises its own NOSPACE alarm, whichever member the
/// client asked. Batches of deletes alone (which add nothing) are passed over.
pub(super) async fn raise_when_full(member: Arc<Member>, mut stop_rx: watch::Receiver<bool>) {
    if member.quota.limit().is_none() {
        return;
    }
    let mut applied = member.shared.hub().subscribe();
    loop {
        let batch = tokio::select! {
            batch = applied.recv() => batch,
            _ = stop_rx.wait_for(|stop| *stop) => return,
        };
        let added = match batch {
            Ok(batch) => !batch.complete || batch.events.iter().any(|event| event.kind == EventKind::Put),
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if added && !member.quota.fits(member.engine.as_ref(), 0) {
            member.raise_no_space().await;
        }
    }
}

impl Member {
    /// etcd's `quotaKVServer` check: a write that adds data and would take this member's
    /// database past `--quota-backend-bytes` is refused, and this member's NOSPACE alarm raised
    /// through the log (best effort: the refusal stands whether or not the alarm commits).
    pub(super) async fn check_quota(&self, command: &Command, cost: usize) -> Result<(), ServerError> {
        if !crate::apply::adds_data(command.inner()) || self.quota.fits(self.engine.as_ref(), cost) {
            return Ok(());
        }
        Box::pin(self.raise_no_space()).await;
        Err(MvccError::NoSpace.into())
    }

    /// Raises this member's NOSPACE alarm through the log, unless it is active already.
    async fn raise_no_space(&self) {
        if self.alarms(AlarmType::NoSpace).iter().any(|alarm| alarm.member_id == self.id) {
            return;
        }
        tracing::warn!(quota = ?self.quota.limit(), "database space exceeded: raising the NOSPACE alarm");
        let raise = AlarmRequest { action: AlarmAction::Activate, member_id: self.id, alarm: AlarmType::NoSpace };
        if let Err(error) = self.propose(raise).await {
            tracing::warn!("cannot raise the NOSPACE alarm: {error}");
        }
    }

    /// The active alarms of `alarm`'s type (all for `AlarmType::None`), as this member applied them.
    pub fn alarms(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.shared.mvcc().alarms(alarm)
    }

    /// `--quota-backend-bytes` in bytes, `None` when off.
    pub fn quota_bytes(&self) -> Option<u64> {
        self.quota.limit()
    }

    /// Bytes of live data in the database (etcd's `dbSizeInUse`).
    pub fn db_size_in_use_bytes(&self) -> u64 {
        self.engine.state_size_in_use_bytes()
    }

    /// Gives back the space of deleted and compacted records (etcd's defragment), on the
    /// blocking pool; requests go on meanwhile.
    pub async fn defragment(&self) -> Result<(), ServerError> {
        let engine = self.engine.clone();
        let started = std::time::Instant::now();
        let before = engine.state_size_bytes();
        tokio::task::spawn_blocking(move || engine.defragment())
            .await
            .map_err(|e| ServerError::Storage(format!("defragment: {e}")))??;
        self.quota.forget_size();
        let after = self.engine.state_size_bytes();
        tracing::info!(before, after, took = ?started.elapsed(), "defragmented the database");
        Ok(())
    }
}
