//! The Keys page: the etcd keyspace as a tree of `/`-separated segments, a page of children at a
//! time (never the whole keyspace), and a key's value as text, pretty JSON or hex, its metadata,
//! its lease and its earlier revisions while they are not compacted. Read from this member's
//! keyspace, as far as the viewer's etcd permissions allow. Live on the prefix shown.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::format::{display_key, hex, key_from, key_param, preview};
use super::layout::{self, not_permitted, Live, Section};
use super::session::Viewer;
use super::Ui;
use crate::command::{KeyValue, RangeRequest};
use crate::keys::prefix_range_end;
use crate::limits::UI_PAGE_ENTRIES_MAX;
use crate::member::Member;
use crate::mvcc::{ReadError, TREE_DELIMITER};

/// The most of a value the page shows; the rest is cut (etcdctl reads whole values).
const VALUE_SHOWN_BYTES_MAX: usize = 64 * 1024;
/// Earlier revisions of a key the page lists.
const HISTORY_SHOWN_MAX: usize = 10;
/// How much of an earlier revision's value the history shows.
const HISTORY_PREVIEW_CHARS: usize = 120;

#[derive(Deserialize, Default)]
pub(super) struct KeysQuery {
    prefix: Option<String>,
    prefix_hex: Option<String>,
    after: Option<String>,
    after_hex: Option<String>,
    key: Option<String>,
    key_hex: Option<String>,
    view: Option<String>,
}

struct Wanted {
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    view: Option<View>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Text,
    Json,
    Hex,
}

impl View {
    const ALL: [(View, &'static str); 3] = [(View::Text, "text"), (View::Json, "json"), (View::Hex, "hex")];

    fn parse(name: &str) -> Option<View> {
        View::ALL.iter().find(|(_, n)| *n == name).map(|(view, _)| *view)
    }
}

fn wanted(query: &KeysQuery) -> Result<Wanted, String> {
    Ok(Wanted {
        prefix: key_from(query.prefix.as_deref(), query.prefix_hex.as_deref())?.unwrap_or_default(),
        after: key_from(query.after.as_deref(), query.after_hex.as_deref())?,
        key: key_from(query.key.as_deref(), query.key_hex.as_deref())?,
        view: query.view.as_deref().and_then(View::parse),
    })
}

pub(super) async fn page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(query): Query<KeysQuery>,
) -> Response {
    let wanted = match wanted(&query) {
        Ok(wanted) => wanted,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let detail = match &wanted.key {
        Some(key) => Some(key_detail(&ui.member, &viewer, key, &wanted).await),
        None => None,
    };
    let body = html! {
        h1 { "Keys" }
        (crumbs(&wanted.prefix))
        form.inline method="get" action="/ui/keys" role="search" {
            label { "Prefix " input type="text" name="prefix" value=(display_key(&wanted.prefix)) size="40"; }
            button type="submit" { "Go" }
        }
        div.split {
            section aria-label="Children" { (children(&ui.member, &viewer, &wanted)) }
            @if let Some(detail) = detail { section aria-label="Key" { (detail) } }
        }
    };
    let live = Live { prefix: Some(wanted.prefix.clone()), tick_secs: None };
    layout::respond(&headers, Section::Keys, "Keys", &viewer, Some(&live), body)
}

/// Links to each prefix above the one shown.
fn crumbs(prefix: &[u8]) -> Markup {
    let cuts: Vec<usize> =
        prefix.iter().enumerate().filter(|(_, &b)| b == TREE_DELIMITER).map(|(at, _)| at + 1).collect();
    html! {
        p.crumbs {
            a href="/ui/keys" { "(all keys)" }
            @for cut in cuts {
                @let above = prefix.get(..cut).unwrap_or_default();
                " " a href=(format!("/ui/keys?{}", key_param("prefix", above))) { (display_key(above)) }
            }
        }
    }
}

fn children(member: &Member, viewer: &Viewer, wanted: &Wanted) -> Markup {
    let prefix = &wanted.prefix;
    if !viewer.may_read(member, prefix, &prefix_range_end(prefix)) {
        return not_permitted("every key under this prefix");
    }
    let (page, revision) = {
        // One read of the keyspace: the revision shown is the one the listing is of.
        let mvcc = member.shared().mvcc();
        (mvcc.tree_children(prefix, wanted.after.as_deref(), UI_PAGE_ENTRIES_MAX), mvcc.current_revision())
    };
    html! {
        p.muted { "As this member holds them at revision " (revision) }
        @if page.children.is_empty() {
            p { "No key starts with " code { (display_key(prefix)) } "." }
        } @else {
            table aria-label="Keys and prefixes" {
                tbody {
                    @for child in &page.children {
                        @let name = display_key(child.path.get(prefix.len()..).unwrap_or_default());
                        tr {
                            td {
                                @if child.is_branch {
                                    a.branch href=(format!("/ui/keys?{}", key_param("prefix", &child.path))) { (name) }
                                    @if child.is_key {
                                        " " a href=(key_link(prefix, &child.path)) { "(key)" }
                                    }
                                } @else {
                                    a.key href=(key_link(prefix, &child.path)) data-key=(display_key(&child.path)) {
                                        @if name.is_empty() { "(this prefix itself)" } @else { (name) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if page.more {
            @if let Some(last) = page.children.last() {
                p.pager { a rel="next" href=(format!("/ui/keys?{}&{}", key_param("prefix", prefix), key_param("after", &last.path))) { "Next page →" } }
            }
        }
        @if page.stopped_on_dead_keys {
            p.muted { "Stopped early: many deleted keys here are still kept for history; a compaction forgets them." }
        }
    }
}

fn key_link(prefix: &[u8], key: &[u8]) -> String {
    format!("/ui/keys?{}&{}", key_param("prefix", prefix), key_param("key", key))
}

async fn key_detail(member: &Member, viewer: &Viewer, key: &[u8], wanted: &Wanted) -> Markup {
    if !viewer.may_read(member, key, &[]) {
        return not_permitted("this key");
    }
    let found = match read_at(member, key, 0) {
        Ok(found) => found,
        Err(error) => return html! { p.error role="alert" { (error) } },
    };
    let Some(kv) = found else {
        return html! { h2 { code { (display_key(key)) } } p { "This key does not exist now." } };
    };
    let view = wanted.view.unwrap_or_else(|| default_view(&kv.value));
    let lease_left = super::leases_left(member, [kv.lease]).await.get(&kv.lease).copied();
    html! {
        h2 { code { (display_key(key)) } }
        dl.facts {
            dt { "Created at revision" } dd { (kv.create_revision) }
            dt { "Modified at revision" } dd { (kv.mod_revision) }
            dt { "Version" } dd { (kv.version) }
            dt { "Size" } dd { (kv.value.len()) " bytes" }
            dt { "Lease" } dd {
                @if kv.lease == 0 { span.muted { "none" } }
                @else { code { (format!("{:x}", kv.lease)) } @if let Some(left) = lease_left { " · " (left) " s left" } }
            }
        }
        p.views {
            @for (each, name) in View::ALL {
                a href=(format!("{}&view={name}", key_link(&wanted.prefix, key))) aria-current=[(each == view).then_some("true")] { (name) }
            }
        }
        pre.value { (shown(&kv.value, view)) }
        h3 { "Earlier revisions" }
        (history(member, &kv))
    }
}

/// The key as of `revision` (0 = now) on this member.
fn read_at(member: &Member, key: &[u8], revision: i64) -> Result<Option<KeyValue>, ReadError> {
    let request = RangeRequest { key: key.to_vec(), revision, ..RangeRequest::default() };
    Ok(member.shared().range(&request)?.kvs.into_iter().next())
}

fn default_view(value: &[u8]) -> View {
    if serde_json::from_slice::<serde_json::Value>(value).is_ok_and(|v| v.is_object() || v.is_array()) {
        View::Json
    } else if std::str::from_utf8(value).is_ok() {
        View::Text
    } else {
        View::Hex
    }
}

/// The value as `view` shows it, cut at [`VALUE_SHOWN_BYTES_MAX`].
fn shown(value: &[u8], view: View) -> String {
    let cut = value.get(..VALUE_SHOWN_BYTES_MAX).unwrap_or(value);
    let note =
        if cut.len() < value.len() { format!("\n… ({} more bytes)", value.len() - cut.len()) } else { String::new() };
    let text = match view {
        View::Json => match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(json) => {
                let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
                return truncate_chars(&pretty, VALUE_SHOWN_BYTES_MAX);
            }
            Err(error) => format!("(not JSON: {error})\n{}", String::from_utf8_lossy(cut)),
        },
        View::Text => String::from_utf8_lossy(cut).into_owned(),
        View::Hex => hex_dump(cut),
    };
    text + &note
}

fn truncate_chars(text: &str, bytes: usize) -> String {
    if text.len() <= bytes {
        return text.to_string();
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… (cut)", text.get(..end).unwrap_or_default())
}

/// 16 bytes a line: offset, hex, and the printable ASCII.
fn hex_dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(line, chunk)| {
            let ascii: String =
                chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
            format!("{:08x}  {:<32}  {ascii}", line * 16, hex(chunk))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The key's earlier values, newest first, back to its creation or the compaction.
fn history(member: &Member, kv: &KeyValue) -> Markup {
    let mut earlier = Vec::new();
    let mut note = None;
    let mut at = kv.mod_revision - 1;
    while earlier.len() < HISTORY_SHOWN_MAX && at >= kv.create_revision {
        match read_at(member, &kv.key, at) {
            Ok(Some(old)) => {
                at = old.mod_revision - 1;
                earlier.push(old);
            }
            Ok(None) => break,
            Err(ReadError::Rejected(error)) => {
                note = Some(error.to_string());
                break;
            }
            Err(error) => {
                note = Some(format!("reading history: {error}"));
                break;
            }
        }
    }
    html! {
        @if earlier.is_empty() && note.is_none() { p.muted { "None: this is the key's first version." } }
        @if !earlier.is_empty() {
            table aria-label="Earlier revisions" {
                thead { tr { th.num { "Revision" } th.num { "Version" } th { "Value" } } }
                tbody {
                    @for old in &earlier {
                        tr {
                            td.num { (old.mod_revision) }
                            td.num { (old.version) }
                            td { code { (preview(&old.value, HISTORY_PREVIEW_CHARS)) } }
                        }
                    }
                }
            }
        }
        @if let Some(note) = note { p.muted { "Older revisions: " (note) } }
    }
}
