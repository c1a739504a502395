//! Every bound Keel enforces, with the reason for its value. Changing one is a design decision:
//! say why next to it.

use std::time::Duration;

/// etcd's `--max-request-bytes` default: a request above this is refused with
/// "etcdserver: request is too large". Kept so that whatever etcd accepts, Keel accepts.
pub const REQUEST_BYTES_MAX: usize = 1_572_864;

/// Slack gRPC allows on top of the request limit for framing (etcd's `grpcOverheadBytes`);
/// past it the gRPC layer itself refuses the message.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// etcd's `--max-txn-ops` default: compares, success ops and failure ops each at most this.
pub const TXN_OPS_MAX: usize = 128;

/// Txn levels a command may nest (a txn inside a txn's ops counts one more). A protobuf
/// request cannot nest deeper than about 50 (prost refuses messages nested past 100, and each
/// level is two messages), so no client request comes near it; log entries and peer messages
/// nested deeper are refused when decoded, before they can exhaust the stack.
pub use keel_model::command::TXN_NESTING_MAX;

/// Operations in one txn, all levels together. etcd bounds each level (`TXN_OPS_MAX`) but
/// not their sum, so nesting multiplies it; past this the request is refused before any
/// quadratic or per-op work is done on it. Large enough for any txn etcd's clients build.
pub const TXN_OPS_TOTAL_MAX: usize = 16_384;

/// The largest peer message a member decodes. Whole requests travel between members (one log
/// entry holds one request, of at most the largest `--max-request-bytes` accepted, 64 MiB), so
/// the bound is that plus room for the rest of the message. The same on every member whatever
/// its flags, so a leader never sends what a follower refuses.
pub const PEER_MESSAGE_BYTES_MAX: usize = (64 << 20) + (1 << 20);

/// An AppendEntries larger than this is cut into a prefix that fits (openraft's partial
/// success), so a batch of large entries costs bounded memory on both ends. A single entry
/// larger than this still goes alone.
pub const PEER_APPEND_BYTES_MAX: usize = 16 << 20;

/// AppendEntries a leader has sent a follower on its stream and not had answered yet. Enough to
/// keep a follower's disk busy while the answers travel back (openraft's own receiving pipeline
/// holds as many); past it the leader waits for an answer before it sends more, so a slow
/// follower costs bounded memory on both ends.
pub const PEER_APPENDS_IN_FLIGHT: usize = 64;

/// The newest log entries each member keeps decoded in memory (`raft/recent_entries.rs`), by
/// count and by encoded bytes: enough for every follower's pipelined replication and the apply
/// that follow an append, small enough that an idle member's memory barely notices.
pub const LOG_CACHE_ENTRIES_MAX: usize = 2048;
pub const LOG_CACHE_BYTES_MAX: usize = 4 << 20;

/// The largest answer a member decodes from a peer. A forwarded Txn answers with whatever its
/// range ops read, which etcd bounds only by gRPC's 2 GiB; this bounds what one answer can make
/// a follower buffer.
pub const PEER_RESPONSE_BYTES_MAX: usize = 1 << 30;

/// How long a request waits for a leader, a commit or a read barrier before answering
/// "request timed out" (etcd: 5 s plus two election timeouts by default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// Writes a follower holds queued for forwarding to the leader, in number and in encoded bytes.
/// Past either a write is refused at once with etcd's "too many requests" (nothing proposed,
/// safe to retry) instead of queueing memory without bound while the leader is not keeping up.
/// Far above what a batch takes (`forward_writes`: 256 writes or 4 MiB, 4 batches in flight).
pub const FORWARD_QUEUE_WRITES_MAX: usize = 10_000;
pub const FORWARD_QUEUE_BYTES_MAX: usize = 256 << 20;

/// How far this member's applied index may trail its committed index before it refuses new
/// writes with etcd's "too many requests" (etcd's `maxGapBetweenApplyAndCommitIndex`): past
/// it the state machine is not keeping up, and more proposals would only lengthen the queue
/// every later read waits behind.
pub const APPLY_LAG_ENTRIES_MAX: u64 = 5_000;

/// Writes one member proposes at once (its clients' writes, in Raft or queued to the leader);
/// past it a write is refused at once with "too many requests" (nothing proposed, safe to
/// retry). Far above what keeps the log busy (a 256-client benchmark has 256 in flight): this
/// only stops a flood from queueing memory and timeouts without bound.
pub const PROPOSALS_PENDING_MAX: u64 = 20_000;

/// HTTP/2 streams one client connection may have open on the client port (etcd's
/// `--max-concurrent-streams`, unlimited there): a client past it waits on its own connection
/// instead of adding work, so a flood through one connection slows that connection only.
pub const CLIENT_STREAMS_PER_CONNECTION_MAX: u32 = 1_000;

/// Linearizable readers waiting for the next read-barrier round on one member; past it a read
/// is refused with "too many requests". A waiter is a few bytes: this only stops a flood.
pub const READ_BARRIER_WAITERS_MAX: usize = 100_000;

// ---- Queues and batches of the services ----

/// Dashboard pages kept live at once on one member (`ui/live.rs`): each holds a subscription to
/// the watch hub and a task; past this a page still loads, it just is not live.
pub const UI_LIVE_STREAMS_MAX: usize = 1024;

/// A dashboard page's list shows at most this many entries and pages through the rest (keys,
/// services, events): a page of a large keyspace costs its page.
pub const UI_PAGE_ENTRIES_MAX: usize = 200;

/// Registry watch responses queued for a client slow to read them (`api/registry`).
pub const REGISTRY_WATCH_QUEUE_MAX: usize = 64;

/// Config watch responses queued for a client slow to read them (`api/config`).
pub const CONFIG_WATCH_QUEUE_MAX: usize = 16;

/// Keep-alive answers queued for a client that is slow to read them (`api/lease`).
pub const KEEP_ALIVE_QUEUE_MAX: usize = 16;

/// Watch requests queued before the watch session reads them (`api/watch`).
pub const WATCH_INPUT_QUEUE_MAX: usize = 64;

/// Watch responses queued before the client reads them (`api/watch`). A client that stops
/// reading blocks only its own session.
pub const WATCH_OUTPUT_QUEUE_MAX: usize = 64;

/// Consume responses queued for a slow client before the stream stops handing out more
/// (`api/events_consume`).
pub const CONSUME_OUTPUT_QUEUE_MAX: usize = 16;

/// Events one claim (or one page of a private stream) hands out at most.
pub const CONSUME_CLAIM_BATCH_MAX: u32 = 100;

/// Acks and nacks one replicated settle carries at most.
pub const CONSUME_SETTLE_BATCH_MAX: usize = 10_000;

/// Payload bytes per events Read response at most (at least one event is always returned):
/// keeps a page under gRPC's default 4 MiB message limit on the client side.
pub const EVENTS_READ_BYTES_MAX: usize = 3 * 1024 * 1024;

/// Applied batches the watch hub keeps for receivers that are behind. A receiver further
/// behind than this is told it lagged and catches up from history: memory stays bounded
/// whatever the watchers do.
pub const WATCH_HUB_BATCHES_MAX: usize = 1024;

/// A batch whose keys and values exceed this is broadcast without its events (receivers read
/// them from history), so the hub holds at most `WATCH_HUB_BATCHES_MAX` × this many bytes of
/// events (64 MiB) whatever the size of the writes.
pub const WATCH_HUB_BATCH_EVENT_BYTES_MAX: usize = 64 * 1024;

/// Watchers one watch stream may hold; a create beyond it is refused.
pub const WATCHERS_PER_STREAM_MAX: usize = 100_000;

/// Forwarded-write batches in flight at once from a follower to the leader.
pub const FORWARD_BATCHES_IN_FLIGHT: usize = 4;

/// Requests a follower's forward stream holds before they are sent: one waits for room beyond it.
pub const FORWARD_STREAM_QUEUE: usize = 256;

/// Requests the leader serves at once on one forward stream: beyond it the stream is read no
/// further until one is answered (a follower sends at most `FORWARD_BATCHES_IN_FLIGHT` write
/// batches at once; the rest are read barriers and lease calls, one per client request).
pub const FORWARD_STREAM_IN_FLIGHT: usize = 1024;

/// Batches of writes the leader has proposed and not yet seen applied, at most: the writes
/// that arrive meanwhile wait and become the next batch (`member::leader_batches`).
pub const LEADER_BATCHES_IN_FLIGHT: usize = 2;

/// Writes per leader batch at most.
pub const LEADER_BATCH_WRITES_MAX: usize = 256;

/// Encoded bytes per leader batch at most (a larger write goes alone).
pub const LEADER_BATCH_BYTES_MAX: usize = 4 << 20;

/// Writes per forwarded batch at most.
pub const FORWARD_BATCH_WRITES_MAX: usize = 256;

/// Encoded bytes per forwarded batch at most (a larger write goes alone).
pub const FORWARD_BATCH_BYTES_MAX: usize = 4 << 20;

/// Peer streams a member may reset before the peer server accepts them. h2's default (20)
/// guards public servers against rapid-reset floods; between members, a burst of RPCs that
/// time out together (a partition, a paused peer) is normal and should not cost the
/// connection. The client port keeps h2's default.
pub const PEER_PENDING_RESET_STREAMS_MAX: usize = 1024;

/// Revokes the leader proposes per lease check: etcd's `leaseRevokeRate` (1000/s) at two
/// checks per second. Leases beyond it wait for the next check, so a mass expiry cannot flood
/// the log.
pub const LEASE_REVOKES_PER_CHECK_MAX: usize = 500;

/// One node's registration (the service's JSON with that node) may be at most this large:
/// endpoints and metadata fit easily; anything bigger belongs in the Store.
pub const REGISTRATION_BYTES_MAX: usize = 64 * 1024;

/// Nodes one Register or Deregister call may carry (each one key of one atomic command; a
/// Deregister also compares each, and etcd's limit of 128 operations per Txn must hold).
pub const NODES_PER_REGISTRATION_MAX: usize = 64;

const _: () = assert!(FORWARD_BATCH_WRITES_MAX <= FORWARD_QUEUE_WRITES_MAX);
const _: () = assert!(NODES_PER_REGISTRATION_MAX * 2 <= TXN_OPS_MAX);

/// The etcd version this member reports in Maintenance.Status: the etcd API level it is
/// compatible with, which clients and etcdctl read.
pub const ETCD_COMPATIBLE_VERSION: &str = "3.4.23";

const _: () = assert!(GRPC_OVERHEAD_BYTES < REQUEST_BYTES_MAX);
const _: () = assert!(TXN_OPS_MAX <= TXN_OPS_TOTAL_MAX);
const _: () = assert!(crate::config::REQUEST_BYTES_LIMIT_MAX < PEER_MESSAGE_BYTES_MAX);
const _: () = assert!(PEER_APPEND_BYTES_MAX < PEER_MESSAGE_BYTES_MAX);
