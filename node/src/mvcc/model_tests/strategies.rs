//! The generated steps: every command the store applies, over small alphabets (so that commands
//! meet on the same keys, leases, topics and groups), with edge values where the store does
//! arithmetic or encodes numbers into keys.

use std::time::Duration;

use proptest::prelude::*;

use keel_model::events::RETENTION_AGE_MAX;
use keel_model::group::GroupOptions;

use crate::command::{
    AlarmAction, AlarmRequest, AlarmType, Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    GroupClaimRequest, GroupJoinRequest, GroupSettleRequest, LeaseGrantRequest, LeaseRevokeRequest, LeasedPutRequest,
    MemberAttributes, NewEvent, PublishRequest, PutRequest, RangeRequest, RegisterRequest, RequestOp, Retention,
    SecretKey, SetRetentionRequest, SortOrder, SortTarget, TrimTopicRequest, TxnRequest,
};

use super::Step;

const KEYS: [&[u8]; 6] = [b"", b"a", b"a\0", b"ab", b"b", b"c"];

/// Topics, one of them the dead-letter topic of another (which can be published to directly).
pub(super) const TOPICS: [&str; 3] = ["t", "u", "t.dead-letter"];
/// Topics of publishes, and of groups, weighted towards one topic and group so that publishes,
/// joins, claims and settles meet.
const PUBLISH_TOPICS: [&str; 5] = ["t", "t", "t", "u", "t.dead-letter"];
const GROUP_TOPICS: [&str; 4] = ["t", "t", "t", "u"];
const GROUPS: [&str; 4] = ["g", "g", "g", "h"];

/// Lease ids at the edges of i64: negative ones are stored with a first byte of 0xff, where
/// hand-rolled prefix ends lost them on reopen. 0 means "no lease" and is never granted.
const EDGE_LEASE_IDS: [i64; 6] = [1, 2, -1, -5, i64::MIN, i64::MAX];

/// Times for publishes, claims, settles and retention: close together (deadlines pass, ids stay
/// within the de-duplication window), far apart (ids expire), backwards, and at the ends of i64
/// (deadlines and ages saturate).
const TIMES_MS: [i64; 9] = [0, 5, 1_000, 2_000, 125_000, 400_000, -7, i64::MIN, i64::MAX];

/// Which half of the commands a sequence leans towards. Both mixes hold every kind of step; in
/// one mix the other half's commands are too rare to meet each other often (a claim needs a
/// join and a publish before it on the same topic and group).
#[derive(Clone, Copy, Debug)]
pub(super) enum Mix {
    /// etcd's commands, leases, Register and LeasedPut.
    Keyspace,
    /// Publish, groups and retention.
    Events,
}

/// The whole sequence: lease ids are drawn once per case (the edges plus three arbitrary ones),
/// so that grants, puts, revokes and registrations meet on the same ids. It opens with a few
/// event commands alone: a claim or a settle means something only after a join and a publish.
pub(super) fn steps(mix: Mix, length: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let arbitrary = any::<i64>().prop_filter("0 is no lease", |id| *id != 0);
    let lease_ids = prop::collection::vec(arbitrary, 3)
        .prop_map(|arbitrary| EDGE_LEASE_IDS.iter().copied().chain(arbitrary).collect::<Vec<i64>>());
    let body = lease_ids.prop_flat_map(move |lease_ids| prop::collection::vec(step(lease_ids, mix), length.clone()));
    (prop::collection::vec(event_step(), 0..12), body)
        .prop_map(|(opening, body)| opening.into_iter().chain(body).collect())
}

/// An event command on topic `t` and group `g`.
fn event_step() -> impl Strategy<Value = Step> {
    let (topic, group) = (|| "t".to_string(), || "g".to_string());
    let command = prop_oneof![
        2 => publish_request().prop_map(move |request| Command::Publish(PublishRequest { topic: topic(), ..request })),
        2 => group_join_request()
            .prop_map(move |request| Command::GroupJoin(GroupJoinRequest { topic: topic(), group: group(), ..request })),
        2 => group_claim_request()
            .prop_map(move |request| Command::GroupClaim(GroupClaimRequest { topic: topic(), group: group(), ..request })),
        1 => group_settle_request().prop_map(move |request| {
            Command::GroupSettle(GroupSettleRequest { topic: topic(), group: group(), ..request })
        }),
    ];
    command.prop_map(Step::Apply)
}

fn step(lease_ids: Vec<i64>, mix: Mix) -> impl Strategy<Value = Step> {
    let lease_id = || prop::sample::select(lease_ids.clone());
    let lease_or_none = || prop_oneof![1 => Just(0i64), 3 => lease_id()];
    // Granted TTLs as given (the proposer raises them to the minimum): a registration reuses a
    // lease only with its own TTL, and negative and the largest ones round-trip through storage.
    let ttl_secs = || prop::sample::select(vec![5i64, 10, 5, 10, 0, -3, crate::lease::LEASE_TTL_MAX_SECS]);
    let (keyspace, events) = match mix {
        Mix::Keyspace => (4, 1),
        Mix::Events => (1, 4),
    };
    prop_oneof![
        6 * keyspace => put_request(lease_or_none()).prop_map(|request| Step::Apply(Command::Put(request))),
        3 * keyspace => delete_request().prop_map(|request| Step::Apply(Command::DeleteRange(request))),
        4 * keyspace => txn_request(lease_or_none()).prop_map(|request| Step::Apply(Command::Txn(request))),
        2 * keyspace => (lease_id(), ttl_secs())
            .prop_map(|(id, ttl_secs)| Step::Apply(Command::LeaseGrant(LeaseGrantRequest { id, ttl_secs }))),
        keyspace => lease_or_none().prop_map(|id| Step::Apply(Command::LeaseRevoke(LeaseRevokeRequest { id }))),
        2 * keyspace => (lease_id(), prop::sample::select(vec![0i64, 5, 10]), registration())
            .prop_map(|(lease_id, ttl_secs, puts)| {
                Step::Apply(Command::Register(RegisterRequest { lease_id, ttl_secs, puts }))
            }),
        2 * keyspace => (key(), value(), lease_or_none(), lease_id(), ttl_secs()).prop_map(
            |(key, value, reuse, grant_id, ttl_secs)| {
                Step::Apply(Command::LeasedPut(LeasedPutRequest { key, value, reuse, grant_id, ttl_secs }))
            }
        ),
        4 * events => publish_request().prop_map(|request| Step::Apply(Command::Publish(request))),
        2 * events => group_join_request().prop_map(|request| Step::Apply(Command::GroupJoin(request))),
        5 * events => group_claim_request().prop_map(|request| Step::Apply(Command::GroupClaim(request))),
        3 * events => group_settle_request().prop_map(|request| Step::Apply(Command::GroupSettle(request))),
        events => (topic(), retention())
            .prop_map(|(topic, retention)| Step::Apply(Command::SetRetention(SetRetentionRequest { topic, retention }))),
        events => (topic(), prop::sample::select(vec![0u64, 1, 2, 3, 5, u64::MAX]))
            .prop_map(|(topic, before)| Step::Apply(Command::TrimTopic(TrimTopicRequest { topic, before }))),
        events => (topic(), time_ms()).prop_map(|(topic, now_ms)| Step::RetentionTrim { topic, now_ms }),
        1 => prop_oneof![
            Just(Command::InitSecretKey(SecretKey(vec![7; 32]))),
            Just(Command::PublishMember(MemberAttributes { member_id: 1, ..MemberAttributes::default() })),
        ]
        .prop_map(Step::Apply),
        1 => alarm_request().prop_map(|request| Step::Apply(Command::Alarm(request))),
        keyspace => (-1..6i64).prop_map(|back| Step::Compact { back }),
        4 * keyspace => (range_request(), prop::option::of(-1..8i64))
            .prop_map(|(request, back)| Step::Range { request, back }),
        1 => Just(Step::Commit),
        1 => Just(Step::Reopen),
        1 => any::<bool>().prop_map(|into_stale| Step::Install { into_stale }),
    ]
}

// ---- etcd ----

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(KEYS.to_vec()).prop_map(<[u8]>::to_vec)
}

/// A key and a range end: single key, from-key, prefix, an arbitrary (maybe inverted) end, all.
fn key_span() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (key(), 0..6u8, key()).prop_map(|(key, kind, other)| match kind {
        0 | 1 => (key, Vec::new()),
        2 => (key, vec![0]),
        3 => {
            let end = crate::keys::prefix_range_end(&key);
            (key, end)
        }
        4 => (key, other),
        _ => (vec![0], vec![0]),
    })
}

/// A registration's keys and values: fewer keys than elsewhere, so that a registration is
/// often repeated and finds its lease to reuse.
fn registration() -> impl Strategy<Value = Vec<crate::command::KeyValuePair>> {
    let key = prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"".to_vec()]);
    prop::collection::vec((key, value()), 0..3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![b"".to_vec(), b"x".to_vec(), b"y".to_vec()])
}

fn put_request(lease: impl Strategy<Value = i64>) -> impl Strategy<Value = PutRequest> {
    (key(), value(), lease, any::<bool>(), 0..8u8).prop_map(|(key, value, lease, prev_kv, ignore)| PutRequest {
        key,
        value,
        lease,
        prev_kv,
        ignore_value: ignore == 0 || ignore == 2,
        ignore_lease: ignore == 1 || ignore == 2,
    })
}

/// Deletes the proposal gate lets through: one over every key (or from `""`) reaches
/// `/micro/events/` and is refused, and in a txn it would take the whole txn with it.
fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_span(), any::<bool>())
        .prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest { key, range_end, prev_kv })
        .prop_filter("refused before proposal", |delete| {
            crate::command::check_reserved(&Command::DeleteRange(delete.clone())).is_ok()
        })
}

pub(super) fn range_request() -> impl Strategy<Value = RangeRequest> {
    let sort = (0..3u8, 0..5u8).prop_map(|(order, target)| {
        let order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][order as usize];
        let target = [SortTarget::Key, SortTarget::Version, SortTarget::Create, SortTarget::Mod, SortTarget::Value]
            [target as usize];
        (order, target)
    });
    let filters = prop::collection::vec(prop_oneof![3 => Just(0i64), 1 => 1..10i64], 4);
    (key_span(), -1..4i64, sort, 0..6u8, filters).prop_map(
        |((key, range_end), limit, (sort_order, sort_target), flags, filters)| RangeRequest {
            key,
            range_end,
            limit,
            revision: 0,
            sort_order,
            sort_target,
            serializable: false,
            keys_only: flags == 1,
            count_only: flags == 2,
            min_mod_revision: filters[0],
            max_mod_revision: filters[1],
            min_create_revision: filters[2],
            max_create_revision: filters[3],
        },
    )
}

fn compare(lease: impl Strategy<Value = i64>) -> impl Strategy<Value = Compare> {
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::Greater,
        CompareResult::Less,
        CompareResult::NotEqual,
    ]);
    let target = prop_oneof![
        (0..4i64).prop_map(CompareTarget::Version),
        (0..8i64).prop_map(CompareTarget::Create),
        (0..8i64).prop_map(CompareTarget::Mod),
        value().prop_map(CompareTarget::Value),
        lease.prop_map(CompareTarget::Lease),
    ];
    (key_span(), result, target).prop_map(|((key, range_end), result, target)| Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn txn_request(lease: impl Strategy<Value = i64> + Clone + 'static) -> impl Strategy<Value = TxnRequest> {
    let leaf = prop_oneof![
        put_request(lease.clone()).prop_map(RequestOp::Put),
        delete_request().prop_map(RequestOp::DeleteRange),
        // Absolute revisions inside a Txn: some future, some compacted.
        (range_request(), prop_oneof![2 => Just(0i64), 1 => 1..10i64])
            .prop_map(|(request, revision)| RequestOp::Range(RangeRequest { revision, ..request })),
    ];
    let compares = move || prop::collection::vec(compare(lease.clone()), 0..3);
    let nested_compares = compares.clone();
    let op = leaf.prop_recursive(2, 12, 4, move |inner| {
        (nested_compares(), prop::collection::vec(inner.clone(), 0..4), prop::collection::vec(inner, 0..4))
            .prop_map(|(compare, success, failure)| RequestOp::Txn(TxnRequest { compare, success, failure }))
    });
    (compares(), prop::collection::vec(op.clone(), 0..5), prop::collection::vec(op, 0..5))
        .prop_map(|(compare, success, failure)| TxnRequest { compare, success, failure })
}

// ---- events ----

fn topic() -> impl Strategy<Value = String> {
    prop::sample::select(TOPICS.to_vec()).prop_map(str::to_string)
}

fn publish_topic() -> impl Strategy<Value = String> {
    prop::sample::select(PUBLISH_TOPICS.to_vec()).prop_map(str::to_string)
}

fn group_topic() -> impl Strategy<Value = String> {
    prop::sample::select(GROUP_TOPICS.to_vec()).prop_map(str::to_string)
}

fn time_ms() -> impl Strategy<Value = i64> {
    prop::sample::select(TIMES_MS.to_vec())
}

/// Offsets around the first few events: settles of pending, settled and unknown offsets.
fn offsets() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(0..4u64, 0..3)
}

fn new_event() -> impl Strategy<Value = NewEvent> {
    let id = prop::sample::select(vec!["", "", "x", "y"]).prop_map(str::to_string);
    // A key the dead letters overwrite, and a byte no JSON string holds as is.
    let metadata = prop::sample::select(vec![vec![], vec![("k", "v")], vec![("dead-letter-group", "\u{1}\"")]])
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let payload = prop::sample::select(vec![b"".to_vec(), b"p".to_vec(), vec![0xff, 0, 0xfe]]);
    (id, metadata, payload).prop_map(|(id, metadata, payload)| NewEvent { id, metadata, payload })
}

fn publish_request() -> impl Strategy<Value = PublishRequest> {
    (publish_topic(), prop::collection::vec(new_event(), 0..4), time_ms())
        .prop_map(|(topic, events, timestamp_ms)| PublishRequest { topic, events, timestamp_ms })
}

fn group_join_request() -> impl Strategy<Value = GroupJoinRequest> {
    let options = (
        prop::sample::select(vec![0u64, 10, 1_000, u64::MAX]),
        prop::sample::select(vec![None, Some(0u32), Some(1)]),
        prop::sample::select(vec![0u32, 1, 2, 100, 100, 100]),
    )
        .prop_map(|(ack_wait_ms, retry_limit, max_in_flight)| GroupOptions {
            ack_wait_ms,
            retry_limit,
            max_in_flight,
        });
    (group_topic(), prop::sample::select(GROUPS.to_vec()), prop::sample::select(vec![0u64, 0, 1, 3, u64::MAX]), options)
        .prop_map(|(topic, group, start, options)| GroupJoinRequest { topic, group: group.to_string(), start, options })
}

fn group_claim_request() -> impl Strategy<Value = GroupClaimRequest> {
    (
        group_topic(),
        prop::sample::select(GROUPS.to_vec()),
        prop::sample::select(vec!["c", "d"]),
        prop::sample::select(vec![0u32, 1, 2, 5, 5]),
        prop::sample::select(vec![false, false, false, true]),
        time_ms(),
    )
        .prop_map(|(topic, group, consumer, max, auto_ack, now_ms)| GroupClaimRequest {
            topic,
            group: group.to_string(),
            consumer: consumer.to_string(),
            max,
            auto_ack,
            now_ms,
        })
}

fn group_settle_request() -> impl Strategy<Value = GroupSettleRequest> {
    (group_topic(), prop::sample::select(GROUPS.to_vec()), offsets(), offsets(), time_ms()).prop_map(
        |(topic, group, acks, nacks, now_ms)| GroupSettleRequest {
            topic,
            group: group.to_string(),
            acks,
            nacks,
            now_ms,
        },
    )
}

fn retention() -> impl Strategy<Value = Retention> {
    (
        prop::sample::select(vec![None, Some(0u64), Some(2)]),
        prop::sample::select(vec![None, Some(Duration::from_secs(1)), Some(RETENTION_AGE_MAX)]),
        prop::sample::select(vec![None, Some(0u64), Some(300)]),
    )
        .prop_map(|(max_events, max_age, max_bytes)| Retention { max_events, max_age, max_bytes })
}

/// Alarms of three members, every action and type.
fn alarm_request() -> impl Strategy<Value = AlarmRequest> {
    let action = prop::sample::select(vec![AlarmAction::Get, AlarmAction::Activate, AlarmAction::Deactivate]);
    let alarm = prop::sample::select(vec![AlarmType::None, AlarmType::NoSpace, AlarmType::Corrupt]);
    (action, 1..4u64, alarm).prop_map(|(action, member_id, alarm)| AlarmRequest { action, member_id, alarm })
}
