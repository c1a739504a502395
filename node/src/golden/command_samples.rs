//! The golden samples of the replicated commands: one value of every `Command` variant, every
//! field away from its default, and the request builders the stored-record samples share.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_model::group::GroupOptions;

use crate::command::*;

/// The sample's name for a command. No wildcard: a new variant does not compile until it is
/// named here, and its sample then belongs in `commands`.
pub(super) fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Put(_) => "command-put",
        Command::DeleteRange(_) => "command-delete-range",
        Command::Txn(_) => "command-txn",
        Command::Compact(_) => "command-compact",
        Command::LeaseGrant(_) => "command-lease-grant",
        Command::LeaseRevoke(_) => "command-lease-revoke",
        Command::Register(_) => "command-register",
        Command::LeasedPut(_) => "command-leased-put",
        Command::Publish(_) => "command-publish",
        Command::InitSecretKey(_) => "command-init-secret-key",
        Command::PublishMember(_) => "command-publish-member",
        Command::GroupJoin(_) => "command-group-join",
        Command::GroupClaim(_) => "command-group-claim",
        Command::GroupSettle(_) => "command-group-settle",
        Command::SetRetention(_) => "command-set-retention",
        Command::TrimTopic(_) => "command-trim-topic",
        Command::Auth(command) => super::auth_samples::auth_command_name(command),
        Command::Authorized(_) => "command-authorized",
        Command::Alarm(_) => "command-alarm",
    }
}

pub(super) fn put() -> PutRequest {
    PutRequest {
        key: b"/app/db/host".to_vec(),
        value: vec![0x00, 0x7f, 0x80, 0xff, b'v'],
        lease: 0x1234_5678_9abc_def0,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    }
}

fn range(sort_order: SortOrder, sort_target: SortTarget) -> RangeRequest {
    RangeRequest {
        key: b"a".to_vec(),
        range_end: b"z".to_vec(),
        limit: 10,
        revision: 20,
        sort_order,
        sort_target,
        serializable: true,
        keys_only: true,
        count_only: false,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
    }
}

fn delete_range() -> DeleteRangeRequest {
    DeleteRangeRequest { key: b"a".to_vec(), range_end: vec![0], prev_kv: true }
}

/// A txn with every compare target and result, every op, every sort order and target, and a
/// nested txn.
fn txn() -> TxnRequest {
    let compare = |result, target| Compare { result, target, key: b"k".to_vec(), range_end: b"l".to_vec() };
    let nested = TxnRequest {
        compare: vec![compare(CompareResult::Equal, CompareTarget::Version(0))],
        success: vec![RequestOp::Put(put())],
        failure: vec![RequestOp::DeleteRange(delete_range())],
    };
    TxnRequest {
        compare: vec![
            compare(CompareResult::Equal, CompareTarget::Version(3)),
            compare(CompareResult::Greater, CompareTarget::Create(5)),
            compare(CompareResult::Less, CompareTarget::Mod(7)),
            compare(CompareResult::NotEqual, CompareTarget::Value(b"v".to_vec())),
            compare(CompareResult::Equal, CompareTarget::Lease(-5)),
        ],
        success: vec![
            RequestOp::Range(range(SortOrder::None, SortTarget::Key)),
            RequestOp::Range(range(SortOrder::Ascend, SortTarget::Version)),
            RequestOp::Range(range(SortOrder::Descend, SortTarget::Create)),
            RequestOp::Put(put()),
            RequestOp::DeleteRange(delete_range()),
            RequestOp::Txn(nested),
        ],
        failure: vec![
            RequestOp::Range(range(SortOrder::Descend, SortTarget::Mod)),
            RequestOp::Range(range(SortOrder::Ascend, SortTarget::Value)),
        ],
    }
}

pub(super) fn group_options() -> GroupOptions {
    GroupOptions { ack_wait_ms: 45_000, retry_limit: Some(3), max_in_flight: 100 }
}

pub(super) fn retention() -> Retention {
    Retention { max_events: Some(1_000), max_age: Some(Duration::new(86_400, 123_000_000)), max_bytes: Some(1 << 20) }
}

pub(super) fn member_attributes() -> MemberAttributes {
    MemberAttributes {
        member_id: 0xff00_0000_0000_0001,
        name: "m0".into(),
        client_urls: vec!["http://127.0.0.1:2379".into(), "http://10.0.0.1:2379".into()],
    }
}

pub(super) fn secret_key() -> SecretKey {
    SecretKey((0..32).collect())
}

/// One per variant of `Command` (see `command_name`).
pub(super) fn commands() -> Vec<Command> {
    let mut metadata = BTreeMap::new();
    metadata.insert("content-type".to_string(), "application/json".to_string());
    metadata.insert("trace".to_string(), "abc".to_string());
    vec![
        Command::Put(put()),
        Command::DeleteRange(delete_range()),
        Command::Txn(txn()),
        Command::Compact(CompactRequest { revision: 1_234, physical: true }),
        Command::LeaseGrant(LeaseGrantRequest { id: -5, ttl_secs: 9_000_000_000 }),
        Command::LeaseRevoke(LeaseRevokeRequest { id: i64::MIN }),
        Command::Register(RegisterRequest {
            lease_id: 0x0123_4567_89ab_cdef,
            ttl_secs: 30,
            puts: vec![(b"/micro/registry/a/1".to_vec(), b"{}".to_vec()), (b"k2".to_vec(), Vec::new())],
        }),
        Command::LeasedPut(LeasedPutRequest {
            key: b"/micro/store/db/t/k".to_vec(),
            value: b"{\"value\":\"\"}".to_vec(),
            reuse: 77,
            grant_id: 78,
            ttl_secs: 20,
        }),
        Command::Publish(PublishRequest {
            topic: "orders".into(),
            events: vec![
                NewEvent { id: "e-1".into(), metadata, payload: vec![1, 2, 3, 0xff] },
                NewEvent { id: String::new(), metadata: BTreeMap::new(), payload: Vec::new() },
            ],
            timestamp_ms: 1_700_000_000_123,
        }),
        Command::InitSecretKey(secret_key()),
        Command::PublishMember(member_attributes()),
        Command::GroupJoin(GroupJoinRequest {
            topic: "orders".into(),
            group: "billing".into(),
            start: 5,
            options: group_options(),
        }),
        Command::GroupClaim(GroupClaimRequest {
            topic: "orders".into(),
            group: "billing".into(),
            consumer: "billing-1".into(),
            max: 10,
            auto_ack: true,
            now_ms: 1_700_000_000_456,
        }),
        Command::GroupSettle(GroupSettleRequest {
            topic: "orders".into(),
            group: "billing".into(),
            acks: vec![1, 2, u64::MAX],
            nacks: vec![3],
            now_ms: 1_700_000_000_789,
        }),
        Command::SetRetention(SetRetentionRequest { topic: "orders".into(), retention: retention() }),
        Command::TrimTopic(TrimTopicRequest { topic: "orders".into(), before: 500 }),
        Command::Alarm(AlarmRequest {
            action: AlarmAction::Activate,
            member_id: 0x8e9e_05c5_2164_694d,
            alarm: AlarmType::NoSpace,
        }),
    ]
}
