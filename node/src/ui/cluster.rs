//! The Cluster page: the members as this member knows them (the leader also shows how far each
//! follower's log is and when it last answered), this member's own figures, and charts of
//! writes per second and the p99 of its unary gRPC calls over the last minutes, from samples of
//! its own counters taken every [`SAMPLE_EVERY`] once the page was first asked for.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{html, Markup};

use super::format::{bytes, duration};
use super::layout::{self, Live, Section};
use super::session::Viewer;
use super::Ui;
use crate::member::Member;
use crate::telemetry::telemetry;

/// How often the charts' counters are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept: five minutes.
const SAMPLES_KEPT: usize = 150;
/// How often an open Cluster page is refreshed.
const REFRESH_SECS: u32 = 2;

/// The counters behind the charts, oldest first.
#[derive(Default)]
pub(super) struct Samples {
    started: OnceLock<()>,
    kept: Mutex<VecDeque<Sample>>,
}

#[derive(Clone)]
struct Sample {
    revision: i64,
    latency_buckets: Vec<(f64, u64)>,
}

impl Ui {
    /// Starts sampling the member's counters (once; until the member stops).
    fn start_sampling(self: &Arc<Ui>) {
        if self.samples.started.set(()).is_err() {
            return;
        }
        let ui = self.clone();
        tokio::spawn(async move {
            let stopped = ui.member.shared().hub().stopped();
            tokio::pin!(stopped);
            let mut clock = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    () = &mut stopped => return,
                    _ = clock.tick() => ui.samples.take(&ui.member),
                }
            }
        });
    }
}

impl Samples {
    fn take(&self, member: &Member) {
        let sample = Sample {
            revision: member.shared().mvcc().current_revision(),
            latency_buckets: telemetry().unary_latency_buckets(),
        };
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() == SAMPLES_KEPT {
            kept.pop_front();
        }
        kept.push_back(sample);
    }

    /// Writes per second and the p99 latency in milliseconds between consecutive samples.
    fn series(&self) -> (Vec<f64>, Vec<f64>) {
        let kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pairs = kept.iter().zip(kept.iter().skip(1));
        pairs
            .map(|(before, after)| {
                let writes = (after.revision - before.revision).max(0) as f64 / SAMPLE_EVERY.as_secs_f64();
                (writes, p99_ms(&before.latency_buckets, &after.latency_buckets))
            })
            .unzip()
    }
}

/// The p99 of the calls between two cumulative bucket counts, as the bound of the bucket it
/// falls in (Prometheus's `histogram_quantile` without the interpolation); 0 with no calls.
fn p99_ms(before: &[(f64, u64)], after: &[(f64, u64)]) -> f64 {
    let counts: Vec<(f64, u64)> = before.iter().zip(after).map(|(b, a)| (a.0, a.1.saturating_sub(b.1))).collect();
    let total = counts.last().map_or(0, |last| last.1);
    if total == 0 {
        return 0.0;
    }
    let rank = (total as f64 * 0.99).ceil() as u64;
    let bound = counts.iter().find(|(_, count)| *count >= rank).map_or(f64::INFINITY, |(bound, _)| *bound);
    if bound.is_finite() {
        bound * 1000.0
    } else {
        10_000.0
    }
}

pub(super) async fn page(State(ui): State<Arc<Ui>>, viewer: Viewer, headers: HeaderMap) -> Response {
    ui.start_sampling();
    let body = html! {
        h1 { "Cluster" }
        (members(&ui.member))
        h2 { "This member" }
        (this_member(&ui.member))
        h2 { "The last minutes" }
        (charts(&ui.samples))
    };
    let live = Live { prefix: None, tick_secs: Some(REFRESH_SECS) };
    layout::respond(&headers, Section::Cluster, "Cluster", &viewer, Some(&live), body)
}

fn members(member: &Member) -> Markup {
    let metrics = member.metrics();
    let leader = metrics.current_leader;
    let seen = member.replication_seen();
    let last_log = metrics.last_log_index.unwrap_or(0);
    html! {
        table aria-label="Members" {
            thead { tr {
                th { "Name" } th { "ID" } th { "Role" } th { "Client URLs" } th { "Peer URLs" }
                th.num { "Log behind the leader" } th { "Last heard" }
            } }
            tbody {
                @for info in member.member_list() {
                    @let replication = seen.get(&info.id);
                    tr {
                        td { (if info.name.is_empty() { "(not started)" } else { info.name.as_str() })
                             @if info.id == member.id { " " span.muted { "(this member)" } } }
                        td { code { (format!("{:x}", info.id)) } }
                        td {
                            @if Some(info.id) == leader { span.tag.leader { "leader" } }
                            @else if info.is_learner { span.tag { "learner" } }
                            @else { span.tag { "follower" } }
                        }
                        td { @for url in &info.client_urls { a href=(format!("{url}/ui/cluster")) { (url) } br; } }
                        td { @for url in &info.peer_urls { (url) br; } }
                        td.num {
                            @match replication.and_then(|r| r.matched_index) {
                                Some(matched) => (last_log.saturating_sub(matched)),
                                None => span.muted { "—" },
                            }
                        }
                        td {
                            @match replication.and_then(|r| r.heard_ago) {
                                Some(ago) if ago < Duration::from_secs(5) => { span.ok { (duration(ago)) " ago" } },
                                Some(ago) => { span.bad { (duration(ago)) " ago" } },
                                None => span.muted { (if leader == Some(member.id) || leader.is_none() { "—" } else { "ask the leader" }) },
                            }
                        }
                    }
                }
            }
        }
    }
}

fn this_member(member: &Member) -> Markup {
    let metrics = member.metrics();
    let (leader_changes, pending, failed) = member.server_counters();
    let (revision, compacted, keys) = {
        let mvcc = member.shared().mvcc();
        (mvcc.current_revision(), mvcc.compact_revision(), mvcc.key_count())
    };
    let healthy = metrics.current_leader.is_some();
    html! {
        div.cards {
            div.card {
                dl.facts {
                    dt { "Health" } dd { @if healthy { span.ok { "has a leader" } } @else { span.bad { "no leader" } } }
                    dt { "Raft term" } dd { (metrics.current_term) }
                    dt { "Applied index" } dd { (metrics.last_applied.map_or(0, |id| id.index)) }
                    dt { "Committed index" } dd { (metrics.local_committed.map_or(0, |id| id.index)) }
                    dt { "Leader changes seen" } dd { (leader_changes) }
                    dt { "Proposals pending / failed" } dd { (pending) " / " (failed) }
                }
            }
            div.card {
                dl.facts {
                    dt { "Revision" } dd { (revision) }
                    dt { "Compacted at" } dd { (compacted) }
                    dt { "Keys" } dd { (keys) }
                    dt { "Database size" } dd { (bytes(member.db_size_bytes())) }
                    dt { "On disk" } dd { (bytes(member.disk_size_bytes())) }
                    dt { "Resident memory" } dd { (crate::api::resident_memory_bytes().map_or("—".into(), bytes)) }
                }
            }
        }
    }
}

fn charts(samples: &Samples) -> Markup {
    let (writes, p99) = samples.series();
    if writes.is_empty() {
        return html! { p.muted { "Sampling this member's counters every " (SAMPLE_EVERY.as_secs()) " s: the charts appear in a moment." } };
    }
    html! {
        div.cards {
            div.card {
                h3 { "Writes per second" }
                (chart("writes per second", &writes))
                p.muted { "now " (format!("{:.0}", writes.last().copied().unwrap_or(0.0))) " · peak " (format!("{:.0}", peak(&writes))) }
            }
            div.card {
                h3 { "p99 of gRPC calls (ms)" }
                (chart("p99 latency in milliseconds", &p99))
                p.muted { "now ≤ " (format!("{}", p99.last().copied().unwrap_or(0.0))) " ms · peak ≤ " (format!("{}", peak(&p99))) " ms" }
            }
        }
    }
}

fn peak(series: &[f64]) -> f64 {
    series.iter().copied().fold(0.0, f64::max)
}

/// A line over the series, scaled to its peak, newest on the right.
fn chart(label: &str, series: &[f64]) -> Markup {
    let top = peak(series).max(1.0);
    let width = SAMPLES_KEPT as f64;
    let start = width - series.len() as f64;
    let points: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, value)| format!("{:.1},{:.1}", start + i as f64, 100.0 - value / top * 95.0))
        .collect();
    html! {
        svg.chart role="img" aria-label=(label) viewBox=(format!("0 0 {width} 100")) preserveAspectRatio="none" {
            @if points.len() > 1 { polyline points=(points.join(" ")) {} }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::p99_ms;

    #[test]
    fn p99_is_the_bound_of_the_bucket_it_falls_in() {
        let before = [(0.005, 10), (0.01, 10), (f64::INFINITY, 10)];
        let after = [(0.005, 108), (0.01, 110), (f64::INFINITY, 110)];
        assert_eq!(p99_ms(&before, &after), 10.0, "the 99th of 100 calls is in the 10 ms bucket");
        assert_eq!(p99_ms(&before, &before), 0.0, "no calls, no latency");
        let slow = [(0.005, 10), (0.01, 10), (f64::INFINITY, 20)];
        assert_eq!(p99_ms(&before, &slow), 10_000.0, "past the last bound: shown as the last bound");
    }
}
