//! Who is calling through the gateway, and whether the cluster's rules let them reach the
//! endpoint: micro's auth wrapper. The caller's bearer token is inspected and
//! `Resource{type: "service", name, endpoint}` verified by the cluster; a verdict is kept for
//! [`VERDICT_TTL`], so a rule or account change reaches every gateway within that time without
//! a cluster round-trip on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use keel_client::auth::{Account, Auth, Resource};

/// How long a verdict (let in, or refused) is reused for the same token and endpoint.
pub const VERDICT_TTL: Duration = Duration::from_secs(2);
/// Verdicts kept at most; past this the cache starts again (each costs one cluster call).
const VERDICTS_MAX: usize = 10_000;
/// A bearer token longer than this is refused unread (micro's tokens are a few hundred bytes).
const TOKEN_BYTES_MAX: usize = 8 * 1024;
/// The header the service finds the caller's account id in. The gateway sets it; a caller's
/// own header of that name is dropped.
pub const ACCOUNT_HEADER: &str = "micro-account-id";

/// Why a caller is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No account (401): no token where one is needed, or a token the cluster does not accept.
    Unauthenticated(String),
    /// An account no rule lets in (403).
    Forbidden(String),
    /// The cluster could not be asked (503).
    Unavailable(String),
}

/// What was decided for a caller: the account let in (`None`: anonymous, let in), or why not.
type Verdict = Result<Option<String>, Refusal>;
/// (token, service, endpoint) → when it was decided, and what.
type Verdicts = HashMap<(String, String, String), (Instant, Verdict)>;

pub struct Identity {
    auth: Arc<dyn Auth>,
    // std Mutex: held to look up or insert, never across an await.
    verdicts: Mutex<Verdicts>,
}

impl Identity {
    pub fn new(auth: Arc<dyn Auth>) -> Identity {
        Identity { auth, verdicts: Mutex::new(HashMap::new()) }
    }

    /// The caller's account id (`None`: a public endpoint reached without signing in), or why
    /// the caller may not reach `endpoint` of `service`.
    pub async fn check(&self, headers: &HeaderMap, service: &str, endpoint: &str) -> Verdict {
        let token = bearer_token(headers)?;
        let key = (token.clone().unwrap_or_default(), service.to_string(), endpoint.to_string());
        let now = Instant::now();
        if let Some((at, verdict)) = self.lock().get(&key) {
            if now.duration_since(*at) < VERDICT_TTL {
                return verdict.clone();
            }
        }
        let verdict = self.ask(token.as_deref(), service, endpoint).await;
        if !matches!(verdict, Err(Refusal::Unavailable(_))) {
            let mut verdicts = self.lock();
            if verdicts.len() >= VERDICTS_MAX {
                verdicts.clear();
            }
            verdicts.insert(key, (now, verdict.clone()));
        }
        verdict
    }

    async fn ask(&self, token: Option<&str>, service: &str, endpoint: &str) -> Verdict {
        let account: Option<Account> = match token {
            None => None,
            Some(token) => Some(self.auth.inspect(token).await.map_err(refusal)?),
        };
        let resource = Resource { r#type: "service".into(), name: service.into(), endpoint: endpoint.into() };
        match self.auth.verify(account.as_ref(), &resource).await {
            Ok(()) => Ok(account.map(|account| account.id)),
            // micro's answer: no account is 401 (sign in), an account without a rule is 403.
            Err(keel_client::Error::Forbidden(_)) if account.is_none() => Err(Refusal::Unauthenticated(format!(
                "{service} {endpoint} is not public: send an access token (Authorization: Bearer …)"
            ))),
            Err(keel_client::Error::Forbidden(_)) => Err(Refusal::Forbidden(format!(
                "account {} may not reach {service} {endpoint}",
                account.map(|a| a.id).unwrap_or_default()
            ))),
            Err(error) => Err(refusal(error)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn refusal(error: keel_client::Error) -> Refusal {
    match error {
        keel_client::Error::Unauthenticated(_) => Refusal::Unauthenticated("the access token is not valid".into()),
        keel_client::Error::Forbidden(message) => Refusal::Forbidden(message),
        other => Refusal::Unavailable(format!("cannot check the caller with the cluster: {other}")),
    }
}

/// The bearer token of `Authorization`, if there is one (another scheme is no token).
fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    match keel_client::auth::layers::bearer_token(headers).map(str::trim) {
        None | Some("") => Ok(None),
        Some(token) if token.len() > TOKEN_BYTES_MAX => {
            Err(Refusal::Unauthenticated(format!("the access token is longer than {TOKEN_BYTES_MAX} bytes")))
        }
        Some(token) => Ok(Some(token.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::auth::{Access, GenerateOptions, MemoryAuth, Rule, TokenOptions};

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header"));
        }
        headers
    }

    #[tokio::test]
    async fn micro_answers_401_without_an_account_and_403_without_a_rule() {
        let auth = Arc::new(MemoryAuth::new());
        for (id, scope) in [("ada", "greeters"), ("bob", "nobody")] {
            let options = GenerateOptions {
                scopes: vec![scope.into()],
                secret: Some(format!("{id}-secret")),
                ..Default::default()
            };
            auth.generate(id, options).await.expect("account");
        }
        let resource = Resource { r#type: "service".into(), name: "greeter".into(), endpoint: "Say.Hello".into() };
        let rule =
            Rule { id: "greet".into(), scope: "greeters".into(), resource, access: Access::Granted, priority: 0 };
        auth.grant(rule).await.expect("rule");
        let token = |id: &'static str| {
            let auth = auth.clone();
            async move {
                auth.token(TokenOptions::with_secret(id, format!("{id}-secret"))).await.expect("token").access_token
            }
        };
        let (ada, bob) = (token("ada").await, token("bob").await);
        let identity = Identity::new(auth.clone());

        assert_eq!(identity.check(&headers(Some(&ada)), "greeter", "Say.Hello").await, Ok(Some("ada".into())));
        assert!(matches!(
            identity.check(&headers(Some(&bob)), "greeter", "Say.Hello").await,
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            identity.check(&headers(None), "greeter", "Say.Hello").await,
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(
            identity.check(&headers(Some("forged")), "greeter", "Say.Hello").await,
            Err(Refusal::Unauthenticated(_))
        ));
        let mut basic = HeaderMap::new();
        basic.insert(http::header::AUTHORIZATION, "Basic YWRhOng=".parse().expect("header"));
        assert!(matches!(identity.check(&basic, "greeter", "Say.Hello").await, Err(Refusal::Unauthenticated(_))));
    }
}
