use std::convert::Infallible;

use tower::{service_fn, ServiceExt};

use super::*;
use crate::auth::{Access, GenerateOptions, MemoryAuth, Rule};

async fn memory_auth_with(accounts: &[(&str, &str, &[&str])]) -> Arc<dyn Auth> {
    let auth = Arc::new(MemoryAuth::new());
    for (id, secret, scopes) in accounts {
        let options = GenerateOptions {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            secret: Some(secret.to_string()),
            ..GenerateOptions::default()
        };
        auth.generate(id, options).await.expect("generate");
    }
    auth
}

/// The authorization header a call through `service` carried.
async fn sent_header<S>(service: &WithToken<S>) -> String
where
    S: Service<Request<()>, Response = Option<String>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    service.clone().oneshot(Request::new(())).await.expect("call").expect("a header")
}

#[tokio::test(start_paused = true)]
async fn a_client_signs_in_once_and_refreshes_before_the_token_expires() {
    let auth = memory_auth_with(&[("svc", "pw", &[])]).await;
    let source = TokenSource::new(auth.clone(), "svc", "pw", Duration::from_secs(60));
    let echo = service_fn(|request: Request<()>| async move {
        Ok::<_, Infallible>(request.headers().get(AUTHORIZATION).map(|v| v.to_str().unwrap_or("").to_string()))
    });
    let service = TokenLayer::new(source).layer(echo);
    let first = sent_header(&service).await;
    assert!(first.starts_with("Bearer "), "{first}");
    assert_eq!(sent_header(&service).await, first, "one sign-in serves calls until the token nears its expiry");
    let token = first.trim_start_matches("Bearer ");
    assert_eq!(auth.inspect(token).await.expect("a valid token").id, "svc");

    tokio::time::advance(Duration::from_secs(51)).await;
    let refreshed = sent_header(&service).await;
    assert_ne!(refreshed, first, "refreshed 10 s before it expires");
    assert_eq!(auth.inspect(refreshed.trim_start_matches("Bearer ")).await.expect("valid").id, "svc");
}

#[tokio::test]
async fn a_client_whose_sign_in_fails_sends_nothing() {
    let auth = memory_auth_with(&[("svc", "pw", &[])]).await;
    let source = TokenSource::new(auth, "svc", "wrong", Duration::from_secs(60));
    let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = reached.clone();
    let inner = service_fn(move |_: Request<()>| {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(()) }
    });
    let result = TokenLayer::new(source).layer(inner).oneshot(Request::new(())).await;
    let error = result.expect_err("no token, no call");
    assert!(error.to_string().contains("unauthenticated"), "{error}");
    assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn the_server_answers_as_micro_does() {
    let auth = memory_auth_with(&[("admin", "a", &["admin"]), ("user", "u", &["user"])]).await;
    let rule = |id: &str, scope: &str, endpoint: &str| Rule {
        id: id.into(),
        scope: scope.into(),
        resource: Resource { r#type: "service".into(), name: "greeter".into(), endpoint: endpoint.into() },
        access: Access::Granted,
        priority: 0,
    };
    auth.grant(rule("public-hello", "", "Greeter.Hello")).await.expect("grant");
    auth.grant(rule("admins", "admin", "*")).await.expect("grant");
    let handler = service_fn(|request: Request<()>| async move {
        let who = request.extensions().get::<Account>().map_or("anyone".to_string(), |account| account.id.clone());
        let mut response = Response::new(tonic::body::Body::empty());
        response.headers_mut().insert("x-caller", HeaderValue::try_from(who).expect("ascii"));
        Ok::<_, Infallible>(response)
    });
    let service = VerifyLayer::new(auth.clone(), "greeter").layer(handler);
    let token = |id: &str, secret: &str| {
        let auth = auth.clone();
        let (id, secret) = (id.to_string(), secret.to_string());
        async move { auth.token(TokenOptions::with_secret(id, secret)).await.expect("token").access_token }
    };
    let (admin, user) = (token("admin", "a").await, token("user", "u").await);
    let call = |path: &str, token: Option<&str>| {
        let mut request = Request::builder().uri(format!("http://greeter{path}"));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let service = service.clone();
        let request = request.body(()).expect("request");
        async move {
            let response = service.oneshot(request).await.expect("answered");
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            (header("grpc-status"), header("x-caller"))
        }
    };
    assert_eq!(call("/greeter.Greeter/Hello", None).await, (None, Some("anyone".into())), "a public endpoint");
    assert_eq!(call("/greeter.Greeter/Secret", Some(&admin)).await, (None, Some("admin".into())));
    let unauthenticated = Some("16".to_string());
    let permission_denied = Some("7".to_string());
    assert_eq!(call("/greeter.Greeter/Secret", None).await.0, unauthenticated, "no account: 401");
    assert_eq!(call("/greeter.Greeter/Secret", Some(&user)).await.0, permission_denied, "an account refused: 403");
    assert_eq!(call("/greeter.Greeter/Hello", Some("forged")).await.0, unauthenticated, "a bad token is refused");
    assert_eq!(endpoint("/a.b.Greeter/Hello"), "Greeter.Hello");
    assert_eq!(endpoint("/"), ".");
}
