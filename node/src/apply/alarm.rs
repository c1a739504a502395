//! Alarm: etcd's alarms, raised and cleared per member through the log (etcd's
//! `applierV3backend.Alarm`), and the gate every command passes while one is active: NOSPACE
//! refuses what adds data (etcd's `applierV3Capped`), CORRUPT every change to the keyspace,
//! leases and topics (etcd's `applierV3Corrupt`). Deletes, compaction and revokes stay allowed
//! under NOSPACE, so an operator can make room.

use crate::command::{
    AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, Command, RequestOp, TxnRequest,
};
use crate::mvcc::{MvccError, MvccStore, OpError, ALARMS_MAX};

use super::Apply;

impl Apply for AlarmRequest {
    fn apply(&self, state: &mut MvccStore) -> Result<AlarmResponse, OpError> {
        let alarm = AlarmMember { member_id: self.member_id, alarm: self.alarm };
        let alarms = match self.action {
            AlarmAction::Get => state.alarms.get(self.alarm),
            // etcd stores a NONE activation and acts on nothing; Keel stores nothing either.
            AlarmAction::Activate if self.alarm == AlarmType::None => Vec::new(),
            AlarmAction::Activate if state.alarms.len() >= ALARMS_MAX && !state.alarms.contains(alarm) => {
                return Err(MvccError::TooManyAlarms.into())
            }
            // etcd answers the alarm whether it was raised now or already.
            AlarmAction::Activate => {
                state.alarms.activate(alarm)?;
                vec![alarm]
            }
            AlarmAction::Deactivate => changed(state.alarms.deactivate(alarm), alarm),
        };
        Ok(AlarmResponse { header_revision: state.current_revision(), alarms })
    }
}

/// etcd answers the alarm a deactivation cleared, and nothing when it was not active.
fn changed(did_change: bool, alarm: AlarmMember) -> Vec<AlarmMember> {
    if did_change {
        vec![alarm]
    } else {
        Vec::new()
    }
}

/// Refuses `command` if an active alarm forbids it. Called on every command before it applies,
/// whoever sent it, so the leader's own lease revokes stop under CORRUPT as in etcd.
pub(super) fn gate(state: &MvccStore, command: &Command) -> Result<(), MvccError> {
    if state.alarms.is_active(AlarmType::Corrupt) && changes_state(command) {
        return Err(MvccError::Corrupt);
    }
    if state.alarms.is_active(AlarmType::NoSpace) && adds_data(command) {
        return Err(MvccError::NoSpace);
    }
    Ok(())
}

/// What etcd's corrupt applier refuses, and Keel's native writes beside it.
fn changes_state(command: &Command) -> bool {
    match command {
        Command::Txn(txn) => !super::txn::is_read_only(txn),
        Command::Put(_)
        | Command::DeleteRange(_)
        | Command::Compact(_)
        | Command::LeaseGrant(_)
        | Command::LeaseRevoke(_)
        | Command::Register(_)
        | Command::LeasedPut(_)
        | Command::Publish(_)
        | Command::GroupJoin(_)
        | Command::GroupClaim(_)
        | Command::GroupSettle(_)
        | Command::SetRetention(_) => true,
        Command::TrimTopic(_)
        | Command::InitSecretKey(_)
        | Command::PublishMember(_)
        | Command::Auth(_)
        | Command::Alarm(_)
        | Command::Authorized(_) => false,
    }
}

/// What etcd's capped applier refuses (Put, LeaseGrant, a Txn with a put), and Keel's native
/// writes that add keys or events.
pub(crate) fn adds_data(command: &Command) -> bool {
    match command {
        Command::Txn(txn) => txn_puts(txn),
        Command::Put(_)
        | Command::LeaseGrant(_)
        | Command::Register(_)
        | Command::LeasedPut(_)
        | Command::Publish(_)
        | Command::GroupJoin(_) => true,
        _ => false,
    }
}

/// Whether a put is in either branch of `txn`, nested txns included (etcd 3.4 counts only its
/// direct ops; a nested put adds data all the same). Walked with a stack, not recursion.
fn txn_puts(txn: &TxnRequest) -> bool {
    let mut pending = vec![txn];
    while let Some(txn) = pending.pop() {
        for op in txn.success.iter().chain(&txn.failure) {
            match op {
                RequestOp::Put(_) => return true,
                RequestOp::Txn(nested) => pending.push(nested),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => {}
            }
        }
    }
    false
}
