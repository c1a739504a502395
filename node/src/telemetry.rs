//! Timings and traffic counters for operators, under the names etcd's Grafana dashboard and
//! alerting rules read: how long the log's fsyncs and the state's commits take, the round trip
//! to each peer and the messages that failed to reach it, bytes to and from peers and clients,
//! and go-grpc-prometheus's `grpc_server_*` for every client call.
//!
//! Process-wide, as etcd's are (Go's default registry): one member runs per process, and the
//! places that observe (the log's syncer, the state machine's apply, openraft's network
//! connections, the client router's middleware) need no handle threaded through them. Members
//! of an in-process test cluster share them; nothing reads them but `/metrics`.
//! Gauges that describe a member's state (leader, sizes, revisions) are not here: `api::http`
//! reads those from the member at scrape time.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

/// etcd's buckets for its disk histograms: 1 ms doubling to 8 s.
const DISK_BUCKETS: (f64, f64, usize) = (0.001, 2.0, 14);
/// etcd's buckets for the peer round trip: 0.1 ms doubling to 0.8 s.
const PEER_RTT_BUCKETS: (f64, f64, usize) = (0.0001, 2.0, 14);
/// go-grpc-prometheus's default buckets (Prometheus's `DefBuckets`), in seconds.
const GRPC_HANDLING_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Telemetry {
    registry: Registry,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    peer_round_trip: HistogramVec,
    peer_sent_failures: IntCounterVec,
    peer_sent_bytes: IntCounterVec,
    peer_received_bytes: IntCounterVec,
    client_received_bytes: IntCounter,
    client_sent_bytes: IntCounter,
    grpc_started: IntCounterVec,
    grpc_handled: IntCounterVec,
    grpc_handling: HistogramVec,
}

static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);

/// This process's telemetry.
pub fn telemetry() -> &'static Telemetry {
    &TELEMETRY
}

/// One gRPC call's labels, as go-grpc-prometheus names them.
#[derive(Clone, Copy, Debug)]
pub struct GrpcCall<'a> {
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    pub kind: &'static str,
    pub service: &'a str,
    pub method: &'a str,
}

impl Telemetry {
    fn new() -> Self {
        let registry = Registry::new();
        let wal_fsync = histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            exponential(DISK_BUCKETS),
        );
        let backend_commit = histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            exponential(DISK_BUCKETS),
        );
        let peer_round_trip = histogram_vec(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            exponential(PEER_RTT_BUCKETS),
            &["To"],
        );
        let peer_sent_failures = counter_vec(
            "etcd_network_peer_sent_failures_total",
            "The total number of send failures from peers.",
            &["To"],
        );
        let peer_sent_bytes =
            counter_vec("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", &["To"]);
        let peer_received_bytes = counter_vec(
            "etcd_network_peer_received_bytes_total",
            "The total number of bytes received from peers.",
            &["From"],
        );
        let client_received_bytes = counter(
            "etcd_network_client_grpc_received_bytes_total",
            "The total number of bytes received from grpc clients.",
        );
        let client_sent_bytes =
            counter("etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients.");
        let call_labels = ["grpc_type", "grpc_service", "grpc_method"];
        let grpc_started =
            counter_vec("grpc_server_started_total", "Total number of RPCs started on the server.", &call_labels);
        let grpc_handled = counter_vec(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        );
        let grpc_handling = histogram_vec(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            GRPC_HANDLING_BUCKETS.to_vec(),
            &call_labels,
        );
        let telemetry = Telemetry {
            registry,
            wal_fsync,
            backend_commit,
            peer_round_trip,
            peer_sent_failures,
            peer_sent_bytes,
            peer_received_bytes,
            client_received_bytes,
            client_sent_bytes,
            grpc_started,
            grpc_handled,
            grpc_handling,
        };
        telemetry.register_all();
        telemetry
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 11] = [
            Box::new(self.wal_fsync.clone()),
            Box::new(self.backend_commit.clone()),
            Box::new(self.peer_round_trip.clone()),
            Box::new(self.peer_sent_failures.clone()),
            Box::new(self.peer_sent_bytes.clone()),
            Box::new(self.peer_received_bytes.clone()),
            Box::new(self.client_received_bytes.clone()),
            Box::new(self.client_sent_bytes.clone()),
            Box::new(self.grpc_started.clone()),
            Box::new(self.grpc_handled.clone()),
            Box::new(self.grpc_handling.clone()),
        ];
        for collector in collectors {
            // Names are constants and distinct: registering cannot fail but by a bug here.
            if let Err(error) = self.registry.register(collector) {
                tracing::error!("telemetry: {error}");
            }
        }
    }

    /// An fsync of the Raft log (etcd: of its WAL).
    pub fn wal_fsync(&self, took: Duration) {
        self.wal_fsync.observe(took.as_secs_f64());
    }

    /// A write of applied entries to the state tables (etcd: a bbolt commit).
    pub fn backend_commit(&self, took: Duration) {
        self.backend_commit.observe(took.as_secs_f64());
    }

    /// An empty AppendEntries (a heartbeat) to `to` and its answer.
    pub fn peer_round_trip(&self, to: u64, took: Duration) {
        self.peer_round_trip.with_label_values(&[&member_label(to)]).observe(took.as_secs_f64());
    }

    pub fn peer_sent(&self, to: u64, bytes: usize) {
        self.peer_sent_bytes.with_label_values(&[&member_label(to)]).inc_by(as_u64(bytes));
    }

    pub fn peer_send_failed(&self, to: u64) {
        self.peer_sent_failures.with_label_values(&[&member_label(to)]).inc();
    }

    pub fn peer_received(&self, from: u64, bytes: usize) {
        self.peer_received_bytes.with_label_values(&[&member_label(from)]).inc_by(as_u64(bytes));
    }

    pub fn client_received(&self, bytes: usize) {
        self.client_received_bytes.inc_by(as_u64(bytes));
    }

    pub fn client_sent(&self, bytes: usize) {
        self.client_sent_bytes.inc_by(as_u64(bytes));
    }

    pub fn grpc_started(&self, call: GrpcCall<'_>) {
        self.grpc_started.with_label_values(&[call.kind, call.service, call.method]).inc();
    }

    /// A call ended with `code` (Go's name for it: `OK`, `Unavailable`, ...) after `took`.
    pub fn grpc_handled(&self, call: GrpcCall<'_>, code: &str, took: Duration) {
        self.grpc_handled.with_label_values(&[call.kind, call.service, call.method, code]).inc();
        self.grpc_handling.with_label_values(&[call.kind, call.service, call.method]).observe(took.as_secs_f64());
    }

    /// Unary gRPC calls handled so far, over every service and method: the count at or below
    /// each of go-grpc-prometheus's bucket bounds (seconds), cumulative as Prometheus keeps them.
    /// The last bound is infinity (every call). The dashboard's latency chart is the difference
    /// of two of these.
    pub fn unary_latency_buckets(&self) -> Vec<(f64, u64)> {
        use prometheus::core::Collector as _;
        let bounds = GRPC_HANDLING_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let mut totals: Vec<(f64, u64)> = bounds.map(|bound| (bound, 0)).collect();
        for family in self.grpc_handling.collect() {
            for metric in family.get_metric() {
                let unary = metric.get_label().iter().any(|l| l.name() == "grpc_type" && l.value() == "unary");
                if !unary {
                    continue;
                }
                let histogram = metric.get_histogram();
                let counts = histogram.get_bucket().iter().map(|b| b.cumulative_count());
                for (total, count) in totals.iter_mut().zip(counts.chain([histogram.get_sample_count()])) {
                    total.1 = total.1.saturating_add(count);
                }
            }
        }
        totals
    }

    /// Everything above, in Prometheus's text format.
    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_else(|error| {
            tracing::error!("telemetry: {error}");
            String::new()
        })
    }
}

/// etcd labels peers by their member ID in hex.
fn member_label(id: u64) -> String {
    format!("{id:x}")
}

fn as_u64(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

fn exponential((start, factor, count): (f64, f64, usize)) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).unwrap_or_default()
}

// The constructors below fail only on an invalid name or buckets, all constants here; a
// failure is a bug in this file, which `tests` below catches, so the fallbacks never run.

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).unwrap_or_else(unreachable_metric)
}

fn histogram_vec(name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).unwrap_or_else(unreachable_metric)
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(unreachable_metric)
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(unreachable_metric)
}

fn unreachable_metric<T>(error: prometheus::Error) -> T {
    panic!("telemetry: a constant metric definition is invalid: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_defined_and_renders_once_observed() {
        let telemetry = Telemetry::new();
        telemetry.wal_fsync(Duration::from_millis(3));
        telemetry.backend_commit(Duration::from_millis(2));
        telemetry.peer_round_trip(0xabc, Duration::from_micros(300));
        telemetry.peer_sent(0xabc, 10);
        telemetry.peer_send_failed(0xabc);
        telemetry.peer_received(0xabc, 10);
        telemetry.client_received(5);
        telemetry.client_sent(7);
        let call = GrpcCall { kind: "unary", service: "etcdserverpb.KV", method: "Put" };
        telemetry.grpc_started(call);
        telemetry.grpc_handled(call, "OK", Duration::from_millis(1));
        let text = telemetry.render();
        for line in [
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 1",
            "etcd_disk_backend_commit_duration_seconds_count 1",
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"abc\",le=\"0.0004\"} 1",
            "etcd_network_peer_sent_failures_total{To=\"abc\"} 1",
            "etcd_network_client_grpc_sent_bytes_total 7",
            "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
