//! The Events page: every topic with its offsets, size and retention; a topic's consumer groups
//! (position, lag, pending) and a page of its events from an offset or a time. Live on the
//! events prefix (a publish is a key there) and on a clock, since a group's acknowledgements move
//! its position without writing a key.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_proto::v1 as pb;
use maud::{html, Markup};
use serde::Deserialize;

use super::format::{bytes, encode, preview, unix_ms};
use super::layout::{self, not_permitted, Live, Section};
use super::session::Viewer;
use super::Ui;
use crate::limits::UI_PAGE_ENTRIES_MAX;
use crate::member::Member;
use crate::mvcc::events::EVENTS_PREFIX;
use keel_model::group::DEAD_LETTER_SUFFIX;

/// How often an open Events page is refreshed for its groups' positions.
const REFRESH_SECS: u32 = 2;
/// Events one page shows.
const EVENTS_SHOWN: u32 = 50;
/// How much of an event's payload the page shows.
const PAYLOAD_PREVIEW_CHARS: usize = 200;

#[derive(Deserialize, Default)]
pub(super) struct EventsQuery {
    topic: Option<String>,
    /// The topic list resumes after this topic.
    after: Option<String>,
    offset: Option<u64>,
    /// Unix milliseconds: the first event at or after this time.
    since_ms: Option<i64>,
}

pub(super) async fn page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(query): Query<EventsQuery>,
) -> Response {
    let body = if !viewer.may_use_native(&ui.member) {
        not_permitted("the event topics")
    } else {
        match &query.topic {
            Some(topic) => topic_page(&ui.member, topic, &query).await,
            None => topics(&ui.member, query.after.as_deref()),
        }
    };
    let live = Live { prefix: Some(EVENTS_PREFIX.as_bytes().to_vec()), tick_secs: Some(REFRESH_SECS) };
    layout::respond(&headers, Section::Events, "Events", &viewer, Some(&live), body)
}

fn topics(member: &Member, after: Option<&str>) -> Markup {
    let (topics, more) = {
        let mvcc = member.shared().mvcc();
        let mut listed = mvcc.topics();
        listed.retain(|(topic, _)| after.is_none_or(|after| topic.as_str() > after));
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let more = listed.len() > UI_PAGE_ENTRIES_MAX;
        let topics: Vec<pb::TopicInfo> = listed
            .into_iter()
            .take(UI_PAGE_ENTRIES_MAX)
            .map(|(topic, state)| crate::api::topic_info(&mvcc, topic, &state))
            .collect();
        (topics, more)
    };
    html! {
        h1 { "Events" }
        @if topics.is_empty() {
            p { "No topic has events." }
        } @else {
            table aria-label="Topics" {
                thead { tr {
                    th { "Topic" } th.num { "First offset" } th.num { "Next offset" } th.num { "Size" }
                    th { "Retention" } th.num { "Groups" }
                } }
                tbody {
                    @for topic in &topics {
                        tr data-topic=(topic.topic) {
                            td { a href=(format!("/ui/events?topic={}", encode(&topic.topic))) { (topic.topic) } }
                            td.num { (topic.first_offset) }
                            td.num { (topic.next_offset) }
                            td.num { (bytes(topic.size_bytes)) }
                            td { (retention(topic.retention.as_ref())) }
                            td.num { (topic.groups.len()) }
                        }
                    }
                }
            }
            @if more {
                @if let Some(last) = topics.last() {
                    p.pager { a rel="next" href=(format!("/ui/events?after={}", encode(&last.topic))) { "Next topics →" } }
                }
            }
        }
    }
}

fn retention(retention: Option<&pb::Retention>) -> String {
    let Some(r) = retention else { return "kept".into() };
    let mut limits = Vec::new();
    if r.max_events > 0 {
        limits.push(format!("{} events", r.max_events));
    }
    if r.max_age_ms > 0 {
        limits.push(super::format::duration(std::time::Duration::from_millis(r.max_age_ms)));
    }
    if r.max_bytes > 0 {
        limits.push(bytes(r.max_bytes));
    }
    if limits.is_empty() {
        "kept".into()
    } else {
        limits.join(", ")
    }
}

async fn topic_page(member: &Member, topic: &str, query: &EventsQuery) -> Markup {
    let dead_letter_topic = format!("{topic}{DEAD_LETTER_SUFFIX}");
    let (info, dead_letters) = {
        let mvcc = member.shared().mvcc();
        let info = mvcc.topic(topic).map(|state| crate::api::topic_info(&mvcc, topic.to_string(), state));
        let dead = mvcc.topic(&dead_letter_topic).map(|state| state.next_offset.saturating_sub(state.first_offset));
        (info, dead)
    };
    let Some(info) = info else {
        return html! { p.crumbs { a href="/ui/events" { "Events" } " / " } h1 { (topic) } p { "No such topic." } };
    };
    let from = query.offset.unwrap_or(info.next_offset.saturating_sub(u64::from(EVENTS_SHOWN)).max(info.first_offset));
    let request = pb::ReadEventsRequest {
        topic: topic.to_string(),
        offset: from,
        since_ms: query.since_ms.unwrap_or(0),
        limit: EVENTS_SHOWN,
    };
    let read = crate::api::read_events(member, request).await;
    let link = format!("/ui/events?topic={}", encode(topic));
    html! {
        p.crumbs { a href="/ui/events" { "Events" } " / " }
        h1 { (topic) }
        p.muted { "Offsets " (info.first_offset) " to " (info.next_offset) " (next) · " (bytes(info.size_bytes))
                  " · retention: " (retention(info.retention.as_ref())) }
        h2 { "Consumer groups" }
        (groups(&info.groups))
        p {
            "Dead letters: "
            @match dead_letters {
                Some(count) => a href=(format!("/ui/events?topic={}", encode(&dead_letter_topic))) { (count) " in " (dead_letter_topic) },
                None => "none",
            }
        }
        h2 { "Events" }
        form.inline method="get" action="/ui/events" {
            input type="hidden" name="topic" value=(topic);
            label { "From offset " input type="number" name="offset" min="0" value=(from); }
            label { "or from the time (Unix ms) " input type="number" name="since_ms" min="1"; }
            button type="submit" { "Show" }
        }
        @match read {
            Ok(page) => {
                (events(&page.events))
                @if page.next_offset < info.next_offset {
                    p.pager { a rel="next" href=(format!("{link}&offset={}", page.next_offset)) { "Next events →" } }
                }
            }
            Err(error) => p.error role="alert" { (crate::api::to_status(&error).message()) },
        }
    }
}

fn groups(groups: &[pb::GroupInfo]) -> Markup {
    html! {
        @if groups.is_empty() {
            p.muted { "No group consumes this topic." }
        } @else {
            table aria-label="Consumer groups" {
                thead { tr {
                    th { "Group" } th.num { "Position" } th.num { "Acknowledged up to" } th.num { "Lag" }
                    th.num { "Pending" } th.num { "Ack wait" } th.num { "Retries" }
                } }
                tbody {
                    @for group in groups {
                        tr data-group=(group.group) {
                            td { (group.group) }
                            td.num { (group.cursor) }
                            td.num { (group.ack_floor) }
                            td.num.lag { (group.lag) }
                            td.num { (group.pending) }
                            td.num { (group.ack_wait_ms) " ms" }
                            td.num { (group.retry_limit.map_or("no limit".to_string(), |n| n.to_string())) }
                        }
                    }
                }
            }
        }
    }
}

fn events(events: &[pb::EventMessage]) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "No events from here." }
        } @else {
            table aria-label="Events" {
                thead { tr { th.num { "Offset" } th { "Time" } th { "Id" } th { "Metadata" } th { "Payload" } } }
                tbody {
                    @for event in events {
                        tr {
                            td.num { (event.offset) }
                            td { (unix_ms(event.timestamp_ms)) }
                            td { code { (event.id) } }
                            td { @for (k, v) in &event.metadata { code { (k) "=" (v) } " " } }
                            td { code { (preview(&event.payload, PAYLOAD_PREVIEW_CHARS)) } }
                        }
                    }
                }
            }
        }
    }
}
