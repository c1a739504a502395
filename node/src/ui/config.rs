//! The Config page: the namespaces under go-micro's `/micro/config/` and a namespace's assembled
//! document, as Config.Get gives it. Secrets stay sealed unless the viewer asks to reveal them and
//! may read them (everyone while auth is off, root while it is on, as the Config service
//! answers). Live on the config prefix.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::format::encode;
use super::layout::{self, not_permitted, Live, Section};
use super::session::Viewer;
use super::Ui;
use crate::dynamic_config::{ConfigPath, PREFIX};
use crate::limits::UI_PAGE_ENTRIES_MAX;
use crate::member::Member;

#[derive(Deserialize, Default)]
pub(super) struct ConfigQuery {
    namespace: Option<String>,
    #[serde(default)]
    secrets: bool,
}

pub(super) async fn page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(query): Query<ConfigQuery>,
) -> Response {
    let body = if viewer.may_use_native(&ui.member) {
        html! {
            h1 { "Config" }
            div.split {
                section aria-label="Namespaces" { (namespaces(&ui.member, query.namespace.as_deref())) }
                @if let Some(namespace) = &query.namespace {
                    section aria-label="Document" { (document(&ui.member, namespace, query.secrets)) }
                }
            }
        }
    } else {
        not_permitted("the configuration")
    };
    let live = Live { prefix: Some(PREFIX.as_bytes().to_vec()), tick_secs: None };
    layout::respond(&headers, Section::Config, "Config", &viewer, Some(&live), body)
}

/// The namespaces: the first segments under the config prefix, each once.
fn namespaces(member: &Member, shown: Option<&str>) -> Markup {
    let page = member.shared().mvcc().tree_children(PREFIX.as_bytes(), None, UI_PAGE_ENTRIES_MAX);
    let mut names: Vec<String> = page
        .children
        .iter()
        .filter_map(|child| child.path.get(PREFIX.len()..))
        .map(|segment| String::from_utf8_lossy(segment).trim_end_matches('/').to_string())
        .collect();
    names.dedup();
    html! {
        @if names.is_empty() { p { "No configuration is stored." } }
        ul {
            @for name in &names {
                li { a href=(format!("/ui/config?namespace={}", encode(name))) aria-current=[(shown == Some(name.as_str())).then_some("page")] { (name) } }
            }
        }
        @if page.more { p.muted { "The first " (names.len()) " namespaces are shown." } }
    }
}

fn document(member: &Member, namespace: &str, reveal: bool) -> Markup {
    let path = match ConfigPath::parse(namespace, "") {
        Ok(path) => path,
        Err(error) => return html! { p.error role="alert" { (error) } },
    };
    let key = if reveal { member.shared().secret_key() } else { None };
    let read = crate::api::read_document(member, &path, 0, key.as_ref());
    let link = format!("/ui/config?namespace={}", encode(namespace));
    html! {
        h2 { (namespace) }
        @match read {
            Ok((Some(value), revision)) => {
                p.muted {
                    "At revision " (revision) " · "
                    @if reveal { a href=(link) { "Seal secrets" } } @else { a href=(format!("{link}&secrets=true")) { "Reveal secrets" } }
                }
                pre.value { (serde_json::to_string_pretty(&value).unwrap_or_default()) }
            }
            Ok((None, _)) => p { "This namespace holds nothing now." },
            Err(error) => p.error role="alert" { (crate::api::to_status(&error).message()) },
        }
    }
}
