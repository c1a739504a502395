//! etcd's checks of a Txn request alone (`v3rpc/key.go`: `checkTxnRequest`, then
//! `checkIntervals`), in the same order and with the same answers, done in O(n log n) so a
//! large txn cannot freeze the member.

use std::collections::{BTreeMap, BTreeSet};

use crate::apply::Apply;
use crate::command::{RangeRequest, RequestOp, TxnRequest};
use crate::error::ServerError;
use crate::limits::{TXN_NESTING_MAX, TXN_OPS_MAX, TXN_OPS_TOTAL_MAX};

/// etcd's txn checks: the shape of every level first, then the put/delete overlaps of each
/// branch.
pub(crate) fn check_txn(txn: &TxnRequest) -> Result<(), ServerError> {
    let mut ops_total = 0;
    check_txn_shape(txn, 1, &mut ops_total)?;
    check_intervals(&txn.success)?;
    check_intervals(&txn.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest` at one level, and recursively below it; also counts every op of
/// every level against `TXN_OPS_TOTAL_MAX` and the levels against `TXN_NESTING_MAX`.
fn check_txn_shape(txn: &TxnRequest, level: usize, ops_total: &mut usize) -> Result<(), ServerError> {
    let widest = txn.compare.len().max(txn.success.len()).max(txn.failure.len());
    let ops = txn.compare.len().saturating_add(txn.success.len()).saturating_add(txn.failure.len());
    *ops_total = ops_total.saturating_add(ops);
    if widest > TXN_OPS_MAX || *ops_total > TXN_OPS_TOTAL_MAX || level > TXN_NESTING_MAX {
        return Err(ServerError::TooManyTxnOps);
    }
    if txn.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(ServerError::EmptyKey);
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            RequestOp::Range(range) => check_range(range)?,
            RequestOp::Put(put) => put.check()?,
            RequestOp::DeleteRange(delete) => delete.check()?,
            RequestOp::Txn(nested) => check_txn_shape(nested, level.saturating_add(1), ops_total)?,
        }
    }
    Ok(())
}

/// The keys put by a branch (nested branches included) and the intervals it deletes.
#[derive(Default)]
struct Writes {
    puts: BTreeSet<Vec<u8>>,
    deletes: Intervals,
}

/// etcd's `checkIntervals`, with its exact rules: within one branch a key may be put once and
/// never inside an interval deleted at its own or a higher level; the two branches of a nested
/// txn may put the same key (only one of them runs); a nested txn's puts are checked against
/// the deletes of this level and of the nested txns before it, not after it.
fn check_intervals(ops: &[RequestOp]) -> Result<Writes, ServerError> {
    let mut writes = Writes::default();
    for op in ops {
        if let RequestOp::DeleteRange(delete) = op {
            writes.deletes.insert(&delete.key, &delete.range_end);
        }
    }
    for op in ops {
        let RequestOp::Txn(nested) = op else { continue };
        let then = check_intervals(&nested.success)?;
        let otherwise = check_intervals(&nested.failure)?;
        for key in &then.puts {
            if writes.puts.contains(key) || writes.deletes.contains(key) {
                return Err(ServerError::DuplicateKey);
            }
        }
        for key in &otherwise.puts {
            let clashes = writes.puts.contains(key) && !then.puts.contains(key);
            if clashes || writes.deletes.contains(key) {
                return Err(ServerError::DuplicateKey);
            }
        }
        writes.puts.extend(then.puts);
        writes.puts.extend(otherwise.puts);
        writes.deletes.absorb(then.deletes);
        writes.deletes.absorb(otherwise.deletes);
    }
    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if writes.deletes.contains(&put.key) || !writes.puts.insert(put.key.clone()) {
            return Err(ServerError::DuplicateKey);
        }
    }
    Ok(writes)
}

/// A union of half-open byte-string intervals `[from, to)`, kept disjoint and sorted, so that
/// "is this key deleted" is one ordered lookup.
#[derive(Default)]
struct Intervals {
    /// from → to, disjoint and not touching.
    by_start: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Intervals {
    /// A delete's interval as etcd's interval tree sees it: `range_end` empty is the single
    /// key (`[key, key\0)`); otherwise `[key, range_end)` compared as strings, so `range_end`
    /// `\0` ("every key from `key`") is an empty interval there and never overlaps a put. That
    /// is etcd 3.4's behaviour and kept on purpose: a request etcd accepts, Keel accepts.
    fn insert(&mut self, key: &[u8], range_end: &[u8]) {
        let to = if range_end.is_empty() {
            let mut next = key.to_vec();
            next.push(0);
            next
        } else {
            range_end.to_vec()
        };
        if to.as_slice() > key {
            self.add(key.to_vec(), to);
        }
    }

    fn add(&mut self, mut from: Vec<u8>, mut to: Vec<u8>) {
        // Merge with the interval that starts at or before `from` if they touch.
        if let Some((start, end)) = self.by_start.range(..=from.clone()).next_back() {
            if *end >= from {
                from = start.clone();
                to = to.max(end.clone());
            }
        }
        // Swallow every interval that starts inside the new one.
        let inside: Vec<Vec<u8>> =
            self.by_start.range(from.clone()..=to.clone()).map(|(start, _)| start.clone()).collect();
        for start in inside {
            if let Some(end) = self.by_start.remove(&start) {
                to = to.max(end);
            }
        }
        self.by_start.insert(from, to);
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.by_start.range(..=key.to_vec()).next_back().is_some_and(|(_, to)| key < to.as_slice())
    }

    fn absorb(&mut self, other: Intervals) {
        for (from, to) in other.by_start {
            self.add(from, to);
        }
    }
}

/// etcd's `checkRangeRequest`.
fn check_range(range: &RangeRequest) -> Result<(), ServerError> {
    if range.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}
