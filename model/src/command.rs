//! The replicated log payload: one enum of deterministic commands, and what applying each returns.
//! Their encoding (postcard, in variant and field order) is the log's format: the node's
//! golden-bytes tests fail on any change to it.
//!
//! A command carries everything its application needs (no clock, no randomness, no node-local
//! state), so every member that applies the same log reaches the same state. The types are our
//! own, not etcd's protobuf messages: they are encoded compactly in the log (postcard) and the
//! `api` layer converts at the edge.

use serde::{Deserialize, Serialize};

use crate::auth::etcd::{AuthCommand, Caller};
use crate::error::MvccError;
pub use crate::events::Retention;
use crate::group::{ClaimOutcome, GroupOptions};

/// How deep Txns may nest: decoding refuses deeper ones (without recursing further), so a
/// command from the log or a peer cannot exhaust the stack.
pub const TXN_NESTING_MAX: usize = 64;

/// A replicated state-machine command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactRequest),
    LeaseGrant(LeaseGrantRequest),
    /// A client's revoke, or the leader's decision that the lease expired.
    LeaseRevoke(LeaseRevokeRequest),
    /// A service registration: its keys put on one lease, granted or reused, atomically.
    Register(RegisterRequest),
    /// A put on a lease shared with other keys that expire together: the lease named if it
    /// still exists, otherwise a new one, atomically.
    LeasedPut(LeasedPutRequest),
    /// Appends events to a topic at its next offsets.
    Publish(PublishRequest),
    /// The cluster's key for config secrets, proposed once at bootstrap; the first one applied
    /// wins and later ones are ignored.
    InitSecretKey(SecretKey),
    /// A member announces its name and client URLs once it has started (etcd's "publish"). The
    /// state machine records them for Cluster.MemberList; the MVCC keyspace ignores it.
    PublishMember(MemberAttributes),
    /// A consumer joins a group of a topic: the group is created at `start` if new, and takes
    /// the consumer's options either way.
    GroupJoin(GroupJoinRequest),
    /// Hands events of a topic out to one consumer of a group (stamped by the leader).
    GroupClaim(GroupClaimRequest),
    /// A consumer's acks and nacks (stamped by the leader).
    GroupSettle(GroupSettleRequest),
    /// A topic's retention limits (the topic is created if new).
    SetRetention(SetRetentionRequest),
    /// Removes a topic's events below an offset: the leader's retention decision.
    TrimTopic(TrimTopicRequest),
    /// A change to etcd's auth state (users, roles, enable/disable) or a simple token's assignment.
    Auth(AuthCommand),
    /// A client's command with who sent it, checked at apply against the auth state of that point
    /// in the log (etcd's request header `username` and `auth_revision`). A command without this
    /// wrapper is the cluster's own (a lease's expiry, retention, a member's attributes).
    Authorized(Authorized),
    /// etcd's alarms (Maintenance.Alarm): raised and cleared per member through the log, so every
    /// member refuses the same writes while one is active (NOSPACE: writes that add data;
    /// CORRUPT: every change to the keyspace and leases).
    Alarm(AlarmRequest),
}

/// A client's command and its sender; never nested (decoding refuses an `Authorized` inside one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Authorized {
    /// `None`: the client presented no credentials.
    pub caller: Option<Caller>,
    pub command: Box<Command>,
}

impl Command {
    /// The command itself, out of an `Authorized` wrapper if it is in one.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Authorized(authorized) => &authorized.command,
            command => command,
        }
    }
}

/// Short, for logs: the kind of command and the key it starts at, never values.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put(r) => write!(f, "put {:?}", String::from_utf8_lossy(&r.key)),
            Command::DeleteRange(r) => write!(f, "delete {:?}", String::from_utf8_lossy(&r.key)),
            Command::Txn(r) => {
                write!(f, "txn ({} compares, {}/{} ops)", r.compare.len(), r.success.len(), r.failure.len())
            }
            Command::Compact(r) => write!(f, "compact {}", r.revision),
            Command::LeaseGrant(r) => write!(f, "lease grant {:x} ttl {}s", r.id, r.ttl_secs),
            Command::LeaseRevoke(r) => write!(f, "lease revoke {:x}", r.id),
            Command::Register(r) => write!(f, "register {} keys, ttl {}s", r.puts.len(), r.ttl_secs),
            Command::LeasedPut(r) => write!(f, "leased put {:?}", String::from_utf8_lossy(&r.key)),
            Command::InitSecretKey(_) => write!(f, "init secret key"),
            Command::Publish(r) => write!(f, "publish {} events to {:?}", r.events.len(), r.topic),
            Command::PublishMember(a) => write!(f, "publish member {:x}", a.member_id),
            Command::GroupJoin(r) => write!(f, "join group {:?} of {:?}", r.group, r.topic),
            Command::GroupClaim(r) => write!(f, "claim {} of {:?} for group {:?}", r.max, r.topic, r.group),
            Command::GroupSettle(r) => {
                write!(f, "settle {}/{} of {:?} for group {:?}", r.acks.len(), r.nacks.len(), r.topic, r.group)
            }
            Command::SetRetention(r) => write!(f, "set retention of {:?}", r.topic),
            Command::TrimTopic(r) => write!(f, "trim {:?} below {}", r.topic, r.before),
            Command::Auth(r) => write!(f, "{r}"),
            Command::Authorized(r) => match &r.caller {
                Some(caller) => write!(f, "{} as {:?}", r.command, caller.user),
                None => write!(f, "{} as nobody", r.command),
            },
            Command::Alarm(r) => write!(f, "alarm {:?} {:?} of {:x}", r.action, r.alarm, r.member_id),
        }
    }
}

/// What a member publishes about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttributes {
    pub member_id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
}

/// The answer to a command, as the state machine produced it on the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Register(RegisterResponse),
    LeasedPut(LeasedPutResponse),
    Publish(PublishResponse),
    GroupJoin(GroupJoinResponse),
    GroupClaim(GroupClaimResponse),
    GroupSettle(GroupSettleResponse),
    /// SetRetention and TrimTopic.
    Topic(TopicResponse),
    Auth(AuthResponse),
    Alarm(AlarmResponse),
    /// The command was valid on the wire but etcd's rules reject it at apply time (for
    /// example a compaction to a revision already compacted). Nothing changed.
    Rejected(MvccError),
    /// Nothing to answer: membership changes and blank entries.
    None,
}

/// A key and its metadata at one revision (etcd's `mvccpb.KeyValue`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// etcd's RangeRequest. `range_end` follows etcd's rules: empty = the single key `key`;
/// `[0]` = every key >= `key`; otherwise the half-open range `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    /// 0 = no limit.
    pub limit: i64,
    /// 0 = the current revision.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    /// 0 = no bound, for each of the four.
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// The store's current revision when the range was served (goes in the header).
    pub header_revision: i64,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    pub header_revision: i64,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeResponse {
    pub header_revision: i64,
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// What a compare looks at, with the operand to compare it to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Lease(i64),
}

/// etcd's Compare: holds when every key in the range satisfies it (a missing single key has
/// version, create and mod revision 0, value empty, lease 0).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

/// Decoded with a nesting limit (`nesting`): a txn is the one recursive type in a command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// Decoded with a nesting limit, like `TxnRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxnResponse {
    pub header_revision: i64,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactRequest {
    pub revision: i64,
    pub physical: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactResponse {
    pub header_revision: i64,
}

/// etcd's LeaseGrant with the TTL already raised to the minimum. An `id` of 0 asks the leader to
/// choose one (etcd's rule), which it does before proposing (`member::leader_write`), so every
/// member applies the same grant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantRequest {
    pub id: i64,
    pub ttl_secs: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrantResponse {
    pub header_revision: i64,
    pub id: i64,
    pub ttl_secs: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeRequest {
    pub id: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    pub header_revision: i64,
}

/// A key and the value to write to it.
pub type KeyValuePair = (Vec<u8>, Vec<u8>);

/// Puts `puts` (key, value) on one lease of `ttl_secs` (0 = no lease): the lease the keys
/// already share if it has that TTL, otherwise a new one with id `lease_id` (0 when proposed:
/// the leader chooses it, and renews a reused lease on its clock; `member::leader_write`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub lease_id: i64,
    pub ttl_secs: i64,
    pub puts: Vec<KeyValuePair>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub header_revision: i64,
    /// The lease the keys are on (0 without TTL).
    pub lease_id: i64,
    /// True when an existing lease was reused rather than granted.
    pub reused: bool,
}

/// Puts `key = value` on lease `reuse` if it still exists, otherwise on a new lease `grant_id`
/// of `ttl_secs` (0 when proposed: the leader chooses it; `member::leader_write`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedPutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// 0 = nothing to reuse.
    pub reuse: i64,
    pub grant_id: i64,
    pub ttl_secs: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedPutResponse {
    pub header_revision: i64,
    /// The lease the key is on now.
    pub lease_id: i64,
}

/// A 256-bit key. Debug never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretKey(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey([redacted; {} bytes])", self.0.len())
    }
}

/// Events for one topic. `timestamp_ms` is stamped by the leader just before proposing
/// (`member::leader_write`); the state machine never lets a topic's time go backwards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    pub topic: String,
    pub events: Vec<NewEvent>,
    pub timestamp_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Empty = no de-duplication.
    pub id: String,
    pub metadata: std::collections::BTreeMap<String, String>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    pub header_revision: i64,
    pub timestamp_ms: i64,
    /// One per event, in order.
    pub results: Vec<Published>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub offset: u64,
    pub duplicate: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinRequest {
    pub topic: String,
    pub group: String,
    /// Where a new group starts; an existing group keeps its position.
    pub start: u64,
    pub options: GroupOptions,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupJoinResponse {
    pub header_revision: i64,
    /// The group's acknowledged position and next new offset after the join.
    pub ack_floor: u64,
    pub cursor: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupClaimRequest {
    pub topic: String,
    pub group: String,
    pub consumer: String,
    pub max: u32,
    pub auto_ack: bool,
    pub now_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupClaimResponse {
    pub header_revision: i64,
    pub outcome: ClaimOutcome,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettleRequest {
    pub topic: String,
    pub group: String,
    pub acks: Vec<u64>,
    pub nacks: Vec<u64>,
    pub now_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettleResponse {
    pub header_revision: i64,
    /// The acks that were pending (the others were settled before).
    pub acked: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRetentionRequest {
    pub topic: String,
    pub retention: Retention,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimTopicRequest {
    pub topic: String,
    pub before: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicResponse {
    pub header_revision: i64,
    pub first_offset: u64,
}

/// The answer to an `AuthCommand`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    pub header_revision: i64,
    /// The simple token `Authenticate` assigned; empty for the other commands.
    pub token: String,
}

/// etcd's `AlarmRequest.AlarmAction`, in its numbering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AlarmAction {
    #[default]
    Get,
    Activate,
    Deactivate,
}

/// etcd's `AlarmType`, in its numbering. `None` in a request means every type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmType {
    #[default]
    None,
    /// A member's database reached `--quota-backend-bytes`: writes that add data are refused.
    NoSpace,
    /// A member's state differs from the others': every change is refused.
    Corrupt,
}

impl AlarmType {
    /// etcd's name of the type, as `etcdctl alarm list` prints it.
    pub fn name(self) -> &'static str {
        match self {
            AlarmType::None => "NONE",
            AlarmType::NoSpace => "NOSPACE",
            AlarmType::Corrupt => "CORRUPT",
        }
    }
}

/// An alarm raised or cleared on one member (`member_id`), or the alarms asked for (`Get`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmRequest {
    pub action: AlarmAction,
    pub member_id: u64,
    pub alarm: AlarmType,
}

/// One active alarm: which member raised it, and its type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlarmMember {
    pub member_id: u64,
    pub alarm: AlarmType,
}

/// What an alarm request changed (etcd answers the alarm activated or deactivated, none if
/// nothing changed) or, for `Get`, the active alarms of the type asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmResponse {
    pub header_revision: i64,
    pub alarms: Vec<AlarmMember>,
}

/// Each request type becomes its own `Command` variant.
macro_rules! into_command {
    ($($request:ident => $command:ident;)*) => {$(
        impl From<$request> for Command {
            fn from(request: $request) -> Command {
                Command::$command(request)
            }
        }
    )*};
}

into_command! {
    PutRequest => Put;
    DeleteRangeRequest => DeleteRange;
    TxnRequest => Txn;
    CompactRequest => Compact;
    LeaseGrantRequest => LeaseGrant;
    LeaseRevokeRequest => LeaseRevoke;
    RegisterRequest => Register;
    LeasedPutRequest => LeasedPut;
    PublishRequest => Publish;
    GroupJoinRequest => GroupJoin;
    GroupClaimRequest => GroupClaim;
    GroupSettleRequest => GroupSettle;
    SetRetentionRequest => SetRetention;
    TrimTopicRequest => TrimTopic;
    MemberAttributes => PublishMember;
    SecretKey => InitSecretKey;
    AuthCommand => Auth;
    Authorized => Authorized;
    AlarmRequest => Alarm;
}
