//! etcd's request checks (v3rpc/key.go), done before anything is proposed: a request that
//! fails here changes nothing and costs no Raft round.

use std::collections::BTreeSet;

use keel_proto::etcd::{PbDeleteRequest, PbPutRequest, PbRangeRequest, PbTxnOpRequest, PbTxnRequest, PbTxnRequestOp};

use crate::error::ServerError;
use crate::limits::TXN_OPS_MAX;

pub fn range(r: &PbRangeRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    if !(0..=2).contains(&r.sort_order) || !(0..=4).contains(&r.sort_target) {
        return Err(ServerError::InvalidSortOption);
    }
    Ok(())
}

pub fn put(r: &PbPutRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(ServerError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(ServerError::LeaseProvided);
    }
    Ok(())
}

pub fn delete(r: &PbDeleteRequest) -> Result<(), ServerError> {
    if r.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

pub fn txn(r: &PbTxnRequest) -> Result<(), ServerError> {
    if r.compare.len() > TXN_OPS_MAX || r.success.len() > TXN_OPS_MAX || r.failure.len() > TXN_OPS_MAX {
        return Err(ServerError::TooManyTxnOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(ServerError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        request_op(op)?;
    }
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn request_op(op: &PbTxnRequestOp) -> Result<(), ServerError> {
    match &op.request {
        None => Ok(()),
        Some(PbTxnOpRequest::RequestRange(r)) => range(r),
        Some(PbTxnOpRequest::RequestPut(r)) => put(r),
        Some(PbTxnOpRequest::RequestDeleteRange(r)) => delete(r),
        Some(PbTxnOpRequest::RequestTxn(r)) => txn(r),
    }
}

/// A deleted interval `[from, to)`; `to` empty means the single key `from`, `[0]` means to the end.
type Interval = (Vec<u8>, Vec<u8>);

fn interval_contains((from, to): &Interval, key: &[u8]) -> bool {
    match to.as_slice() {
        [] => key == from.as_slice(),
        [0] => key >= from.as_slice(),
        to => key >= from.as_slice() && key < to,
    }
}

/// etcd's duplicate-key rule: within one branch (nested txns included) a key may be put at
/// most once, and never both put and deleted.
fn check_intervals(ops: &[PbTxnRequestOp]) -> Result<(), ServerError> {
    let (deletes, puts) = intervals(ops)?;
    if puts.iter().any(|key| deletes.iter().any(|d| interval_contains(d, key))) {
        return Err(ServerError::DuplicateKey);
    }
    Ok(())
}

fn intervals(ops: &[PbTxnRequestOp]) -> Result<(Vec<Interval>, BTreeSet<Vec<u8>>), ServerError> {
    let mut deletes = Vec::new();
    let mut puts = BTreeSet::new();
    // Nested txns first: their puts are checked against this level's puts and deletes below.
    for op in ops {
        if let Some(PbTxnOpRequest::RequestTxn(nested)) = &op.request {
            let (success_deletes, success_puts) = intervals(&nested.success)?;
            let (failure_deletes, failure_puts) = intervals(&nested.failure)?;
            check_disjoint(&success_puts, &success_deletes)?;
            check_disjoint(&failure_puts, &failure_deletes)?;
            // Only one branch of a nested txn runs, so both may name the same key.
            for key in success_puts.into_iter().chain(failure_puts) {
                puts.insert(key);
            }
            deletes.extend(success_deletes);
            deletes.extend(failure_deletes);
        }
    }
    for op in ops {
        match &op.request {
            Some(PbTxnOpRequest::RequestPut(put)) if !puts.insert(put.key.clone()) => {
                return Err(ServerError::DuplicateKey)
            }
            Some(PbTxnOpRequest::RequestDeleteRange(delete)) => {
                deletes.push((delete.key.clone(), delete.range_end.clone()))
            }
            _ => {}
        }
    }
    Ok((deletes, puts))
}

fn check_disjoint(puts: &BTreeSet<Vec<u8>>, deletes: &[Interval]) -> Result<(), ServerError> {
    if puts.iter().any(|key| deletes.iter().any(|d| interval_contains(d, key))) {
        return Err(ServerError::DuplicateKey);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(key: &str) -> PbTxnRequestOp {
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestPut(PbPutRequest { key: key.into(), ..Default::default() })),
        }
    }

    fn delete_op(key: &str, range_end: &str) -> PbTxnRequestOp {
        PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                key: key.into(),
                range_end: range_end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn_of(success: Vec<PbTxnRequestOp>) -> PbTxnRequest {
        PbTxnRequest { success, ..Default::default() }
    }

    #[test]
    fn duplicate_keys() {
        let cases: Vec<(Vec<PbTxnRequestOp>, bool)> = vec![
            (vec![put_op("a"), put_op("b")], true),
            (vec![put_op("a"), put_op("a")], false),
            (vec![put_op("a"), delete_op("a", "")], false),
            (vec![put_op("b"), delete_op("a", "c")], false),
            (vec![put_op("c"), delete_op("a", "c")], true),
            (vec![delete_op("a", ""), delete_op("a", "")], true),
            (
                vec![
                    put_op("a"),
                    PbTxnRequestOp { request: Some(PbTxnOpRequest::RequestTxn(txn_of(vec![put_op("a")]))) },
                ],
                false,
            ),
        ];
        for (ops, ok) in cases {
            assert_eq!(txn(&txn_of(ops.clone())).is_ok(), ok, "{ops:?}");
        }
    }

    #[test]
    fn too_many_ops() {
        let ops = (0..=TXN_OPS_MAX).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(txn(&txn_of(ops)), Err(ServerError::TooManyTxnOps));
    }
}
