//! The frame every page shares: the section navigation, who is signed in, the live stream the
//! page listens to, and the answer to the script's "just the `<main>`, please".

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::session::{Viewer, FRAGMENT_HEADER};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Cluster,
    Services,
    Keys,
    Config,
    Events,
    Login,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Cluster, "Cluster", "/ui/cluster"),
    (Section::Services, "Services", "/ui/services"),
    (Section::Keys, "Keys", "/ui/keys"),
    (Section::Config, "Config", "/ui/config"),
    (Section::Events, "Events", "/ui/events"),
];

/// What a page listens to for changes: keys under a prefix, a clock, or both.
pub(super) struct Live {
    pub prefix: Option<Vec<u8>>,
    pub tick_secs: Option<u32>,
}

impl Live {
    fn url(&self) -> String {
        let mut url = String::from("/ui/live?");
        if let Some(prefix) = &self.prefix {
            url.push_str(&super::format::key_param("prefix", prefix));
            url.push('&');
        }
        if let Some(tick) = self.tick_secs {
            url.push_str(&format!("tick={tick}"));
        }
        url
    }
}

/// A whole page.
pub(super) fn page(section: Section, title: &str, user: Option<&str>, live: Option<&Live>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Keel" }
                link rel="stylesheet" href="/ui/assets/ui.css";
                script src="/ui/assets/ui.js" defer {}
            }
            body data-live=[live.map(Live::url)] {
                header.top {
                    a.brand href="/ui/cluster" { "Keel" }
                    nav aria-label="Sections" {
                        ul {
                            @for (each, name, href) in SECTIONS {
                                li { a href=(href) aria-current=[(each == section).then_some("page")] { (name) } }
                            }
                        }
                    }
                    @if let Some(user) = user {
                        form.user method="post" action="/ui/logout" {
                            span { "Signed in as " strong { (user) } }
                            button type="submit" { "Sign out" }
                        }
                    }
                    @if live.is_some() {
                        span.live-state aria-live="polite" data-state="connecting" { "live" }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The answer to a page request: the whole page, or only its `<main>` when the page's script
/// asks for it to refresh what it shows.
pub(super) fn respond(
    headers: &HeaderMap,
    section: Section,
    title: &str,
    viewer: &Viewer,
    live: Option<&Live>,
    body: Markup,
) -> Response {
    let markup =
        if headers.contains_key(FRAGMENT_HEADER) { body } else { page(section, title, viewer.name(), live, body) };
    html_response(markup)
}

/// A dashboard answer: never cached (it shows the state of the moment), never framed by another
/// site, and running no script but the dashboard's own.
pub(super) fn html_response(markup: Markup) -> Response {
    let mut response = Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    response
}

/// The section a viewer may not see, said plainly.
pub(super) fn not_permitted(what: &str) -> Markup {
    html! {
        p.error role="alert" { "Your account may not read " (what) "." }
    }
}
