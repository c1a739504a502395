//! Decoding nested transactions with a depth limit, and `Authorized` commands never nested. A `TxnRequest` may hold `TxnRequest`s, and
//! postcard (like serde's derives) decodes recursively without any bound: a forged log entry or
//! peer message nested a few thousand deep would overflow the stack. Decoding counts the txn
//! levels it is inside on this thread and refuses to go past `TXN_NESTING_MAX`.
//!
//! The byte format is exactly the derived one: only decoding gains the check.
// Outside bytes reach this module: an index out of range would be a panic on input.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::cell::Cell;

use serde::{Deserialize, Deserializer};

use crate::auth::etcd::Caller;
use crate::command::{Authorized, Command, Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse, TXN_NESTING_MAX};

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

thread_local! {
    /// Whether an `Authorized` command is being decoded on this thread right now.
    static IN_AUTHORIZED: Cell<bool> = const { Cell::new(false) };
}

/// Inside an `Authorized` command; leaving it (drop, also on error) steps back out.
struct InAuthorized;

impl InAuthorized {
    fn enter<E: serde::de::Error>() -> Result<InAuthorized, E> {
        IN_AUTHORIZED.with(|inside| {
            if inside.replace(true) {
                return Err(E::custom("an authorized command inside another"));
            }
            Ok(InAuthorized)
        })
    }
}

impl Drop for InAuthorized {
    fn drop(&mut self) {
        IN_AUTHORIZED.with(|inside| inside.set(false));
    }
}

#[derive(Deserialize)]
#[serde(rename = "Authorized")]
struct AuthorizedFields {
    caller: Option<Caller>,
    command: Box<Command>,
}

/// An `Authorized` is never nested: a forged entry cannot recurse through it.
impl<'de> Deserialize<'de> for Authorized {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _inside = InAuthorized::enter::<D::Error>()?;
        let AuthorizedFields { caller, command } = AuthorizedFields::deserialize(deserializer)?;
        Ok(Authorized { caller, command })
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

    #[test]
    fn an_authorized_command_decodes_and_one_inside_another_is_refused() {
        use crate::auth::etcd::Caller;
        use crate::command::{Authorized, PutRequest};

        let put = Command::Put(PutRequest { key: b"k".to_vec(), ..PutRequest::default() });
        let caller = Some(Caller { user: "alice".into(), auth_revision: 3 });
        let once = Command::Authorized(Authorized { caller: caller.clone(), command: Box::new(put) });
        let bytes = postcard::to_stdvec(&once).expect("encode");
        assert_eq!(postcard::from_bytes::<Command>(&bytes).expect("decodes"), once);
        let twice = Command::Authorized(Authorized { caller, command: Box::new(once.clone()) });
        assert!(postcard::from_bytes::<Command>(&postcard::to_stdvec(&twice).expect("encode")).is_err());
        // Decoding after a refusal starts afresh.
        assert_eq!(postcard::from_bytes::<Command>(&bytes).expect("decodes"), once);
    }
}
