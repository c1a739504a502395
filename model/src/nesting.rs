//! Decoding nested transactions with a depth limit. A `TxnRequest` may hold `TxnRequest`s, and
//! postcard (like serde's derives) decodes recursively without any bound: a forged log entry or
//! peer message nested a few thousand deep would overflow the stack. Decoding counts the txn
//! levels it is inside on this thread and refuses to go past `TXN_NESTING_MAX`.
//!
//! The byte format is exactly the derived one: only decoding gains the check.
// Outside bytes reach this module: an index out of range would be a panic on input.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::cell::Cell;

use serde::{Deserialize, Deserializer};

use crate::command::{Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse, TXN_NESTING_MAX};

thread_local! {
    /// Txn levels being decoded on this thread right now. Decoding is synchronous, so a
    /// thread-local is exactly "the levels above this one".
    static TXN_LEVELS: Cell<usize> = const { Cell::new(0) };
}

/// One txn level entered; leaving it (drop, also on error) steps back out.
struct Level;

impl Level {
    fn enter<E: serde::de::Error>() -> Result<Level, E> {
        TXN_LEVELS.with(|levels| {
            let depth = levels.get();
            if depth >= TXN_NESTING_MAX {
                return Err(E::custom(format!("txn nested more than {TXN_NESTING_MAX} levels deep")));
            }
            levels.set(depth + 1);
            Ok(Level)
        })
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        TXN_LEVELS.with(|levels| levels.set(levels.get().saturating_sub(1)));
    }
}

/// The derived layout of `TxnRequest`, decoded once the level is entered.
#[derive(Deserialize)]
#[serde(rename = "TxnRequest")]
struct TxnRequestFields {
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
}

impl<'de> Deserialize<'de> for TxnRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _level = Level::enter::<D::Error>()?;
        let TxnRequestFields { compare, success, failure } = TxnRequestFields::deserialize(deserializer)?;
        Ok(TxnRequest { compare, success, failure })
    }
}

#[derive(Deserialize)]
#[serde(rename = "TxnResponse")]
struct TxnResponseFields {
    header_revision: i64,
    succeeded: bool,
    responses: Vec<ResponseOp>,
}

impl<'de> Deserialize<'de> for TxnResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _level = Level::enter::<D::Error>()?;
        let TxnResponseFields { header_revision, succeeded, responses } = TxnResponseFields::deserialize(deserializer)?;
        Ok(TxnResponse { header_revision, succeeded, responses })
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, RequestOp, TxnRequest};

    fn nested(depth: usize) -> TxnRequest {
        let mut txn = TxnRequest::default();
        for _ in 1..depth {
            txn = TxnRequest { success: vec![RequestOp::Txn(txn)], ..TxnRequest::default() };
        }
        txn
    }

    #[test]
    fn txns_decode_up_to_the_nesting_limit_and_not_past_it() {
        let ok = Command::Txn(nested(crate::command::TXN_NESTING_MAX));
        let bytes = postcard::to_stdvec(&ok).expect("encode");
        assert_eq!(postcard::from_bytes::<Command>(&bytes).expect("decodes"), ok);

        let too_deep = postcard::to_stdvec(&Command::Txn(nested(crate::command::TXN_NESTING_MAX + 1))).expect("encode");
        assert!(postcard::from_bytes::<Command>(&too_deep).is_err());
    }

    #[test]
    fn a_forged_entry_nested_thousands_deep_is_refused_not_a_stack_overflow() {
        // The probe's shape: a Txn whose success op is a Txn, 100,000 times, hand-encoded
        // (encoding it through serde would itself recurse that deep).
        let txn_variant = 2u8; // Command::Txn
        let request_op_txn = 3u8; // RequestOp::Txn
        let mut bytes = vec![txn_variant];
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[0, 1, request_op_txn]); // no compares, one success op: a txn
        }
        bytes.extend_from_slice(&[0, 0, 0]);
        assert!(postcard::from_bytes::<Command>(&bytes).is_err());
    }
}
