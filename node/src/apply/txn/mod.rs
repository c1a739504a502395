//! Txn, as etcd 3.4's `apply.go` applies it; its checks of the request alone are in `check`.
//!
//! The Txn rules that surprise, all kept on purpose:
//! - every compare, including those of nested transactions, is evaluated against the state
//!   before the transaction (etcd's `compareToPath`), while the operations of the taken branches
//!   see the transaction's earlier writes;
//! - before anything is written, the ops of the taken path are checked against that same state:
//!   a Put with `ignore_value`/`ignore_lease` on a missing key rejects the whole Txn with
//!   `KeyNotFound` (only when the Txn has a write at its top level, as etcd's
//!   `isTxnReadonly`), then a Range at a future or compacted revision rejects it;
//! - a Txn changes the revision once if anything changed, each change with its own
//!   sub-revision; nested Txn responses carry header revision 0 (etcd leaves their header empty).

use crate::command::{Compare, CompareResult, CompareTarget, KeyValue, RequestOp, ResponseOp, TxnRequest, TxnResponse};
use crate::error::ServerError;
use crate::mvcc::{KeySpan, MvccError, MvccStore, OpError, WriteTxn};
use crate::storage::StorageError;

use super::delete_range::delete_range;
use super::put::{put, MissingPrevious};
use super::Apply;

pub(crate) mod check;

/// The branch each transaction takes, decided before any of its writes: `nested` holds one path
/// per Txn op of the taken branch, in order.
#[derive(Debug)]
struct TxnPath {
    succeeded: bool,
    nested: Vec<TxnPath>,
}

impl TxnPath {
    fn taken<'r>(&self, request: &'r TxnRequest) -> &'r [RequestOp] {
        if self.succeeded {
            &request.success
        } else {
            &request.failure
        }
    }
}

impl Apply for TxnRequest {
    fn check(&self) -> Result<(), ServerError> {
        check::check_txn(self)
    }

    fn apply(&self, state: &mut MvccStore) -> Result<TxnResponse, OpError> {
        let before = state.current_revision();
        let path = txn_path(state, self, before)?;
        if !is_read_only(self) {
            check_taken(state, self, &path, &mut |state, op| check_put(state, op, before))?;
        }
        check_taken(state, self, &path, &mut |state, op| check_range(state, op, before))?;

        let mut txn = state.begin_write();
        let response = apply_taken(state, &mut txn, self, &path);
        state.end_write(txn);
        let mut response = response?;
        response.header_revision = state.current_revision();
        Ok(response)
    }
}

/// etcd's `compareToPath`: every compare of every transaction on the taken path, against
/// the state at `current`.
fn txn_path(state: &MvccStore, request: &TxnRequest, current: i64) -> Result<TxnPath, StorageError> {
    let mut succeeded = true;
    for compare in &request.compare {
        if !compare_holds(state, compare, current)? {
            succeeded = false;
            break;
        }
    }
    let mut path = TxnPath { succeeded, nested: Vec::new() };
    for op in path.taken(request) {
        if let RequestOp::Txn(nested) = op {
            let nested_path = txn_path(state, nested, current)?;
            path.nested.push(nested_path);
        }
    }
    Ok(path)
}

/// etcd's `applyCompare`: every key in range satisfies the compare. With no key in range, a
/// value compare fails and the others compare a zero key-value.
fn compare_holds(state: &MvccStore, compare: &Compare, current: i64) -> Result<bool, StorageError> {
    let kvs = state.kvs_at(KeySpan::new(&compare.key, &compare.range_end), current)?;
    if kvs.is_empty() {
        let is_value = matches!(compare.target, CompareTarget::Value(_));
        return Ok(!is_value && compare_kv(compare, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(compare, kv)))
}

/// etcd's `checkRequests`: runs `check` on every non-Txn op of the taken path.
fn check_taken(
    state: &MvccStore,
    request: &TxnRequest,
    path: &TxnPath,
    check: &mut dyn FnMut(&MvccStore, &RequestOp) -> Result<(), OpError>,
) -> Result<(), OpError> {
    let mut nested_paths = path.nested.iter();
    for op in path.taken(request) {
        match op {
            RequestOp::Txn(nested) => {
                // One path per nested Txn of the taken branch: built from this request.
                let nested_path = nested_paths.next().expect("txn path matches its request");
                check_taken(state, nested, nested_path, check)?;
            }
            op => check(state, op)?,
        }
    }
    Ok(())
}

/// etcd's `checkRequestPut`: the previous value that `ignore_*` needs, and the lease.
fn check_put(state: &MvccStore, op: &RequestOp, current: i64) -> Result<(), OpError> {
    let RequestOp::Put(put) = op else {
        return Ok(());
    };
    if (put.ignore_value || put.ignore_lease) && state.kvs_at(KeySpan::Single(&put.key), current)?.is_empty() {
        return Err(MvccError::KeyNotFound.into());
    }
    if !put.ignore_lease && put.lease != 0 && !state.leases.contains(put.lease) {
        return Err(MvccError::LeaseNotFound.into());
    }
    Ok(())
}

/// etcd's `checkRequestRange`, against the revisions before the transaction.
fn check_range(state: &MvccStore, op: &RequestOp, current: i64) -> Result<(), OpError> {
    let RequestOp::Range(range) = op else {
        return Ok(());
    };
    match range.revision {
        0 => Ok(()),
        revision if revision > current => Err(MvccError::FutureRevision { current_revision: current }.into()),
        revision if revision < state.compact_main_revision() => {
            Err(MvccError::Compacted { compact_revision: state.compact_revision() }.into())
        }
        _ => Ok(()),
    }
}

/// etcd's `applyTxn`: the ops of the taken branch, in order, each seeing the earlier ones.
fn apply_taken(
    state: &mut MvccStore,
    txn: &mut WriteTxn,
    request: &TxnRequest,
    path: &TxnPath,
) -> Result<TxnResponse, OpError> {
    let mut responses = Vec::with_capacity(path.taken(request).len());
    let mut nested_paths = path.nested.iter();
    for op in path.taken(request) {
        let response = match op {
            // Checked above: the revision is neither future nor compacted, so this cannot be
            // refused.
            RequestOp::Range(range) => ResponseOp::Range(state.range_in_view(range, txn.read_revision())?),
            RequestOp::Put(request) => ResponseOp::Put(put(state, txn, request, MissingPrevious::UseRequest)?),
            RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(delete_range(state, txn, delete)?),
            RequestOp::Txn(nested) => {
                let nested_path = nested_paths.next().expect("txn path matches its request");
                ResponseOp::Txn(apply_taken(state, txn, nested, nested_path)?)
            }
        };
        responses.push(response);
    }
    Ok(TxnResponse { header_revision: 0, succeeded: path.succeeded, responses })
}

/// etcd's `isTxnReadonly`: only Range ops directly in either branch (a nested Txn counts as a
/// write).
pub(super) fn is_read_only(request: &TxnRequest) -> bool {
    request.success.iter().chain(&request.failure).all(|op| matches!(op, RequestOp::Range(_)))
}

/// etcd's `compareKV`.
fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::Create(revision) => kv.create_revision.cmp(revision),
        CompareTarget::Mod(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Value(value) => kv.value.as_slice().cmp(value.as_slice()),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}
