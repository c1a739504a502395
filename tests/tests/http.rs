//! `/health` and `/metrics` over plain HTTP on the client port, as etcd serves them.

use std::time::Duration;

use keel_tests::{http_get, wait_for_some, Server, TestCluster};

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_answer_like_etcd() {
    let (mut keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));

    // Phase 1: a healthy member says so in etcd's words.
    let etcd_health = http_get(&etcd.members[0].client_url, "/health").expect("etcd /health");
    for member in &keel.members {
        let health = http_get(&member.client_url, "/health").expect("keel /health");
        assert_eq!(health, etcd_health, "{}", member.name);
    }

    // Phase 2: metrics carry etcd's names.
    let (status, metrics) = http_get(&keel.members[0].client_url, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    for line in ["etcd_server_has_leader 1", "# TYPE etcd_debugging_mvcc_current_revision gauge"] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    // Phase 3: without a quorum the survivor reports itself unhealthy.
    keel.kill9(1);
    keel.kill9(2);
    let url = keel.members[0].client_url.clone();
    let unhealthy = wait_for_some(Duration::from_secs(30), "/health to report the lost quorum", || {
        let url = url.clone();
        async move {
            let answer = tokio::task::spawn_blocking(move || http_get(&url, "/health")).await.ok()?.ok()?;
            (answer.0 == 503).then_some(answer)
        }
    })
    .await
    .expect("unhealthy without quorum");
    assert_eq!(unhealthy.1, r#"{"health":"false"}"#);
}
