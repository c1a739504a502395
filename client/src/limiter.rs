//! micro's rate-limit wrappers (go-micro's `ratelimiter` plugins: `NewHandlerWrapper`,
//! `NewClientWrapper`) as one tower layer, for a tonic server or a tonic client: a token bucket
//! (GCRA, `governor`) in front of every call of the service it wraps. Over the limit a call is
//! refused with `RESOURCE_EXHAUSTED` and a `retry-after` (seconds), or waits for a token,
//! as [`WhenOver`] says. keel gateway and keel proxy draw on the same [`Rate`] and buckets.
//!
//! ```no_run
//! # use keel_client::limiter::{RateLimitLayer, Rate, WhenOver};
//! // A server's handlers: at most 100 calls a second, 20 more after a quiet spell.
//! let layer = RateLimitLayer::new(Rate { per_second: 100, burst: Some(120) }, WhenOver::Refuse)?;
//! // tonic::transport::Server::builder().layer(layer).add_service(...)
//! # Ok::<(), String>(())
//! ```

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use http::{HeaderValue, Request, Response};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

/// The metadata a refusal carries: seconds to wait before trying again, as an HTTP
/// `Retry-After` says it.
pub const RETRY_AFTER: &str = "retry-after";

/// How fast calls may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Calls let through per second, on average (at least 1).
    pub per_second: u32,
    /// Calls let through at once after a quiet spell; default `per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl Rate {
    /// The bucket's shape, or why there is none (a rate or burst of 0).
    pub fn quota(&self) -> Result<Quota, String> {
        let per_second = NonZeroU32::new(self.per_second).ok_or("per_second must be at least 1")?;
        let burst = match self.burst {
            None => per_second,
            Some(burst) => NonZeroU32::new(burst).ok_or("burst must be at least 1")?,
        };
        Ok(Quota::per_second(per_second).allow_burst(burst))
    }
}

/// Why a call is refused: wait this long before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after: Duration,
}

impl OverLimit {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let wait = self.retry_after;
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }

    /// From governor's answer to a bucket that had no token.
    pub fn from_not_until(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> OverLimit {
        OverLimit { retry_after: not_until.wait_time_from(DefaultClock::default().now()) }
    }
}

/// One token bucket.
#[derive(Debug)]
pub struct Limiter {
    bucket: DefaultDirectRateLimiter,
}

impl Limiter {
    pub fn new(rate: &Rate) -> Result<Limiter, String> {
        Ok(Limiter { bucket: DefaultDirectRateLimiter::direct(rate.quota()?) })
    }

    /// Takes a token now, or says how long until one is free.
    pub fn check(&self) -> Result<(), OverLimit> {
        self.bucket.check().map_err(|not_until| OverLimit::from_not_until(&not_until))
    }

    /// Waits until a token is free and takes it.
    pub async fn until_ready(&self) {
        self.bucket.until_ready().await;
    }
}

/// What a call over the limit gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenOver {
    /// `RESOURCE_EXHAUSTED` at once, with `retry-after` (micro's wrappers with `wait=false`).
    Refuse,
    /// Held until a token is free (micro's wrappers with `wait=true`): a client that should slow
    /// itself down rather than fail.
    Wait,
}

/// Limits every call of the service it wraps to one shared bucket.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
    when_over: WhenOver,
}

impl RateLimitLayer {
    pub fn new(rate: Rate, when_over: WhenOver) -> Result<RateLimitLayer, String> {
        Ok(RateLimitLayer { limiter: Arc::new(Limiter::new(&rate)?), when_over })
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited { inner, limiter: self.limiter.clone(), when_over: self.when_over }
    }
}

#[derive(Clone, Debug)]
pub struct RateLimited<S> {
    inner: S,
    limiter: Arc<Limiter>,
    when_over: WhenOver,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<Request<B>> for RateLimited<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone is not ready; the one polled ready goes into the future (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (limiter, when_over) = (self.limiter.clone(), self.when_over);
        Box::pin(async move {
            match when_over {
                WhenOver::Wait => limiter.until_ready().await,
                WhenOver::Refuse => {
                    if let Err(over) = limiter.check() {
                        return Ok(refusal(request.uri().path(), &over));
                    }
                }
            }
            inner.call(request).await
        })
    }
}

/// A gRPC answer with no message: RESOURCE_EXHAUSTED, and when to try again.
fn refusal<RB: Default>(path: &str, over: &OverLimit) -> Response<RB> {
    let message = format!("too many requests: {path} is over its rate limit");
    let mut response = tonic::Status::resource_exhausted(message).into_http::<RB>();
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(over.retry_after_secs()));
    response
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{service_fn, ServiceExt};

    use super::*;

    fn answered(
    ) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone + Send {
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("answered".to_string())) })
    }

    async fn call<S>(service: &S) -> Response<String>
    where
        S: Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone,
    {
        let request = Request::builder().uri("/greeter.Say/Hello").body(()).expect("request");
        service.clone().oneshot(request).await.expect("infallible")
    }

    #[tokio::test]
    async fn past_the_burst_calls_are_refused_with_resource_exhausted_and_when_to_retry() {
        let layer = RateLimitLayer::new(Rate { per_second: 1, burst: Some(2) }, WhenOver::Refuse).expect("rate");
        let service = layer.layer(answered());
        for _ in 0..2 {
            assert_eq!(call(&service).await.into_body(), "answered");
        }
        let refused = call(&service).await;
        let status = tonic::Status::from_header_map(refused.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), "too many requests: /greeter.Say/Hello is over its rate limit");
        assert_eq!(refused.headers()[RETRY_AFTER], "1");
        assert!(refused.into_body().is_empty(), "the handler was not called");
    }

    #[tokio::test]
    async fn a_waiting_limiter_holds_calls_until_a_token_is_free() {
        let layer = RateLimitLayer::new(Rate { per_second: 200, burst: Some(1) }, WhenOver::Wait).expect("rate");
        let service = layer.layer(answered());
        let started = std::time::Instant::now();
        for _ in 0..3 {
            assert_eq!(call(&service).await.into_body(), "answered", "every call answered, none refused");
        }
        // One token per 5 ms after the first: the third call waited for two of them.
        assert!(started.elapsed() >= Duration::from_millis(9), "{:?}", started.elapsed());
    }

    #[test]
    fn rates_of_zero_are_refused() {
        assert!(Rate { per_second: 0, burst: None }.quota().is_err());
        assert!(Rate { per_second: 1, burst: Some(0) }.quota().is_err());
        assert_eq!(OverLimit { retry_after: Duration::from_millis(1) }.retry_after_secs(), 1);
        assert_eq!(OverLimit { retry_after: Duration::from_millis(2001) }.retry_after_secs(), 3);
    }
}
