//! The checks every command passes before it is proposed, whoever proposes it: a client's
//! request on this member, the same request forwarded by a follower, or the leader's own
//! decisions. A forwarded command is bytes from another process; it gets exactly the checks a
//! local one gets, on the leader, with the leader's limits.
//!
//! The size comes first and bounds everything after it; the txn rules are etcd's
//! (`v3rpc/key.go`: `checkTxnRequest`, then `checkIntervals`), in the same order and with the same
//! answers, done in O(n log n) so a large txn cannot freeze the member. Then writes under a
//! native service's reserved prefix are refused (`reserved`), after etcd's own checks so that a
//! request etcd refuses gets etcd's answer.

use std::collections::{BTreeMap, BTreeSet};

use keel_client::names;

use super::reserved::check_reserved;
use super::{Command, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use crate::api::EventsError;
use crate::error::ServerError;
use crate::limits::{TXN_NESTING_MAX, TXN_OPS_MAX, TXN_OPS_TOTAL_MAX};

/// Who proposes a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Proposed through `Member::propose` on member `0`: a client's request, or the member's
    /// announcement of itself, whether this member is the leader or forwards it there.
    Member(u64),
    /// Decided by the leader itself, never forwarded: lease expiry, retention trims, the
    /// cluster's secret key.
    Leader,
}

/// Checks `command` from `origin` against etcd's rules and this member's limits; answers its
/// encoded size.
pub fn validate(command: &Command, origin: Origin, max_request_bytes: usize) -> Result<usize, ServerError> {
    let size = crate::raft::encode(command).map_err(|_| ServerError::RequestTooLarge)?.len();
    if size > max_request_bytes {
        return Err(ServerError::RequestTooLarge);
    }
    match command {
        Command::Put(put) => check_put(put)?,
        Command::DeleteRange(delete) => check_delete(delete)?,
        Command::Txn(txn) => check_txn(txn)?,
        Command::LeaseGrant(grant) => check_ttl(grant.ttl_secs)?,
        Command::Register(register) => check_ttl(register.ttl_secs)?,
        Command::LeasedPut(put) => check_ttl(put.ttl_secs)?,
        Command::Publish(publish) => check_topic(&publish.topic)?,
        Command::GroupJoin(join) => check_group(&join.topic, &join.group)?,
        Command::GroupClaim(claim) => {
            check_group(&claim.topic, &claim.group)?;
            names::CONSUMER.check(&claim.consumer).map_err(EventsError::from)?;
        }
        Command::GroupSettle(settle) => check_group(&settle.topic, &settle.group)?,
        Command::SetRetention(set) => {
            check_topic(&set.topic)?;
            if set.retention.max_age.is_some_and(|age| age > keel_client::events::RETENTION_AGE_MAX) {
                return Err(EventsError::MaxAgeTooLong.into());
            }
        }
        Command::PublishMember(attributes) if origin != Origin::Member(attributes.member_id) => {
            return Err(ServerError::InvalidCommand("a member publishes its own attributes only"));
        }
        Command::InitSecretKey(_) | Command::TrimTopic(_) if origin != Origin::Leader => {
            return Err(ServerError::InvalidCommand("only the leader proposes this command"));
        }
        _ => {}
    }
    check_reserved(command)?;
    Ok(size)
}

/// The events API's name rules (`keel_client::names`), for commands that did not come through it.
fn check_topic(topic: &str) -> Result<(), ServerError> {
    Ok(crate::api::check_topic(topic)?)
}

fn check_group(topic: &str, group: &str) -> Result<(), ServerError> {
    check_topic(topic)?;
    Ok(names::GROUP.check(group).map_err(EventsError::from)?)
}

fn check_ttl(ttl_secs: i64) -> Result<(), ServerError> {
    if !crate::lease::ttl_is_allowed(ttl_secs) {
        return Err(ServerError::LeaseTtlTooLarge);
    }
    Ok(())
}

fn check_range(range: &RangeRequest) -> Result<(), ServerError> {
    if range.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

fn check_put(put: &PutRequest) -> Result<(), ServerError> {
    if put.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    if put.ignore_value && !put.value.is_empty() {
        return Err(ServerError::ValueProvided);
    }
    if put.ignore_lease && put.lease != 0 {
        return Err(ServerError::LeaseProvided);
    }
    Ok(())
}

fn check_delete(delete: &DeleteRangeRequest) -> Result<(), ServerError> {
    if delete.key.is_empty() {
        return Err(ServerError::EmptyKey);
    }
    Ok(())
}

/// etcd's txn checks: the shape of every level first, then the put/delete overlaps of each
/// branch.
fn check_txn(txn: &TxnRequest) -> Result<(), ServerError> {
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
    *ops_total = ops_total.saturating_add(txn.compare.len() + txn.success.len() + txn.failure.len());
    if widest > TXN_OPS_MAX || *ops_total > TXN_OPS_TOTAL_MAX || level > TXN_NESTING_MAX {
        return Err(ServerError::TooManyTxnOps);
    }
    if txn.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(ServerError::EmptyKey);
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            RequestOp::Range(range) => check_range(range)?,
            RequestOp::Put(put) => check_put(put)?,
            RequestOp::DeleteRange(delete) => check_delete(delete)?,
            RequestOp::Txn(nested) => check_txn_shape(nested, level + 1, ops_total)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Compare, CompareResult, CompareTarget};

    fn put(key: &str) -> RequestOp {
        RequestOp::Put(PutRequest { key: key.into(), ..PutRequest::default() })
    }

    fn delete(key: &str, range_end: &str) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest { key: key.into(), range_end: range_end.into(), prev_kv: false })
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp::Txn(TxnRequest { compare: Vec::new(), success, failure })
    }

    fn txn(success: Vec<RequestOp>) -> Command {
        Command::Txn(TxnRequest { success, ..TxnRequest::default() })
    }

    fn check(command: &Command) -> Result<usize, ServerError> {
        validate(command, Origin::Member(1), crate::limits::REQUEST_BYTES_MAX)
    }

    #[test]
    fn duplicate_keys_follow_etcds_check_intervals() {
        let cases: Vec<(Vec<RequestOp>, bool)> = vec![
            (vec![put("a"), put("b")], true),
            (vec![put("a"), put("a")], false),
            (vec![put("a"), delete("a", "")], false),
            (vec![put("b"), delete("a", "c")], false),
            (vec![put("c"), delete("a", "c")], true),
            (vec![delete("a", ""), delete("a", "")], true),
            // etcd's interval tree sees [key, "\0") as empty: a "from key" delete never clashes.
            (vec![put("b"), delete("a", "\0")], true),
            (vec![put("a"), nested(vec![put("a")], vec![])], false),
            // Both branches of a nested txn may put one key: only one of them runs.
            (vec![nested(vec![put("a")], vec![put("a")])], true),
            (vec![nested(vec![put("a")], vec![]), nested(vec![], vec![put("a")])], false),
            (vec![delete("a", "z"), nested(vec![put("m")], vec![])], false),
            // A nested txn's deletes reach the puts of this level.
            (vec![put("m"), nested(vec![delete("a", "z")], vec![])], false),
        ];
        for (ops, ok) in cases {
            let result = check(&txn(ops.clone()));
            assert_eq!(result.is_ok(), ok, "{ops:?}: {result:?}");
            if !ok {
                assert_eq!(result, Err(ServerError::DuplicateKey), "{ops:?}");
            }
        }
    }

    #[test]
    fn shape_errors_are_etcds() {
        let too_wide: Vec<RequestOp> = (0..=TXN_OPS_MAX).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(check(&txn(too_wide)), Err(ServerError::TooManyTxnOps));
        let empty_compare = Command::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(0),
                key: Vec::new(),
                range_end: Vec::new(),
            }],
            ..TxnRequest::default()
        });
        assert_eq!(check(&empty_compare), Err(ServerError::EmptyKey));
        assert_eq!(check(&txn(vec![nested(vec![put("")], vec![])])), Err(ServerError::EmptyKey));
    }

    #[test]
    fn nesting_multiplies_no_more_than_the_total_bound() {
        // 128 nested txns of 128 puts each: every level is within etcd's bound, the sum is not.
        let level: Vec<RequestOp> = (0..TXN_OPS_MAX)
            .map(|i| nested((0..TXN_OPS_MAX).map(|j| put(&format!("k{i}-{j}"))).collect(), vec![]))
            .collect();
        let command = txn(level);
        assert_eq!(validate(&command, Origin::Member(1), usize::MAX), Err(ServerError::TooManyTxnOps));
    }

    #[test]
    fn a_large_txn_is_checked_in_well_under_a_second() {
        // The probe's freeze: ~16k puts against ~16k deletes, quadratic before.
        let mut ops: Vec<RequestOp> = (0..8_000).map(|i| put(&format!("p{i:06}"))).collect();
        ops.extend((0..8_000).map(|i| delete(&format!("q{i:06}"), &format!("q{i:06}x"))));
        let started = std::time::Instant::now();
        let chunks: Vec<RequestOp> = ops.chunks(TXN_OPS_MAX).map(|chunk| nested(chunk.to_vec(), vec![])).collect();
        let command = txn(chunks.into_iter().take(TXN_OPS_MAX).collect());
        assert!(validate(&command, Origin::Member(1), usize::MAX).is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn size_comes_first() {
        let big = Command::Put(PutRequest { key: Vec::new(), value: vec![0; 2_000_000], ..PutRequest::default() });
        assert_eq!(check(&big), Err(ServerError::RequestTooLarge));
    }

    #[test]
    fn leader_decisions_and_member_announcements_come_from_where_they_must() {
        let trim = Command::TrimTopic(crate::command::TrimTopicRequest { topic: "t".into(), before: 1 });
        assert!(check(&trim).is_err());
        assert!(validate(&trim, Origin::Leader, 1 << 20).is_ok());
        let publish = Command::PublishMember(crate::command::MemberAttributes {
            member_id: 7,
            name: "m".into(),
            client_urls: vec![],
        });
        assert!(validate(&publish, Origin::Member(7), 1 << 20).is_ok());
        assert!(validate(&publish, Origin::Member(8), 1 << 20).is_err());
        let nul_topic = Command::Publish(crate::command::PublishRequest { topic: "a\0b".into(), ..Default::default() });
        assert!(check(&nul_topic).is_err(), "a topic name no client may use");
        let huge_ttl = Command::LeaseGrant(crate::command::LeaseGrantRequest { id: 1, ttl_secs: i64::MAX });
        assert_eq!(check(&huge_ttl), Err(ServerError::LeaseTtlTooLarge));
    }

    #[test]
    fn writes_under_a_reserved_prefix_are_refused_from_any_member() {
        let reserved = Err(ServerError::ReservedKey(crate::command::RESERVED_PREFIXES[0]));
        let event_key = Command::Put(PutRequest { key: b"/micro/events/t/0".to_vec(), ..PutRequest::default() });
        assert_eq!(check(&event_key), reserved);
        assert_eq!(validate(&event_key, Origin::Member(8), 1 << 20), reserved, "forwarded by another member");
        assert_eq!(check(&txn(vec![nested(vec![], vec![delete("\0", "\0")])])), reserved);
        // etcd's own checks answer first.
        assert_eq!(
            check(&txn(vec![put("/micro/events/t/0"), put("/micro/events/t/0")])),
            Err(ServerError::DuplicateKey)
        );
        let publish = Command::Publish(crate::command::PublishRequest { topic: "t".into(), ..Default::default() });
        assert!(check(&publish).is_ok(), "the owner's own command");
    }
}
