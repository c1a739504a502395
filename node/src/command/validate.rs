//! The checks every command passes before it is proposed, whoever proposes it: a client's
//! request on this member, the same request forwarded by a follower, or the leader's own
//! decisions. A forwarded command is bytes from another process; it gets exactly the checks a
//! local one gets, on the leader, with the leader's limits.
//!
//! The size comes first and bounds everything after it; then each command's own checks of its
//! request (`crate::apply`, in the command's file: etcd's for the etcd commands, the name and
//! TTL rules for Keel's); then who may propose what. Then writes under a
//! native service's reserved prefix are refused (`reserved`), after etcd's own checks so that a
//! request etcd refuses gets etcd's answer.

use super::reserved::check_reserved;
use super::{AlarmAction, Command};
use crate::error::ServerError;

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
    crate::apply::check(command)?;
    // A client's command is checked as itself: the wrapper names who sent it, not what it does.
    match command.inner() {
        Command::PublishMember(attributes) if origin != Origin::Member(attributes.member_id) => {
            return Err(ServerError::InvalidCommand("a member publishes its own attributes only"));
        }
        Command::InitSecretKey(_) | Command::TrimTopic(_) if origin != Origin::Leader => {
            return Err(ServerError::InvalidCommand("only the leader proposes this command"));
        }
        _ => {}
    }
    // A client's alarm comes wrapped; an unwrapped one is a member raising its own (its quota).
    if let Command::Alarm(alarm) = command {
        if alarm.action != AlarmAction::Activate || origin != Origin::Member(alarm.member_id) {
            return Err(ServerError::InvalidCommand("a member raises its own alarms only"));
        }
    }
    check_reserved(command)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{
        Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
    };
    use crate::limits::TXN_OPS_MAX;

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
