//! A member's part in etcd's alarms and space quota: the quota and disk-reserve checks before a
//! write is proposed and after writes are applied (raising this member's NOSPACE alarm when one
//! fails), the alarms as the applied state holds them, and defragmentation.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::command::{AlarmAction, AlarmMember, AlarmRequest, AlarmType, Command};
use crate::error::ServerError;
use crate::mvcc::{EventKind, MvccError};

use super::disk_reserve::Shortfall;
use super::Member;

/// Every member checks its own database and disk after applying writes, as etcd's
/// `quotaApplierV3` does: a member that a write took past the quota, or under its disk reserve,
/// raises its own NOSPACE alarm, whichever member the client asked. Batches of deletes alone
/// (which add nothing) are passed over.
pub(super) async fn raise_when_full(member: Arc<Member>, mut stop_rx: watch::Receiver<bool>) {
    if member.quota.limit().is_none() && !member.disk_reserve.is_on() {
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
        if let (true, Err(full)) = (added, member.space_for(0)) {
            member.raise_no_space(full).await;
        }
    }
}

/// Why a write that adds data does not fit.
#[derive(Clone, Copy, Debug)]
enum Full {
    /// The database would pass `--quota-backend-bytes`.
    Quota,
    /// The data dir's filesystem would have less than `--min-free-disk-bytes` free.
    Disk(Shortfall),
}

impl Member {
    /// etcd's `quotaKVServer` check: a write that adds data and would take this member's
    /// database past `--quota-backend-bytes`, or its disk under `--min-free-disk-bytes`, is
    /// refused, and this member's NOSPACE alarm raised through the log (best effort: the
    /// refusal stands whether or not the alarm commits).
    pub(super) async fn check_quota(&self, command: &Command, cost: usize) -> Result<(), ServerError> {
        if !crate::apply::adds_data(command.inner()) {
            return Ok(());
        }
        if let Err(full) = self.space_for(cost) {
            Box::pin(self.raise_no_space(full)).await;
            return Err(MvccError::NoSpace.into());
        }
        Ok(())
    }

    fn space_for(&self, cost: usize) -> Result<(), Full> {
        if !self.quota.fits(self.engine.as_ref(), cost) {
            return Err(Full::Quota);
        }
        self.disk_reserve.check(cost).map_err(Full::Disk)
    }

    /// Raises this member's NOSPACE alarm through the log, unless it is active already.
    async fn raise_no_space(&self, full: Full) {
        if self.alarms(AlarmType::NoSpace).iter().any(|alarm| alarm.member_id == self.id) {
            return;
        }
        match full {
            Full::Quota => {
                tracing::warn!(quota = ?self.quota.limit(), "database space exceeded: raising the NOSPACE alarm")
            }
            Full::Disk(Shortfall { free, reserve }) => tracing::warn!(
                free,
                reserve,
                "the data dir's disk is nearly full (--min-free-disk-bytes): raising the NOSPACE alarm; \
                 make room, then disarm it (etcdctl alarm disarm)"
            ),
        }
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
