//! A client's command with who sent it: checked against the auth state of its point in the log,
//! as etcd's `authApplierV3` checks a request's header, then applied as any command.
//!
//! What each command needs (etcd 3.4's checks, and Keel's where etcd has none or leaves a hole):
//! - Put: WRITE on its key; READ too with `prev_kv`; WRITE on every key already on its lease.
//! - DeleteRange: WRITE on its range; READ too with `prev_kv`.
//! - Txn: READ on every compare's range, and every op of both branches as above, nested txns
//!   included (etcd 3.4 does not look inside a nested txn).
//! - LeaseRevoke: WRITE on every key on the lease (revoking deletes them).
//! - LeaseGrant: an authenticated user (etcd 3.4 lets anyone grant leases).
//! - Compact, alarms and auth changes: root (etcd 3.4 lets anyone compact and raise or clear an
//!   alarm; an anonymous NOSPACE would stop every write).
//! - Keel's native writes, which are keys in go-micro's layout: Register and LeasedPut WRITE on
//!   their keys; Publish, consumer groups and retention WRITE on the topic's keys.

use keel_model::auth::etcd::{Access, AuthError, Caller};

use crate::command::{Authorized, Command, CommandResponse, RequestOp};
use crate::mvcc::events::topic_prefix;
use crate::mvcc::{MvccError, MvccStore, OpError};

/// Checks `authorized`'s sender, then applies its command.
pub(super) fn apply(state: &mut MvccStore, authorized: &Authorized) -> Result<CommandResponse, OpError> {
    check(state, authorized.caller.as_ref(), &authorized.command).map_err(MvccError::Auth)?;
    match authorized.command.as_ref() {
        // Decoding never gives one inside another; a bug that builds one is refused alike.
        Command::Authorized(_) => Err(MvccError::Auth(AuthError::PermissionDenied).into()),
        command => super::apply_op(state, command),
    }
}

/// Whether `caller` may have `command` applied now.
fn check(state: &MvccStore, caller: Option<&Caller>, command: &Command) -> Result<(), AuthError> {
    let auth = state.auth.state();
    if !auth.enabled {
        return Ok(());
    }
    let topic_keys;
    let mut needs = Vec::new();
    match command {
        Command::Compact(_)
        | Command::Auth(_)
        | Command::InitSecretKey(_)
        | Command::PublishMember(_)
        | Command::Alarm(_)
        | Command::Authorized(_) => return auth.check_admin(caller),
        Command::Put(put) => {
            needs.push(Access::write(&put.key, b""));
            if put.prev_kv {
                needs.push(Access::read(&put.key, b""));
            }
            lease_keys(state, put.lease, &mut needs);
        }
        Command::DeleteRange(delete) => {
            needs.push(Access::write(&delete.key, &delete.range_end));
            if delete.prev_kv {
                needs.push(Access::read(&delete.key, &delete.range_end));
            }
        }
        Command::Txn(txn) => txn_needs(txn, &mut needs),
        Command::LeaseGrant(_) => {}
        Command::LeaseRevoke(revoke) => lease_keys(state, revoke.id, &mut needs),
        Command::Register(register) => needs.extend(register.puts.iter().map(|(key, _)| Access::write(key, b""))),
        Command::LeasedPut(put) => needs.push(Access::write(&put.key, b"")),
        Command::Publish(_)
        | Command::GroupJoin(_)
        | Command::GroupClaim(_)
        | Command::GroupSettle(_)
        | Command::SetRetention(_)
        | Command::TrimTopic(_) => {}
    }
    if let Some(topic) = topic_of(command) {
        topic_keys = topic_range(topic);
        needs.push(Access::write(&topic_keys.0, &topic_keys.1));
        if matches!(command, Command::GroupClaim(_)) {
            // A claim hands the topic's events out.
            needs.push(Access::read(&topic_keys.0, &topic_keys.1));
        }
    }
    auth.check_access(caller, &needs)
}

/// The topic an events command changes.
fn topic_of(command: &Command) -> Option<&str> {
    match command {
        Command::Publish(request) => Some(&request.topic),
        Command::GroupJoin(request) => Some(&request.topic),
        Command::GroupClaim(request) => Some(&request.topic),
        Command::GroupSettle(request) => Some(&request.topic),
        Command::SetRetention(request) => Some(&request.topic),
        Command::TrimTopic(request) => Some(&request.topic),
        _ => None,
    }
}

/// The keys of `topic`'s events: its prefix and where that prefix ends.
fn topic_range(topic: &str) -> (Vec<u8>, Vec<u8>) {
    let prefix = topic_prefix(topic);
    let end = crate::keys::prefix_end(&prefix).unwrap_or_else(|| vec![0]);
    (prefix, end)
}

fn lease_keys<'a>(state: &'a MvccStore, lease: i64, needs: &mut Vec<Access<'a>>) {
    if lease == 0 {
        return;
    }
    if let Some(lease) = state.leases.get(lease) {
        needs.extend(lease.keys.iter().map(|key| Access::write(key, b"")));
    }
}

fn txn_needs<'a>(txn: &'a crate::command::TxnRequest, needs: &mut Vec<Access<'a>>) {
    for compare in &txn.compare {
        needs.push(Access::read(&compare.key, &compare.range_end));
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            RequestOp::Range(range) => needs.push(Access::read(&range.key, &range.range_end)),
            RequestOp::Put(put) => {
                needs.push(Access::write(&put.key, b""));
                if put.prev_kv {
                    needs.push(Access::read(&put.key, b""));
                }
            }
            RequestOp::DeleteRange(delete) => {
                needs.push(Access::write(&delete.key, &delete.range_end));
                if delete.prev_kv {
                    needs.push(Access::read(&delete.key, &delete.range_end));
                }
            }
            // Nesting is bounded by decoding (`TXN_NESTING_MAX`), so this recursion is too.
            RequestOp::Txn(nested) => txn_needs(nested, needs),
        }
    }
}
