//! The auth contract as one suite, run against every implementation: `MemoryAuth` in
//! keel-client's tests and, once the cluster serves `keel.v1.Auth`, the gRPC one against a real
//! cluster. It panics on the first broken expectation, saying which.
//!
//! Safe on a shared implementation: it creates accounts and rules named `conformance-<random>-…`
//! and deletes them. It does not wait for tokens to expire (a test with a paused clock does
//! that); it needs no rules but its own, which it gives the highest priority so other rules
//! cannot decide its resources.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{
    Access, Account, Auth, Credentials, GenerateOptions, Resource, Rule, TokenOptions, ACCOUNT_FIELD_BYTES_MAX,
    ACCOUNT_TYPE_DEFAULT, SCOPE_ANY_ACCOUNT, SCOPE_PUBLIC, SECRET_BYTES_MAX, TOKEN_EXPIRY_MAX,
};
use crate::error::Error;

/// Runs every case against `auth`.
pub async fn run(auth: Arc<dyn Auth>) {
    let run = format!("conformance-{:08x}", rand::rng().random::<u32>());
    accounts_are_created_listed_and_deleted(&*auth, &run).await;
    tokens_come_from_secrets_and_refresh_tokens(&*auth, &run).await;
    wrong_credentials_all_look_the_same(&*auth, &run).await;
    a_changed_secret_or_a_deleted_account_ends_its_tokens(&*auth, &run).await;
    rules_decide_by_priority_then_order(&*auth, &run).await;
    invalid_requests_are_rejected(&*auth, &run).await;
}

fn options(scopes: &[&str], secret: Option<&str>) -> GenerateOptions {
    GenerateOptions {
        scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
        secret: secret.map(str::to_string),
        ..GenerateOptions::default()
    }
}

fn unauthenticated(result: Result<impl std::fmt::Debug, Error>, what: &str) -> String {
    match result {
        Err(Error::Unauthenticated(message)) => message,
        other => panic!("{what}: expected Unauthenticated, got {other:?}"),
    }
}

async fn accounts_are_created_listed_and_deleted(auth: &dyn Auth, run: &str) {
    let id = format!("{run}-listed");
    let mut generate = options(&["reader"], None);
    generate.metadata.insert("team".into(), "blue".into());
    let created = auth.generate(&id, generate).await.expect("generate");
    assert_eq!((created.id.as_str(), created.r#type.as_str()), (id.as_str(), ACCOUNT_TYPE_DEFAULT));
    assert_eq!(created.scopes, ["reader"]);
    assert_eq!(created.metadata.get("team").map(String::as_str), Some("blue"));
    let secret = created.secret.clone().expect("a generated secret is returned once");
    assert!(secret.len() >= 16, "a generated secret is long enough to resist guessing: {secret:?}");

    let listed: Vec<Account> = auth.accounts().await.expect("accounts").into_iter().filter(|a| a.id == id).collect();
    assert_eq!(listed.len(), 1, "the account is listed once");
    assert_eq!(listed[0].secret, None, "a listed account carries no secret");
    assert_eq!(Account { secret: None, ..created.clone() }, listed[0]);

    let again = auth.generate(&id, options(&[], Some("another"))).await;
    assert!(matches!(again, Err(Error::InvalidArgument(_))), "an id in use: {again:?}");
    auth.delete_account(&id).await.expect("delete");
    assert!(auth.accounts().await.expect("accounts").iter().all(|a| a.id != id));
    assert_eq!(auth.delete_account(&id).await, Err(Error::NotFound));
}

async fn tokens_come_from_secrets_and_refresh_tokens(auth: &dyn Auth, run: &str) {
    let id = format!("{run}-tokens");
    auth.generate(&id, options(&["writer"], Some("s3cret"))).await.expect("generate");
    let token = auth.token(TokenOptions::with_secret(&id, "s3cret")).await.expect("token from the secret");
    assert!(!token.access_token.is_empty() && token.access_token != token.refresh_token);
    assert!(token.expiry > token.created);
    let inspected = auth.inspect(&token.access_token).await.expect("inspect");
    assert_eq!((inspected.id.as_str(), inspected.scopes.as_slice()), (id.as_str(), &["writer".to_string()][..]));
    assert_eq!(inspected.secret, None, "inspect never reveals the secret");
    unauthenticated(auth.inspect(&token.refresh_token).await, "a refresh token is not an access token");

    // A refresh token gets a new pair, once.
    let refreshed = auth.token(TokenOptions::with_refresh_token(&token.refresh_token)).await.expect("refresh");
    assert_ne!(refreshed.access_token, token.access_token);
    assert_eq!(auth.inspect(&refreshed.access_token).await.expect("inspect refreshed").id, id);
    unauthenticated(auth.token(TokenOptions::with_refresh_token(&token.refresh_token)).await, "a used refresh token");
    auth.delete_account(&id).await.expect("clean up");
}

async fn wrong_credentials_all_look_the_same(auth: &dyn Auth, run: &str) {
    let id = format!("{run}-private");
    auth.generate(&id, options(&[], Some("right"))).await.expect("generate");
    let wrong_secret = unauthenticated(auth.token(TokenOptions::with_secret(&id, "wrong")).await, "a wrong secret");
    let unknown = unauthenticated(
        auth.token(TokenOptions::with_secret(format!("{run}-nobody"), "right")).await,
        "an unknown account",
    );
    assert_eq!(wrong_secret, unknown, "a caller must not learn which accounts exist");
    let forged = unauthenticated(auth.inspect("not-a-token").await, "a forged token");
    assert_eq!(forged, unknown);
    unauthenticated(auth.inspect("").await, "an empty token");
    let long = "x".repeat(100_000);
    unauthenticated(auth.inspect(&long).await, "a huge token");
    auth.delete_account(&id).await.expect("clean up");
}

async fn a_changed_secret_or_a_deleted_account_ends_its_tokens(auth: &dyn Auth, run: &str) {
    let id = format!("{run}-rotating");
    auth.generate(&id, options(&[], Some("old"))).await.expect("generate");
    let before = auth.token(TokenOptions::with_secret(&id, "old")).await.expect("token");
    unauthenticated(auth.change_secret(&id, "not-the-old-one", "new").await, "a change without the old secret");
    auth.change_secret(&id, "old", "new").await.expect("change secret");
    unauthenticated(auth.token(TokenOptions::with_secret(&id, "old")).await, "the old secret");
    unauthenticated(auth.inspect(&before.access_token).await, "an access token from before the change");
    unauthenticated(auth.token(TokenOptions::with_refresh_token(&before.refresh_token)).await, "an old refresh token");
    let after = auth.token(TokenOptions::with_secret(&id, "new")).await.expect("the new secret");

    auth.delete_account(&id).await.expect("delete");
    unauthenticated(auth.inspect(&after.access_token).await, "a deleted account's access token");
    unauthenticated(auth.token(TokenOptions::with_refresh_token(&after.refresh_token)).await, "its refresh token");
    // The same id again is a new account: the old tokens stay dead.
    auth.generate(&id, options(&[], Some("new"))).await.expect("generate again");
    unauthenticated(auth.inspect(&after.access_token).await, "a token of the account that had this id before");
    auth.delete_account(&id).await.expect("clean up");
}

async fn rules_decide_by_priority_then_order(auth: &dyn Auth, run: &str) {
    let service = format!("{run}.greeter");
    let resource =
        |endpoint: &str| Resource { r#type: "service".into(), name: service.clone(), endpoint: endpoint.into() };
    let rule = |name: &str, scope: &str, endpoint: &str, access: Access, priority: i32| Rule {
        id: format!("{run}-{name}"),
        scope: scope.into(),
        resource: resource(endpoint),
        access,
        priority,
    };
    let admin = Account { id: format!("{run}-admin"), scopes: vec!["admin".into()], ..Account::default() };
    let user = Account { id: format!("{run}-user"), scopes: vec!["user".into()], ..Account::default() };
    // Phase 1: no rule names the resource: nobody gets in (unless another rule on a shared
    // implementation says otherwise, which the suite's own top-priority rules override below).
    let top = i32::MAX - 10;
    auth.grant(rule("deny-all", SCOPE_PUBLIC, "*", Access::Denied, top)).await.expect("grant");
    for caller in [None, Some(&admin), Some(&user)] {
        let denied = auth.verify(caller, &resource("Greeter.Hello")).await;
        assert!(matches!(denied, Err(Error::Forbidden(_))), "{caller:?}: {denied:?}");
    }
    // Phase 2: higher priorities decide first; a rule whose scope does not apply is passed over.
    auth.grant(rule("admins", "admin", "*", Access::Granted, top + 2)).await.expect("grant");
    auth.grant(rule("public-hello", SCOPE_PUBLIC, "Greeter.Hello", Access::Granted, top + 1)).await.expect("grant");
    auth.verify(Some(&admin), &resource("Greeter.Secret")).await.expect("admin anywhere");
    auth.verify(None, &resource("Greeter.Hello")).await.expect("anyone may say hello");
    let denied = auth.verify(Some(&user), &resource("Greeter.Secret")).await;
    assert!(matches!(denied, Err(Error::Forbidden(_))), "{denied:?}");
    // Phase 3: at equal priority the earlier rule wins; replacing a rule keeps its place.
    auth.grant(rule("accounts-deny", SCOPE_ANY_ACCOUNT, "/web/*", Access::Denied, top + 3)).await.expect("grant");
    auth.grant(rule("accounts-grant", SCOPE_ANY_ACCOUNT, "/web/*", Access::Granted, top + 3)).await.expect("grant");
    let denied = auth.verify(Some(&user), &resource("/web/page")).await;
    assert!(matches!(denied, Err(Error::Forbidden(_))), "the earlier of two equal rules decides: {denied:?}");
    auth.grant(rule("accounts-deny", SCOPE_ANY_ACCOUNT, "/web/*", Access::Granted, top + 3)).await.expect("replace");
    auth.verify(Some(&user), &resource("/web/page")).await.expect("the replaced rule grants");
    let ours: Vec<String> = auth
        .rules()
        .await
        .expect("rules")
        .into_iter()
        .filter(|r| r.id.starts_with(run))
        .map(|r| r.id.trim_start_matches(run).to_string())
        .collect();
    assert_eq!(ours, ["-deny-all", "-admins", "-public-hello", "-accounts-deny", "-accounts-grant"]);
    // Phase 4: revoking.
    for name in ["deny-all", "admins", "public-hello", "accounts-deny", "accounts-grant"] {
        auth.revoke(&format!("{run}-{name}")).await.expect("revoke");
    }
    assert_eq!(auth.revoke(&format!("{run}-admins")).await, Err(Error::NotFound));
}

async fn invalid_requests_are_rejected(auth: &dyn Auth, run: &str) {
    let invalid = |result: Result<Account, Error>, what: &str| {
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "{what}: {result:?}");
    };
    invalid(auth.generate("", options(&[], None)).await, "an empty id");
    invalid(auth.generate(&"a".repeat(ACCOUNT_FIELD_BYTES_MAX + 1), options(&[], None)).await, "a huge id");
    invalid(auth.generate(&format!("{run}-x"), options(&[], Some(""))).await, "an empty secret");
    let huge_secret = "s".repeat(SECRET_BYTES_MAX + 1);
    invalid(auth.generate(&format!("{run}-x"), options(&[], Some(&huge_secret))).await, "a huge secret");
    invalid(auth.generate(&format!("{run}-x"), options(&["bad\nscope"], None)).await, "a control character");
    let too_long = TokenOptions {
        credentials: Credentials::Secret { id: format!("{run}-x"), secret: "s".into() },
        expiry: TOKEN_EXPIRY_MAX + Duration::from_secs(1),
    };
    assert!(matches!(auth.token(too_long).await, Err(Error::InvalidArgument(_))));
    let bad_rule = Rule {
        id: format!("{run}-bad"),
        scope: SCOPE_PUBLIC.into(),
        resource: Resource { r#type: "service".into(), name: "x".into(), endpoint: "Foo.*".into() },
        access: Access::Granted,
        priority: 0,
    };
    assert!(matches!(auth.grant(bad_rule).await, Err(Error::InvalidArgument(_))), "a wildcard micro does not have");
    assert!(auth.accounts().await.expect("accounts").iter().all(|a| a.id != format!("{run}-x")), "nothing was created");
}
