//! Prefixes of the etcd keyspace that a native service owns, which no other command may write.
//!
//! A native service may keep replicated state beside its keys (in `StateMeta`) that must agree
//! with them. A write through the etcd API cannot update that state, so under such a prefix it
//! is refused, statically, before it is proposed: a Put, a DeleteRange whose range merely
//! overlaps the prefix (`del "" --from-key` included), and a Txn with such an op in either
//! branch at any depth, whichever branch would run. Reads, watches and compares are allowed.
//!
//! Per native prefix:
//! - `/micro/events/` is reserved: each topic's next offset, first offset, byte count and
//!   de-duplication ids, and each consumer group's cursor, are replicated state beside the
//!   event keys; a key put or deleted beside a Publish or a trim desynchronises them.
//! - `/micro/registry/`, `/micro/store/`, `/micro/config/` stay writable: go-micro's etcd
//!   registry, store and config plugins write them through the etcd API, and Keel keeps nothing
//!   beside those keys that such a write could contradict (Register and the Store read the keys'
//!   own leases and values; a leaf of any shape is skipped by Config reads).

use super::{Command, RequestOp, TxnRequest};
use crate::error::ServerError;
use crate::keys::prefix_end;
use crate::mvcc::events::EVENTS_PREFIX;

/// A prefix only its owner's commands write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedPrefix {
    pub prefix: &'static str,
    /// The native service that owns it, as the refusal names it.
    pub owner: &'static str,
}

/// Every reserved prefix (see the module's doc for why each native prefix is or is not one).
pub const RESERVED_PREFIXES: [ReservedPrefix; 1] = [ReservedPrefix { prefix: EVENTS_PREFIX, owner: "keel events" }];

/// Refuses `command` if it writes any key under a reserved prefix. Native commands that own a
/// prefix (Publish, TrimTopic) are not key writes in this sense; the keys of a Register and
/// a LeasedPut are checked too, as those commands may come forwarded from another member.
/// The caller has bounded a txn's nesting first.
pub fn check_reserved(command: &Command) -> Result<(), ServerError> {
    match command.inner() {
        Command::Put(put) => check_put(&put.key),
        Command::DeleteRange(delete) => check_delete(&delete.key, &delete.range_end),
        Command::Txn(txn) => check_txn(txn),
        Command::Register(register) => register.puts.iter().try_for_each(|(key, _)| check_put(key)),
        Command::LeasedPut(put) => check_put(&put.key),
        _ => Ok(()),
    }
}

fn check_put(key: &[u8]) -> Result<(), ServerError> {
    match RESERVED_PREFIXES.iter().find(|reserved| key.starts_with(reserved.prefix.as_bytes())) {
        Some(reserved) => Err(ServerError::ReservedKey(*reserved)),
        None => Ok(()),
    }
}

fn check_delete(key: &[u8], range_end: &[u8]) -> Result<(), ServerError> {
    let reached = RESERVED_PREFIXES.iter().find(|reserved| delete_reaches(reserved.prefix.as_bytes(), key, range_end));
    match reached {
        Some(reserved) => Err(ServerError::ReservedKey(*reserved)),
        None => Ok(()),
    }
}

/// Both branches and every level: which branch runs is known only at apply.
fn check_txn(txn: &TxnRequest) -> Result<(), ServerError> {
    txn.success.iter().chain(&txn.failure).try_for_each(|op| match op {
        RequestOp::Put(put) => check_put(&put.key),
        RequestOp::DeleteRange(delete) => check_delete(&delete.key, &delete.range_end),
        RequestOp::Txn(nested) => check_txn(nested),
        RequestOp::Range(_) => Ok(()),
    })
}

/// Whether etcd's DeleteRange of `key`..`range_end` covers any key that starts with `prefix`:
/// `range_end` empty is `key` alone, `"\0"` every key from `key` on, otherwise `[key,
/// range_end)`, empty when inverted.
fn delete_reaches(prefix: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    let below_prefix_end = |from: &[u8]| prefix_end(prefix).is_none_or(|end| from < end.as_slice());
    match range_end {
        [] => key.starts_with(prefix),
        [0] => below_prefix_end(key),
        end => key < end && prefix < end && below_prefix_end(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{DeleteRangeRequest, PutRequest, RangeRequest};

    fn put(key: &[u8]) -> RequestOp {
        RequestOp::Put(PutRequest { key: key.to_vec(), ..PutRequest::default() })
    }

    fn delete(key: &[u8], range_end: &[u8]) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest { key: key.to_vec(), range_end: range_end.to_vec(), prev_kv: false })
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp::Txn(TxnRequest { compare: Vec::new(), success, failure })
    }

    fn command(op: RequestOp) -> Command {
        match op {
            RequestOp::Put(put) => Command::Put(put),
            RequestOp::DeleteRange(delete) => Command::DeleteRange(delete),
            RequestOp::Txn(txn) => Command::Txn(txn),
            RequestOp::Range(_) => unreachable!("not a write"),
        }
    }

    #[test]
    fn writes_reaching_the_events_prefix_are_refused() {
        let refused = Err(ServerError::ReservedKey(RESERVED_PREFIXES[0]));
        let cases: Vec<(RequestOp, bool)> = vec![
            (put(b"/micro/events/x/00000000000000000000"), false),
            (put(b"/micro/events/"), false),
            (put(b"/micro/events"), true),
            (put(b"/micro/eventsx"), true),
            (put(b"/micro/store/x"), true),
            (put(b"/micro/registry/x"), true),
            (put(b"/micro/config/x"), true),
            (delete(b"/micro/events/x/1", b""), false),
            (delete(b"/micro/events/x/", b"/micro/events/x0"), false),
            // etcdctl del "" --from-key, del --prefix /micro, del --from-key below the prefix.
            (delete(b"\0", b"\0"), false),
            (delete(b"/micro", b"/micro0"), false),
            (delete(b"/a", b"\0"), false),
            // Ranges that end at the prefix or start past it touch none of its keys.
            (delete(b"/a", b"/micro/events/"), true),
            (delete(b"/micro/events0", b"\0"), true),
            (delete(b"/micro/events/", b"/a"), true),
            (delete(b"/micro/events", b""), true),
            (delete(b"a", b"\0"), true),
            (nested(vec![put(b"a")], vec![put(b"/micro/events/t/1")]), false),
            (nested(vec![nested(vec![], vec![delete(b"\0", b"\0")])], vec![]), false),
            (nested(vec![put(b"a"), delete(b"b", b"c")], vec![]), true),
            (
                nested(
                    vec![RequestOp::Range(RangeRequest { key: b"/micro/events/".to_vec(), ..Default::default() })],
                    vec![],
                ),
                true,
            ),
        ];
        for (op, allowed) in cases {
            let result = check_reserved(&command(op.clone()));
            assert_eq!(result, if allowed { Ok(()) } else { refused.clone() }, "{op:?}");
        }
    }

    #[test]
    fn the_refusal_names_the_owner_and_the_prefix() {
        let error = ServerError::ReservedKey(RESERVED_PREFIXES[0]);
        assert_eq!(error.to_string(), "key is reserved for keel events: /micro/events/");
    }
}
