//! Put, DeleteRange and Txn, as etcd 3.4's `apply.go` applies them.
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

use crate::command::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, KeyValue, PutRequest, PutResponse,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use crate::storage::StorageError;

use super::range::KeySpan;
use super::store::{MvccStore, OpError, WriteTxn};
use super::MvccError;

/// What a Put does when `ignore_value`/`ignore_lease` finds no previous value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MissingPrevious {
    /// A Put on its own: etcd's `ErrKeyNotFound`, nothing changed.
    Reject,
    /// Inside a Txn, where the checks before any write found the key: it was deleted by an
    /// earlier op of the same Txn. etcd panics there ("unexpected error during txn"); we keep
    /// the request's own value and lease instead, deterministically.
    UseRequest,
}

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

impl MvccStore {
    pub(super) fn apply_put(&mut self, request: &PutRequest) -> Result<PutResponse, OpError> {
        let mut txn = self.begin_write();
        let response = self.put(&mut txn, request, MissingPrevious::Reject);
        self.end_write(txn);
        response
    }

    pub(super) fn apply_delete_range(&mut self, request: &DeleteRangeRequest) -> Result<DeleteRangeResponse, OpError> {
        let mut txn = self.begin_write();
        let response = self.delete_range(&mut txn, request);
        self.end_write(txn);
        Ok(response?)
    }

    pub(super) fn apply_txn(&mut self, request: &TxnRequest) -> Result<TxnResponse, OpError> {
        let before = self.current_revision;
        let path = self.txn_path(request, before)?;
        if !is_read_only(request) {
            self.check_taken(request, &path, &mut |store, op| store.check_put(op, before))?;
        }
        self.check_taken(request, &path, &mut |store, op| store.check_range(op, before))?;

        let mut txn = self.begin_write();
        let response = self.apply_taken(&mut txn, request, &path);
        self.end_write(txn);
        let mut response = response?;
        response.header_revision = self.current_revision;
        Ok(response)
    }

    /// etcd's `Put` with a write transaction.
    fn put(
        &mut self,
        txn: &mut WriteTxn,
        request: &PutRequest,
        missing: MissingPrevious,
    ) -> Result<PutResponse, OpError> {
        let ignores_previous = request.ignore_value || request.ignore_lease;
        let previous = if ignores_previous || request.prev_kv {
            self.kvs_at(KeySpan::Single(&request.key), txn.read_revision())?.pop()
        } else {
            None
        };
        if ignores_previous && previous.is_none() && missing == MissingPrevious::Reject {
            return Err(MvccError::KeyNotFound.into());
        }
        let value = match &previous {
            Some(previous) if request.ignore_value => previous.value.clone(),
            _ => request.value.clone(),
        };
        let mut lease = match &previous {
            Some(previous) if request.ignore_lease => previous.lease,
            _ => request.lease,
        };
        if lease != 0 && !self.leases.contains(lease) {
            match missing {
                MissingPrevious::Reject => return Err(MvccError::LeaseNotFound.into()),
                // Inside a Txn every lease was checked before any write, except the request's
                // own lease of an `ignore_lease` put whose key an earlier op deleted (the case
                // etcd panics on). Failing here would leave the Txn half-applied: no lease.
                MissingPrevious::UseRequest => lease = 0,
            }
        }
        self.put_key(txn, &request.key, value, lease)?;
        let prev_kv = if request.prev_kv { previous } else { None };
        Ok(PutResponse { header_revision: txn.read_revision(), prev_kv })
    }

    /// etcd's `DeleteRange` with a write transaction. The header revision is the one being
    /// written if this or an earlier op of the transaction changed something.
    fn delete_range(
        &mut self,
        txn: &mut WriteTxn,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StorageError> {
        let span = KeySpan::new(&request.key, &request.range_end);
        let prev_kvs = if request.prev_kv { self.kvs_at(span, txn.read_revision())? } else { Vec::new() };
        let deleted = self.delete_span(txn, span)?;
        Ok(DeleteRangeResponse { header_revision: txn.read_revision(), deleted, prev_kvs })
    }

    /// etcd's `compareToPath`: every compare of every transaction on the taken path, against
    /// the state at `current`.
    fn txn_path(&self, request: &TxnRequest, current: i64) -> Result<TxnPath, StorageError> {
        let mut succeeded = true;
        for compare in &request.compare {
            if !self.compare_holds(compare, current)? {
                succeeded = false;
                break;
            }
        }
        let mut path = TxnPath { succeeded, nested: Vec::new() };
        for op in path.taken(request) {
            if let RequestOp::Txn(nested) = op {
                let nested_path = self.txn_path(nested, current)?;
                path.nested.push(nested_path);
            }
        }
        Ok(path)
    }

    /// etcd's `applyCompare`: every key in range satisfies the compare. With no key in range, a
    /// value compare fails and the others compare a zero key-value.
    fn compare_holds(&self, compare: &Compare, current: i64) -> Result<bool, StorageError> {
        let kvs = self.kvs_at(KeySpan::new(&compare.key, &compare.range_end), current)?;
        if kvs.is_empty() {
            let is_value = matches!(compare.target, CompareTarget::Value(_));
            return Ok(!is_value && compare_kv(compare, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(compare, kv)))
    }

    /// etcd's `checkRequests`: runs `check` on every non-Txn op of the taken path.
    fn check_taken(
        &self,
        request: &TxnRequest,
        path: &TxnPath,
        check: &mut dyn FnMut(&Self, &RequestOp) -> Result<(), OpError>,
    ) -> Result<(), OpError> {
        let mut nested_paths = path.nested.iter();
        for op in path.taken(request) {
            match op {
                RequestOp::Txn(nested) => {
                    // One path per nested Txn of the taken branch: built from this request.
                    let nested_path = nested_paths.next().expect("txn path matches its request");
                    self.check_taken(nested, nested_path, check)?;
                }
                op => check(self, op)?,
            }
        }
        Ok(())
    }

    /// etcd's `checkRequestPut`: the previous value that `ignore_*` needs, and the lease.
    fn check_put(&self, op: &RequestOp, current: i64) -> Result<(), OpError> {
        let RequestOp::Put(put) = op else {
            return Ok(());
        };
        if (put.ignore_value || put.ignore_lease) && self.kvs_at(KeySpan::Single(&put.key), current)?.is_empty() {
            return Err(MvccError::KeyNotFound.into());
        }
        if !put.ignore_lease && put.lease != 0 && !self.leases.contains(put.lease) {
            return Err(MvccError::LeaseNotFound.into());
        }
        Ok(())
    }

    /// etcd's `checkRequestRange`, against the revisions before the transaction.
    fn check_range(&self, op: &RequestOp, current: i64) -> Result<(), OpError> {
        let RequestOp::Range(range) = op else {
            return Ok(());
        };
        match range.revision {
            0 => Ok(()),
            revision if revision > current => Err(MvccError::FutureRevision { current_revision: current }.into()),
            revision if revision < self.compacted => {
                Err(MvccError::Compacted { compact_revision: self.compact_revision() }.into())
            }
            _ => Ok(()),
        }
    }

    /// etcd's `applyTxn`: the ops of the taken branch, in order, each seeing the earlier ones.
    fn apply_taken(
        &mut self,
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
                RequestOp::Range(range) => ResponseOp::Range(self.range_in_view(range, txn.read_revision())?),
                RequestOp::Put(put) => ResponseOp::Put(self.put(txn, put, MissingPrevious::UseRequest)?),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete_range(txn, delete)?),
                RequestOp::Txn(nested) => {
                    let nested_path = nested_paths.next().expect("txn path matches its request");
                    ResponseOp::Txn(self.apply_taken(txn, nested, nested_path)?)
                }
            };
            responses.push(response);
        }
        Ok(TxnResponse { header_revision: 0, succeeded: path.succeeded, responses })
    }
}

/// etcd's `isTxnReadonly`: only Range ops directly in either branch (a nested Txn counts as a
/// write).
fn is_read_only(request: &TxnRequest) -> bool {
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
