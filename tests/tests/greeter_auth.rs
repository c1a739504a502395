//! keel-client's greeter example with auth on: the service signs in to register itself and
//! answers only the callers a rule lets reach `service:greeter:Greeter.Hello`; callers sign in
//! to find it through the registry (Keel's own service, under the same rules).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use keel_proto::v1 as pb;
use keel_proto::v1::auth_client::AuthClient;
use keel_tests::auth::{lock_down, with_header};
use keel_tests::{grpc_channel, keel_binary, Background, Server, TestCluster};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn the_greeter_answers_only_the_callers_its_rule_lets_in() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let url = cluster.members[0].client_url.clone();
    let root = lock_down(&cluster, "rootpw").await;
    let mut admin = AuthClient::new(grpc_channel(&url).await);
    for (id, scopes) in [("greeter-1", &["services"][..]), ("ada", &["services", "greeters"]), ("bob", &["services"])] {
        let account = pb::GenerateRequest {
            id: id.into(),
            scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
            secret: format!("{id}-secret"),
            ..Default::default()
        };
        admin.generate(with_header(account, "token", &root)).await.expect("root creates the accounts");
    }
    for (id, scope, name, endpoint) in [
        ("services-use-the-registry", "services", "keel.v1.Registry", "*"),
        ("greeters-say-hello", "greeters", "greeter", "Greeter.Hello"),
    ] {
        let resource = pb::Resource { r#type: "service".into(), name: name.into(), endpoint: endpoint.into() };
        let rule = pb::Rule { id: id.into(), scope: scope.into(), resource: Some(resource), ..Default::default() };
        admin.create_rule(with_header(pb::CreateRuleRequest { rule: Some(rule) }, "token", &root)).await.expect("rule");
    }

    let greeter = Background::spawn(example("greeter_service", &url, Some("greeter-1")));
    greeter
        .wait_for_stdout(WAIT, "the greeter to register", |out| out.contains("greeter listening"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let ada = run_caller(&url, Some("ada"));
    assert!(ada.contains("says: Hello, Ada!"), "ada's rule lets her in: {ada}");
    let bob = run_caller(&url, Some("bob"));
    assert!(bob.contains("says: Error: forbidden: access to the resource is forbidden"), "bob has no rule: {bob}");
    let anonymous = run_caller(&url, None);
    assert!(anonymous.contains("user name is empty"), "nobody signed in cannot use the registry: {anonymous}");
}

/// An example binary built next to `keel` (`cargo build --workspace --all-targets`), run as
/// `account` (secret `<account>-secret`) against `url`.
fn example(name: &str, url: &str, account: Option<&str>) -> Command {
    let binary: PathBuf = keel_binary().with_file_name("examples").join(name);
    assert!(binary.is_file(), "{} is missing: build with --all-targets", binary.display());
    let mut command = Command::new(binary);
    command.env("KEEL_ENDPOINTS", url).env_remove("KEEL_AUTH_ID").env_remove("KEEL_AUTH_SECRET");
    if let Some(account) = account {
        command.env("KEEL_AUTH_ID", account).env("KEEL_AUTH_SECRET", format!("{account}-secret"));
    }
    command
}

/// The caller's stdout and stderr, after it ends.
fn run_caller(url: &str, account: Option<&str>) -> String {
    let mut command = example("greeter_caller", url, account);
    let output = command.arg("Ada").output().expect("run greeter_caller");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
