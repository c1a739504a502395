//! Who is looking. With etcd auth off, anyone: every page is open, as etcd answers anyone. With
//! it on, the user a login made an etcd token for (Authenticate, the same password check and
//! token as etcdctl's), carried in an HttpOnly, SameSite=Strict cookie scoped to `/ui`; without
//! a valid one a page sends the browser to the login form and shows nothing else.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keel_model::auth::etcd::{Access, Caller};
use maud::html;
use serde::Deserialize;

use super::layout::{self, Section};
use super::Ui;
use crate::api::to_status;
use crate::member::{Credentials, Member};

/// The cookie that carries a signed-in browser's etcd token.
const COOKIE: &str = "keel_ui_token";

/// The header the page's script sets when it fetches a page's `<main>` again: such a request
/// (and the live stream) is answered 401 rather than sent to the login form.
pub(super) const FRAGMENT_HEADER: &str = "x-keel-fragment";

/// The longest name, password or return path the login form takes; etcd's own limits are far
/// larger only because its requests are.
const FIELD_BYTES_MAX: usize = 1024;

/// Who a request comes from, as the dashboard checks it.
pub(super) struct Viewer {
    caller: Option<Caller>,
    auth_enabled: bool,
}

impl Viewer {
    /// The signed-in user's name; `None` while auth is off.
    pub fn name(&self) -> Option<&str> {
        self.caller.as_ref().map(|caller| caller.user.as_str())
    }

    /// Whether the viewer may read the keys `[key, range_end)` (etcd's permissions).
    pub fn may_read(&self, member: &Member, key: &[u8], range_end: &[u8]) -> bool {
        member.check_read(self.caller.as_ref(), &[Access::read(key, range_end)]).is_ok()
    }

    /// Whether the viewer may see Keel's native services (Services, Config, Events): everyone
    /// while auth is off, etcd's root users while it is on, as the services themselves answer.
    pub fn may_use_native(&self, member: &Member) -> bool {
        !self.auth_enabled || member.check_admin(self.caller.as_ref()).is_ok()
    }
}

/// A handler that takes a `Viewer` answers only a viewer who may look: others are sent to log
/// in (or told 401, from the page's script and the live stream).
impl FromRequestParts<Arc<Ui>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<Viewer, Response> {
        viewer(&ui.member, &parts.headers, &parts.uri).await
    }
}

/// The viewer of a request, or the answer that sends it to log in.
async fn viewer(member: &Member, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Response> {
    if !member.read_auth(|auth| auth.enabled) {
        return Ok(Viewer { caller: None, auth_enabled: false });
    }
    if let Some(token) = cookie_token(headers) {
        let credentials = Credentials { token: Some(token), certificate_user: None };
        if let Ok(Some(caller)) = member.caller(&credentials).await {
            return Ok(Viewer { caller: Some(caller), auth_enabled: true });
        }
    }
    if headers.contains_key(FRAGMENT_HEADER) || uri.path() == "/ui/live" {
        return Err((StatusCode::UNAUTHORIZED, "sign in at /ui/login\n").into_response());
    }
    let next = uri.path_and_query().map_or("/ui/cluster", |p| p.as_str());
    let to = format!("/ui/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
    Err(Redirect::to(&to).into_response())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, token)| token.to_string())
        .filter(|token| !token.is_empty())
}

#[derive(Deserialize, Default)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

pub(super) async fn login_form(State(ui): State<Arc<Ui>>, Query(query): Query<LoginQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    login_page(&ui, next, None).into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

pub(super) async fn login(State(ui): State<Arc<Ui>>, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    if form.name.len() > FIELD_BYTES_MAX || form.password.len() > FIELD_BYTES_MAX {
        return login_page(&ui, next, Some("name or password too long")).into_response();
    }
    match ui.member.authenticate(&form.name, &form.password).await {
        Ok(token) => {
            let cookie = format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict");
            match HeaderValue::from_str(&cookie) {
                Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response(),
                Err(_) => login_page(&ui, next, Some("the member made a token no cookie can hold")).into_response(),
            }
        }
        Err(error) => {
            let message = to_status(&error).message().to_string();
            (StatusCode::UNAUTHORIZED, login_page(&ui, next, Some(&message))).into_response()
        }
    }
}

pub(super) async fn logout() -> Response {
    let clear = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, clear)], Redirect::to("/ui/login")).into_response()
}

/// Where to go after logging in: a dashboard path only, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with("/ui") && !next.starts_with("//") && next.len() <= FIELD_BYTES_MAX => next,
        _ => "/ui/cluster",
    }
}

fn login_page(ui: &Ui, next: &str, error: Option<&str>) -> Response {
    let auth_enabled = ui.member.read_auth(|auth| auth.enabled);
    let body = html! {
        h1 { "Sign in" }
        @if !auth_enabled {
            p { "Authentication is not enabled on this cluster: every page is open. "
                a href="/ui/cluster" { "Go to the cluster" } }
        }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        form.login method="post" action="/ui/login" {
            input type="hidden" name="next" value=(next);
            label { "User" input type="text" name="name" autocomplete="username" required autofocus; }
            label { "Password" input type="password" name="password" autocomplete="current-password"; }
            button type="submit" { "Sign in" }
        }
    };
    layout::html_response(layout::page(Section::Login, "Sign in", None, None, body))
}
