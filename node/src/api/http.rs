//! Plain-HTTP endpoints beside gRPC on the client port, as etcd serves them: `/health` for
//! probes and load balancers, `/metrics` in Prometheus text format under etcd's metric names,
//! so existing dashboards and alerts keep working; `/debug/raft` for openraft's own statistics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::member::Member;

/// How long /health waits for a linearizable read barrier before calling the member unhealthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router(member: Arc<Member>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/debug/raft", get(raft_stats))
        .with_state(member)
}

/// openraft's runtime statistics as text: batch sizes and, per log entry, the latency from
/// proposal to each stage (received, submitted, persisted, committed, applied).
async fn raft_stats(State(member): State<Arc<Member>>) -> impl IntoResponse {
    let (status, body) = match member.raft_runtime_stats().await {
        Some(text) => (StatusCode::OK, text),
        None => (StatusCode::SERVICE_UNAVAILABLE, "raft stopped\n".to_string()),
    };
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

/// etcd 3.4's answer: healthy when a leader is known and a linearizable read barrier passes.
async fn health(State(member): State<Arc<Member>>) -> impl IntoResponse {
    let has_leader = member.metrics().current_leader.is_some();
    let read_ok = has_leader && matches!(tokio::time::timeout(HEALTH_TIMEOUT, member.read_barrier()).await, Ok(Ok(())));
    let (status, body) = if read_ok {
        (StatusCode::OK, r#"{"health":"true"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(member): State<Arc<Member>>) -> impl IntoResponse {
    let raft = member.metrics();
    let (revision, compacted, keys, leases) = {
        let mvcc = member.shared().mvcc();
        (mvcc.current_revision(), mvcc.compact_revision(), mvcc.key_count(), mvcc.leases().len())
    };
    let hub = member.shared().hub();
    let gauges: [(&str, &str, f64); 19] = [
        (
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            f64::from(u8::from(raft.current_leader.is_some())),
        ),
        (
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            f64::from(u8::from(raft.current_leader == Some(member.id))),
        ),
        (
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            raft.local_committed.map_or(0, |id| id.index) as f64,
        ),
        (
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            raft.last_applied.map_or(0, |id| id.index) as f64,
        ),
        ("etcd_server_term", "The current Raft term.", raft.current_term as f64),
        (
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            member.db_size_bytes() as f64,
        ),
        (
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            member.db_size_in_use_bytes() as f64,
        ),
        (
            // 0 when the quota is off, as etcd leaves it.
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            member.quota_bytes().unwrap_or(0) as f64,
        ),
        (
            // The name etcd 3.4's own Grafana dashboard still reads.
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            member.db_size_bytes() as f64,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            resident_memory_bytes().unwrap_or(0) as f64,
        ),
        ("etcd_debugging_mvcc_current_revision", "The current revision of store.", revision as f64),
        ("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.", compacted as f64),
        ("etcd_debugging_mvcc_keys_total", "Total number of keys.", keys as f64),
        ("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", hub.stream_count() as f64),
        ("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", hub.watcher_count() as f64),
        ("keel_leases", "Leases that exist now.", leases as f64),
        (
            "keel_disk_bytes",
            "Bytes the member's database takes on disk, the Raft log and write-ahead logs included.",
            member.disk_size_bytes() as f64,
        ),
        (
            "keel_raft_snapshot_index",
            "Index of the last Raft log entry in this member's latest snapshot.",
            raft.snapshot.map_or(0, |id| id.index) as f64,
        ),
        (
            // A member that is behind this index can only catch up from a snapshot.
            "keel_raft_log_purged_index",
            "Index of the last Raft log entry removed after a snapshot.",
            raft.purged.map_or(0, |id| id.index) as f64,
        ),
    ];
    let mut body = String::new();
    for (name, help, value) in gauges {
        // Writing to a String cannot fail.
        let _ = write!(body, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
    }
    // What a follower's clients cost in round trips to the leader (a batch of writes is one).
    let (leader_changes, pending, failed) = member.server_counters();
    let server: [(&str, &str, &str, u64); 3] = [
        ("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", "counter", leader_changes),
        ("etcd_server_proposals_pending", "The current number of pending proposals to commit.", "gauge", pending),
        ("etcd_server_proposals_failed_total", "The total number of failed proposals seen.", "counter", failed),
    ];
    for (name, help, kind, value) in server {
        let _ = write!(body, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    }
    // On the leader: how long since each member last acknowledged a heartbeat or an append
    // (what MemberAdd's health check looks at; etcd shows peers' round trips instead).
    let name = "keel_raft_peer_last_ack_seconds";
    let _ = write!(body, "# HELP {name} Seconds since the leader last heard from each member.\n# TYPE {name} gauge\n");
    for (member, seconds) in member.peer_ack_ages() {
        let _ = writeln!(body, "{name}{{member=\"{member:x}\"}} {seconds}");
    }
    let name = "keel_forwarded_requests_total";
    let _ = write!(body, "# HELP {name} Requests forwarded to the leader, by kind.\n# TYPE {name} counter\n");
    for (kind, count) in member.forwarded_requests() {
        let _ = writeln!(body, "{name}{{request=\"{kind}\"}} {count}");
    }
    // Timings and traffic: the disk's fsyncs and commits, peers, client calls.
    body.push_str(&crate::telemetry::telemetry().render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// This process's resident set (`VmRSS` in `/proc/self/status`), where the system has one.
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}
