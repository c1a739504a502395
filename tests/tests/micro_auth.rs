//! micro's Auth on a real cluster (`keel.v1.Auth` through keel-client's `GrpcAuth`): the same
//! conformance suite `MemoryAuth` passes; tokens any member verifies, that outlive a kill -9 of
//! every member and end with their account; and, while etcd auth is on, accounts and rules that
//! only root may change or list, while signing in, Inspect and Verify stay open.

use std::sync::Arc;

use keel_client::auth::{conformance, Auth, GenerateOptions, GrpcAuth, TokenOptions};
use keel_client::Error;
use keel_proto::v1 as pb;
use keel_proto::v1::auth_client::AuthClient;
use keel_proto::v1::config_client::ConfigClient;
use keel_tests::auth::{etcd_token, lock_down, with_header};
use keel_tests::{grpc_channel, keelctl, retry_unavailable, Server, TestCluster};
use tonic::metadata::MetadataValue;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn grpc_auth_passes_the_conformance_suite_on_a_three_member_cluster() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let auth = GrpcAuth::connect(&cluster.endpoints()).await.expect("valid endpoints");
    conformance::run(Arc::new(auth)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_one_member_works_on_every_member_and_after_every_member_is_killed() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let urls = cluster.endpoints();
    let on = |i: usize| {
        let url = urls[i].clone();
        async move { GrpcAuth::connect(&[url]).await.expect("valid endpoint") }
    };
    let first = on(0).await;
    let secret = GenerateOptions { scopes: vec!["billing".into()], ..GenerateOptions::default() };
    let account = first.generate("svc-billing", secret).await.expect("generate");
    let secret = account.secret.expect("a generated secret");
    let token = first.token(TokenOptions::with_secret("svc-billing", &secret)).await.expect("token on member 0");
    for i in 1..3 {
        let inspected = on(i).await.inspect(&token.access_token).await.expect("inspect on another member");
        assert_eq!((inspected.id.as_str(), inspected.scopes.as_slice()), ("svc-billing", &["billing".to_string()][..]));
    }

    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_ready().await;
    let after = on(2).await;
    assert_eq!(after.inspect(&token.access_token).await.expect("the key outlives the members").id, "svc-billing");
    let refreshed = after.token(TokenOptions::with_refresh_token(&token.refresh_token)).await.expect("refresh");
    after.delete_account("svc-billing").await.expect("delete");
    for stale in [&token.access_token, &refreshed.access_token] {
        assert!(matches!(on(1).await.inspect(stale).await, Err(Error::Unauthenticated(_))));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn while_etcd_auth_is_on_accounts_and_rules_are_roots() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    cluster.client().await.user_add("alice", "alicepw", None).await.expect("alice");
    let root_token = lock_down(&cluster, "rootpw").await;
    let alice_token = etcd_token(&url, "alice", "alicepw").await;

    let generate = |token: Option<&str>| {
        let (url, token) = (url.clone(), token.map(str::to_string));
        async move {
            let mut request = tonic::Request::new(pb::GenerateRequest {
                id: "svc".into(),
                secret: "svc-secret".into(),
                ..pb::GenerateRequest::default()
            });
            if let Some(token) = token {
                request.metadata_mut().insert("token", MetadataValue::try_from(token).expect("ascii token"));
            }
            AuthClient::new(grpc_channel(&url).await).generate(request).await
        }
    };
    let anonymous = generate(None).await.expect_err("nobody signed in");
    assert_eq!(anonymous.code(), Code::InvalidArgument, "etcd's answer to no user: {anonymous:?}");
    assert_eq!(anonymous.message(), "etcdserver: user name is empty");
    let alice = generate(Some(&alice_token)).await.expect_err("alice is not root");
    assert_eq!((alice.code(), alice.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
    let created = generate(Some(&root_token)).await.expect("root creates accounts").into_inner();
    assert_eq!(created.account.map(|account| account.secret), Some("svc-secret".to_string()));

    // Signing in, Inspect and Verify need no etcd user: the secret or the token is the proof.
    let auth = GrpcAuth::connect(std::slice::from_ref(&url)).await.expect("valid endpoint");
    let token = auth.token(TokenOptions::with_secret("svc", "svc-secret")).await.expect("sign in");
    assert_eq!(auth.inspect(&token.access_token).await.expect("inspect").id, "svc");
    let listed = auth.accounts().await;
    assert!(
        matches!(&listed, Err(Error::InvalidArgument(message)) if message.contains("user name is empty")),
        "{listed:?}"
    );
    let no_rule = keel_client::auth::Resource { r#type: "service".into(), name: "x".into(), endpoint: "X.Y".into() };
    assert!(matches!(auth.verify(None, &no_rule).await, Err(Error::Forbidden(_))), "default deny");
}

/// `keelctl auth`: an account, its token, a rule, and Verify's answer as an exit code.
#[tokio::test(flavor = "multi_thread")]
async fn keelctl_auth_manages_accounts_tokens_and_rules() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let ok = |args: &[&str]| {
        let out = keelctl(&cluster, args);
        assert_eq!(out.exited, Some(true), "keelctl {args:?}: {out:?}");
        out.stdout
    };
    let created = ok(&["-o", "json", "auth", "generate", "svc-a", "--scope", "billing", "--secret", "pw-a"]);
    assert!(created.contains("\"secret\":\"pw-a\""), "{created}");
    let token: serde_json::Value =
        serde_json::from_str(&ok(&["-o", "json", "auth", "token", "svc-a", "--secret", "pw-a"])).expect("JSON");
    let access = token["access_token"].as_str().expect("an access token").to_string();
    assert!(ok(&["auth", "inspect", &access]).starts_with("svc-a\tuser\tbilling"));
    ok(&["auth", "grant", "billing-store", "--scope", "billing", "--resource", "service:keel.v1.Store:*"]);
    assert!(ok(&["auth", "rules"]).contains("billing-store\tbilling\tservice:keel.v1.Store:*\tgranted\t0"));
    ok(&["auth", "verify", "service:keel.v1.Store:Store.Read", "--token", &access]);
    let denied = keelctl(&cluster, &["auth", "verify", "service:keel.v1.Store:Store.Read"]);
    assert_eq!(denied.exited, Some(false), "nobody signed in is not billing: {denied:?}");
    assert!(denied.stderr.contains("forbidden"), "{denied:?}");
    let wrong = keelctl(&cluster, &["auth", "token", "svc-a", "--secret", "wrong"]);
    assert!(wrong.stderr.contains("invalid credentials or token"), "{wrong:?}");
    let bad = keelctl(&cluster, &["auth", "grant", "x", "--resource", "service:only-two"]);
    assert_eq!(bad.exited, Some(false));
    assert!(bad.stderr.contains("TYPE:NAME:ENDPOINT"), "{bad:?}");
    ok(&["auth", "revoke", "billing-store"]);
    ok(&["auth", "delete-account", "svc-a"]);
    assert!(ok(&["auth", "accounts"]).is_empty());

    // etcd's switch, with etcd's precondition and a hint for it.
    let no_root = keelctl(&cluster, &["auth", "enable"]);
    assert_eq!(no_root.exited, Some(false));
    assert!(no_root.stderr.contains("etcdserver: root user does not exist; create it first"), "{no_root:?}");
    let mut etcd = cluster.client().await;
    etcd.user_add("root", "rootpw", None).await.expect("root");
    etcd.user_grant_role("root", "root").await.expect("root role");
    assert_eq!(ok(&["auth", "enable"]), "enabled auth\n");
    let anonymous = keelctl(&cluster, &["auth", "disable"]);
    assert!(anonymous.stderr.contains("etcdserver: user name is empty"), "{anonymous:?}");
    assert_eq!(ok(&["auth", "disable", "--user", "root:rootpw"]), "disabled auth\n");
}

/// While etcd auth is on, Keel's own services let in the micro accounts the rules allow, each
/// call being `service:keel.v1.<Service>:<Service>.<Method>`; Config's secrets need
/// `Config.Secrets` on top.
#[tokio::test(flavor = "multi_thread")]
async fn micro_accounts_reach_native_services_as_the_rules_say() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let root = lock_down(&cluster, "rootpw").await;
    let channel = grpc_channel(&url).await;
    let mut admin = AuthClient::new(channel.clone());
    let generate =
        pb::GenerateRequest { id: "svc".into(), scopes: vec!["cfg".into()], secret: "pw".into(), ..Default::default() };
    admin.generate(with_header(generate, "token", &root)).await.expect("root creates the account");
    let grant = |id: &str, endpoint: &str| pb::CreateRuleRequest {
        rule: Some(pb::Rule {
            id: id.into(),
            scope: "cfg".into(),
            resource: Some(pb::Resource {
                r#type: "service".into(),
                name: "keel.v1.Config".into(),
                endpoint: endpoint.into(),
            }),
            access: pb::rule::Access::Granted as i32,
            priority: 0,
        }),
    };
    admin.create_rule(with_header(grant("cfg-get", "Config.Get"), "token", &root)).await.expect("rule");
    let mut config = ConfigClient::new(channel.clone());
    for (path, value, secret) in [("app.db.host", "\"db1\"", false), ("app.db.password", "\"hunter2\"", true)] {
        let set = pb::SetRequest { namespace: String::new(), path: path.into(), value: value.into(), secret };
        // A secret waits for the cluster's key, which the leader creates just after it starts:
        // until then the member answers UNAVAILABLE with "retry", as a client must.
        retry_unavailable(|| {
            let mut config = config.clone();
            let request = with_header(set.clone(), "token", &root);
            async move { config.set(request).await }
        })
        .await
        .expect("root sets the configuration");
    }

    let auth = GrpcAuth::connect(std::slice::from_ref(&url)).await.expect("valid endpoint");
    let token = auth.token(TokenOptions::with_secret("svc", "pw")).await.expect("sign in").access_token;
    let bearer = format!("Bearer {token}");
    let get = |secrets: bool| pb::GetRequest { path: "app.db".into(), secrets, ..Default::default() };
    let read = config.get(with_header(get(false), "authorization", &bearer)).await.expect("a granted endpoint");
    assert_eq!(read.into_inner().value, r#"{"host":"db1","password":"[secret]"}"#);
    let refused = config.get(with_header(get(true), "authorization", &bearer)).await.expect_err("secrets");
    assert_eq!((refused.code(), refused.message()), (Code::PermissionDenied, "access to the resource is forbidden"));
    let set = pb::SetRequest { path: "app.x".into(), value: "1".into(), ..Default::default() };
    let refused = config.set(with_header(set, "authorization", &bearer)).await.expect_err("no rule for Set");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let forged = config.get(with_header(get(false), "authorization", "Bearer forged.token.here")).await;
    let forged = forged.expect_err("a forged token");
    assert_eq!((forged.code(), forged.message()), (Code::Unauthenticated, "invalid credentials or token"));

    admin.create_rule(with_header(grant("cfg-secrets", "Config.Secrets"), "token", &root)).await.expect("rule");
    let read = config.get(with_header(get(true), "authorization", &bearer)).await.expect("secrets now granted");
    assert_eq!(read.into_inner().value, r#"{"host":"db1","password":"hunter2"}"#);
    let delete = pb::DeleteAccountRequest { id: "svc".into() };
    admin.delete_account(with_header(delete, "token", &root)).await.expect("delete the account");
    let ended = config.get(with_header(get(false), "authorization", &bearer)).await.expect_err("a deleted account");
    assert_eq!(ended.code(), Code::Unauthenticated);
}
