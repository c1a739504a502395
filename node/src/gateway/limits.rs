//! Rate limits: token buckets (GCRA, `governor`; keel-client's [`Rate`], as a service's own
//! limiter layer uses) per service endpoint and per caller, read
//! from Keel Config (namespace `gateway`, path `limits`) and replaced live whenever that
//! document changes, in every gateway instance. A bucket is this gateway's own: N gateways
//! let through N times the rate, as micro's per-process limiter wrapper does.
//!
//! ```json
//! {"caller": {"per_second": 100, "burst": 200},
//!  "endpoints": [{"service": "greeter", "endpoint": "Say.Hello", "per_second": 10, "burst": 20},
//!                {"service": "billing", "per_second": 50}]}
//! ```
//!
//! An endpoint entry without `endpoint` (or with `"*"`) covers every endpoint of the service.
//! A document that does not parse is refused (logged) and the limits in force stay.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter};
use keel_client::config::{Config, WatchOptions};
pub use keel_client::limiter::{OverLimit, Rate};
use serde::{Deserialize, Serialize};

/// The Config namespace and path the limits live at.
pub const CONFIG_NAMESPACE: &str = "gateway";
pub const CONFIG_PATH: &str = "limits";
/// Callers tracked at most before idle buckets are dropped (a full bucket is forgotten
/// without changing any answer).
const CALLER_KEYS_MAX: usize = 100_000;
/// Endpoint entries accepted in one document.
const ENDPOINT_ENTRIES_MAX: usize = 10_000;
/// How long the watch task waits before watching again after a failure.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// The document at `gateway:limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDocument {
    /// Each caller's (account, else client address) own bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Rate>,
    #[serde(default)]
    pub endpoints: Vec<EndpointRate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRate {
    pub service: String,
    /// micro's `Service.Method`, or `*` (the default) for every endpoint of the service.
    #[serde(default = "every_endpoint")]
    pub endpoint: String,
    pub per_second: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

fn every_endpoint() -> String {
    "*".to_string()
}

/// The buckets in force.
#[derive(Default)]
struct Active {
    caller: Option<DefaultKeyedRateLimiter<String>>,
    /// Service → endpoint (or `*`) → bucket: nested so that a request looks up its own
    /// `&str`s without building a key.
    endpoints: HashMap<String, HashMap<String, DefaultDirectRateLimiter>>,
}

/// Whose bucket a caller draws from: its checked account, else its address (prefixed, so an
/// account named like an address has a bucket of its own).
pub fn caller_key(account: Option<&str>, address: &str) -> String {
    match account {
        Some(id) => format!("account:{id}"),
        None => format!("address:{address}"),
    }
}

/// The limits every request is checked against; replaced as a whole when the document changes.
#[derive(Default)]
pub struct Limits {
    // std RwLock: held to clone or swap an Arc, never across an await.
    active: RwLock<Arc<Active>>,
}

impl Limits {
    /// Takes one token from the endpoint's bucket (or the service's) and one from the caller's.
    pub fn check(&self, service: &str, endpoint: &str, caller: &str) -> Result<(), OverLimit> {
        let active = self.active.read().map(|a| a.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        let over = |not_until: governor::NotUntil<_>| OverLimit::from_not_until(&not_until);
        if let Some(buckets) = active.endpoints.get(service) {
            for key in [endpoint, "*"] {
                if let Some(bucket) = buckets.get(key) {
                    bucket.check().map_err(over)?;
                }
            }
        }
        if let Some(callers) = &active.caller {
            if callers.len() >= CALLER_KEYS_MAX {
                callers.retain_recent();
            }
            callers.check_key(&caller.to_string()).map_err(over)?;
        }
        Ok(())
    }

    /// Puts `document` in force (fresh buckets), or says why it cannot be.
    pub fn apply(&self, document: &LimitsDocument) -> Result<(), String> {
        if document.endpoints.len() > ENDPOINT_ENTRIES_MAX {
            return Err(format!("more than {ENDPOINT_ENTRIES_MAX} endpoint entries"));
        }
        let mut active = Active::default();
        if let Some(rate) = &document.caller {
            active.caller = Some(DefaultKeyedRateLimiter::keyed(rate.quota().map_err(|e| format!("caller: {e}"))?));
        }
        for entry in &document.endpoints {
            let rate = Rate { per_second: entry.per_second, burst: entry.burst };
            let quota = rate.quota().map_err(|e| format!("{} {}: {e}", entry.service, entry.endpoint))?;
            let buckets = active.endpoints.entry(entry.service.clone()).or_default();
            buckets.insert(entry.endpoint.clone(), DefaultDirectRateLimiter::direct(quota));
        }
        let active = Arc::new(active);
        match self.active.write() {
            Ok(mut current) => *current = active,
            Err(poisoned) => *poisoned.into_inner() = active,
        }
        Ok(())
    }
}

/// Keeps `limits` in step with the document in Config until the task is dropped.
pub async fn follow(config: Arc<dyn Config>, limits: Arc<Limits>) {
    loop {
        if let Err(error) = watch(config.as_ref(), &limits).await {
            tracing::warn!("the watch of the gateway's limits broke ({error}); watching again in {REWATCH_DELAY:?}");
        }
        tokio::time::sleep(REWATCH_DELAY).await;
    }
}

async fn watch(config: &dyn Config, limits: &Limits) -> keel_client::Result<()> {
    let options = WatchOptions { namespace: CONFIG_NAMESPACE.to_string(), secrets: false };
    let mut watcher = config.watch(CONFIG_PATH, options).await?;
    loop {
        let value = watcher.next().await?;
        let document = match value.exists() {
            false => Ok(LimitsDocument::default()),
            true => serde_json::from_value::<LimitsDocument>(value.into_json()).map_err(|e| e.to_string()),
        };
        match document.and_then(|document| limits.apply(&document).map(|()| document)) {
            Ok(document) => tracing::info!(
                endpoints = document.endpoints.len(),
                caller = document.caller.is_some(),
                "rate limits in force"
            ),
            Err(error) => tracing::warn!(
                "the limits at {CONFIG_NAMESPACE}:{CONFIG_PATH} are refused ({error}); the earlier ones stay"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(json: &str) -> LimitsDocument {
        serde_json::from_str(json).expect("a limits document")
    }

    #[test]
    fn endpoint_service_and_caller_buckets() {
        let limits = Limits::default();
        assert_eq!(limits.check("greeter", "Say.Hello", "ada"), Ok(()), "no document, no limit");
        limits
            .apply(&document(
                r#"{"endpoints":[{"service":"greeter","endpoint":"Say.Hello","per_second":1,"burst":2}]}"#,
            ))
            .expect("valid");
        assert!(limits.check("greeter", "Say.Hello", "ada").is_ok());
        assert!(limits.check("greeter", "Say.Hello", "bob").is_ok());
        let over = limits.check("greeter", "Say.Hello", "cy").expect_err("the endpoint's burst is spent");
        assert!(over.retry_after > Duration::ZERO && over.retry_after <= Duration::from_secs(1), "{over:?}");
        assert!(limits.check("greeter", "Say.Other", "ada").is_ok(), "another endpoint has no limit");

        limits
            .apply(&document(r#"{"caller":{"per_second":1},"endpoints":[{"service":"greeter","per_second":100}]}"#))
            .expect("valid");
        assert!(limits.check("greeter", "Say.Hello", "ada").is_ok(), "fresh buckets");
        assert!(limits.check("greeter", "Say.Hello", "ada").is_err(), "ada's own bucket is spent");
        assert!(limits.check("greeter", "Say.Hello", "bob").is_ok(), "bob's is not");
    }

    #[test]
    fn bad_documents_are_refused_and_the_limits_in_force_stay() {
        let limits = Limits::default();
        limits.apply(&document(r#"{"caller":{"per_second":1,"burst":1}}"#)).expect("valid");
        assert!(limits.apply(&document(r#"{"caller":{"per_second":0}}"#)).is_err());
        assert!(limits.apply(&document(r#"{"endpoints":[{"service":"s","per_second":1,"burst":0}]}"#)).is_err());
        assert!(serde_json::from_str::<LimitsDocument>(r#"{"callers":{}}"#).is_err(), "unknown fields are refused");
        assert!(serde_json::from_str::<LimitsDocument>(r#"{"caller":{"per_second":4294967296}}"#).is_err());
        assert!(limits.check("s", "E.F", "ada").is_ok());
        assert!(limits.check("s", "E.F", "ada").is_err(), "the first document is still in force");
    }
}
