//! MemoryAuth against the shared auth contract, plus what only the in-memory implementation can
//! show cheaply: an access token dies exactly at its expiry under a paused clock, and its
//! refresh token still works.

use std::sync::Arc;
use std::time::Duration;

use keel_client::auth::{conformance, Auth, GenerateOptions, MemoryAuth, TokenOptions};
use keel_client::Error;

#[tokio::test(start_paused = true)]
async fn memory_auth_passes_the_conformance_suite() {
    conformance::run(Arc::new(MemoryAuth::new())).await;
}

#[tokio::test(start_paused = true)]
async fn an_access_token_works_until_its_expiry_and_its_refresh_token_after() {
    let auth = MemoryAuth::new();
    let options = GenerateOptions { secret: Some("pw".into()), ..GenerateOptions::default() };
    auth.generate("svc", options).await.expect("generate");
    let mut request = TokenOptions::with_secret("svc", "pw");
    request.expiry = Duration::from_secs(30);
    let token = auth.token(request).await.expect("token");

    tokio::time::advance(Duration::from_millis(29_999)).await;
    assert_eq!(auth.inspect(&token.access_token).await.expect("alive before expiry").id, "svc");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(auth.inspect(&token.access_token).await, Err(Error::Unauthenticated(_))));
    let next = auth.token(TokenOptions::with_refresh_token(&token.refresh_token)).await.expect("refresh");
    assert_eq!(auth.inspect(&next.access_token).await.expect("the refreshed token").id, "svc");
}
