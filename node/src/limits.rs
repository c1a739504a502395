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
pub const TXN_NESTING_MAX: usize = 64;

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

/// Linearizable readers waiting for the next read-barrier round on one member; past it a read
/// is refused with "too many requests". A waiter is a few bytes: this only stops a flood.
pub const READ_BARRIER_WAITERS_MAX: usize = 100_000;

/// The etcd version this member reports in Maintenance.Status: the etcd API level it is
/// compatible with, which clients and etcdctl read.
pub const ETCD_COMPATIBLE_VERSION: &str = "3.4.23";

const _: () = assert!(GRPC_OVERHEAD_BYTES < REQUEST_BYTES_MAX);
const _: () = assert!(TXN_OPS_MAX <= TXN_OPS_TOTAL_MAX);
const _: () = assert!(crate::config::REQUEST_BYTES_LIMIT_MAX < PEER_MESSAGE_BYTES_MAX);
const _: () = assert!(PEER_APPEND_BYTES_MAX < PEER_MESSAGE_BYTES_MAX);
