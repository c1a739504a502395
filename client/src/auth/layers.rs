//! micro's auth wrappers as tower layers for tonic.
//!
//! - [`TokenLayer`] on a client: every call carries the account's access token
//!   (`authorization: Bearer …`), signed in on first use and refreshed before it expires (with
//!   the refresh token, or the secret again when that fails).
//! - [`VerifyLayer`] on a server: every call's token is inspected and the endpoint called is
//!   verified against the rules (micro's auth wrapper): no account and no rule letting anyone in
//!   is UNAUTHENTICATED, an account the rules refuse is PERMISSION_DENIED, as micro answers. The
//!   handler finds the caller's [`Account`] in the request's extensions.
//!
//! Both work with any [`Auth`]: `GrpcAuth` in production, `MemoryAuth` in tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{Account, Auth, Resource, TokenOptions};
use crate::error::{Error, Result};

/// The header the token travels in, as micro sends it.
pub const AUTHORIZATION: &str = "authorization";
/// A token is refreshed when less than this is left of its life (or a third of it, if shorter).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An account's access token, kept fresh.
pub struct TokenSource {
    auth: Arc<dyn Auth>,
    id: String,
    secret: String,
    expiry: Duration,
    current: Mutex<Option<Held>>,
}

struct Held {
    access: HeaderValue,
    refresh_token: String,
    refresh_at: Instant,
}

impl TokenSource {
    /// Signs in as `id` with `secret` on first use, asking for access tokens lasting `expiry`.
    pub fn new(auth: Arc<dyn Auth>, id: impl Into<String>, secret: impl Into<String>, expiry: Duration) -> Arc<Self> {
        Arc::new(TokenSource { auth, id: id.into(), secret: secret.into(), expiry, current: Mutex::new(None) })
    }

    /// The `authorization` header's value now: `Bearer <access token>`.
    pub async fn header(&self) -> Result<HeaderValue> {
        let mut current = self.current.lock().await;
        if let Some(held) = current.as_ref().filter(|held| Instant::now() < held.refresh_at) {
            return Ok(held.access.clone());
        }
        let refreshed = match current.as_ref() {
            Some(held) => self
                .auth
                .token(TokenOptions { expiry: self.expiry, ..TokenOptions::with_refresh_token(&held.refresh_token) })
                .await
                .ok(),
            None => None,
        };
        let token = match refreshed {
            Some(token) => token,
            None => {
                let options = TokenOptions { expiry: self.expiry, ..TokenOptions::with_secret(&self.id, &self.secret) };
                self.auth.token(options).await?
            }
        };
        let life = token.expiry.duration_since(token.created).unwrap_or_default();
        let margin = REFRESH_MARGIN.min(life / 3);
        let access = HeaderValue::try_from(format!("Bearer {}", token.access_token))
            .map_err(|_| Error::InvalidResponse("an access token that is not a header value".into()))?;
        *current = Some(Held {
            access: access.clone(),
            refresh_token: token.refresh_token,
            refresh_at: Instant::now() + life.saturating_sub(margin),
        });
        Ok(access)
    }
}

/// Names the account, never its secret or tokens.
impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("account", &self.id).finish_non_exhaustive()
    }
}

/// Attaches a [`TokenSource`]'s token to every request of the service it wraps.
#[derive(Clone)]
pub struct TokenLayer {
    source: Arc<TokenSource>,
}

impl TokenLayer {
    pub fn new(source: Arc<TokenSource>) -> TokenLayer {
        TokenLayer { source }
    }
}

impl<S> Layer<S> for TokenLayer {
    type Service = WithToken<S>;

    fn layer(&self, inner: S) -> WithToken<S> {
        WithToken { inner, source: Some(self.source.clone()) }
    }
}

/// A service whose requests carry the account's token (or nothing, without a source: how
/// keel-client's own channels look when no account is configured).
#[derive(Clone)]
pub struct WithToken<S> {
    inner: S,
    source: Option<Arc<TokenSource>>,
}

impl<S> WithToken<S> {
    pub(crate) fn new(inner: S, source: Option<Arc<TokenSource>>) -> WithToken<S> {
        WithToken { inner, source }
    }
}

impl<S, B> Service<Request<B>> for WithToken<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is not ready; the one polled ready goes into the future (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone();
        Box::pin(async move {
            if let Some(source) = source {
                let header = source.header().await.map_err(|e| Box::new(e) as BoxError)?;
                request.headers_mut().insert(AUTHORIZATION, header);
            }
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// Checks every call of the service it wraps against the rules, as the service `name`
/// (its registered name): the resource is `service:<name>:<Service>.<Method>`.
#[derive(Clone)]
pub struct VerifyLayer {
    auth: Arc<dyn Auth>,
    name: Arc<str>,
}

impl VerifyLayer {
    pub fn new(auth: Arc<dyn Auth>, name: impl Into<String>) -> VerifyLayer {
        VerifyLayer { auth, name: name.into().into() }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verified<S>;

    fn layer(&self, inner: S) -> Verified<S> {
        Verified { inner, auth: self.auth.clone(), name: self.name.clone() }
    }
}

/// A service that answers only the calls the rules allow.
#[derive(Clone)]
pub struct Verified<S> {
    inner: S,
    auth: Arc<dyn Auth>,
    name: Arc<str>,
}

impl<S, B> Service<Request<B>> for Verified<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let resource = Resource {
            r#type: "service".into(),
            name: self.name.to_string(),
            endpoint: endpoint(request.uri().path()),
        };
        let token = bearer(&request).map(str::to_string);
        Box::pin(async move {
            match admit(&*auth, resource, token).await {
                Ok(account) => {
                    if let Some(account) = account {
                        request.extensions_mut().insert(account);
                    }
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The caller's account (from `token`) if the rules let it reach `resource`; micro's answer if not.
async fn admit(auth: &dyn Auth, resource: Resource, token: Option<String>) -> Result<Option<Account>, tonic::Status> {
    let account = match token {
        Some(token) => Some(auth.inspect(&token).await.map_err(|e| refusal(&e))?),
        None => None,
    };
    match auth.verify(account.as_ref(), &resource).await {
        Ok(()) => Ok(account),
        Err(Error::Forbidden(_)) if account.is_none() => {
            Err(tonic::Status::unauthenticated("this endpoint needs an account: sign in and send its token"))
        }
        Err(error) => Err(refusal(&error)),
    }
}

/// `/package.Service/Method` → `Service.Method`, micro's endpoint name.
fn endpoint(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    let service = service.rsplit('.').next().unwrap_or(service);
    format!("{service}.{method}")
}

fn bearer<B>(request: &Request<B>) -> Option<&str> {
    bearer_token(request.headers())
}

/// The access token of an `authorization: Bearer <token>` header, as micro's wrappers read it;
/// `None` without one (or with another scheme).
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))
}

fn refusal(error: &Error) -> tonic::Status {
    match error {
        Error::Unauthenticated(message) => tonic::Status::unauthenticated(message.clone()),
        Error::Forbidden(message) => tonic::Status::permission_denied(message.clone()),
        other => tonic::Status::unavailable(format!("cannot check the caller: {other}")),
    }
}

#[cfg(test)]
mod tests;
