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

/// How long a request waits for a leader, a commit or a read barrier before answering
/// "request timed out" (etcd: 5 s plus two election timeouts by default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// The etcd version this member reports in Maintenance.Status: the etcd API level it is
/// compatible with, which clients and etcdctl read.
pub const ETCD_COMPATIBLE_VERSION: &str = "3.4.23";

const _: () = assert!(GRPC_OVERHEAD_BYTES < REQUEST_BYTES_MAX);
