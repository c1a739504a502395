//! `/health` and `/metrics` over plain HTTP on the client port, as etcd serves them, and
//! Keel's own `/debug/raft`.

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
    for line in [
        "etcd_server_has_leader 1",
        "# TYPE etcd_debugging_mvcc_current_revision gauge",
        // Its value is whatever is in flight at that instant (a member's own announcement).
        "# TYPE etcd_server_proposals_pending gauge",
        "# TYPE etcd_server_proposals_failed_total counter",
        "etcd_server_quota_backend_bytes 2147483648",
        "# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // One election, or a few when votes split at start: at least the one that made the leader.
    let changes = metrics.lines().find_map(|line| line.strip_prefix("etcd_server_leader_changes_seen_total "));
    assert!(changes.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 1), "{metrics}");

    // Phase 3: /debug/raft on the leader accounts for the writes it proposed, stage by stage.
    let leader = keel.leader().await;
    let mut client = keel.member_client(leader).await;
    for i in 0..20 {
        client.put(format!("debug-raft/{i}"), "v", None).await.expect("put");
    }
    let (status, stats) = http_get(&keel.members[leader].client_url, "/debug/raft").expect("/debug/raft");
    assert_eq!(status, 200);
    assert!(stats.contains("Entries per storage append"), "batch sizes missing from:\n{stats}");
    let applied_samples = stats
        .lines()
        .find(|line| line.contains("proposed→applied"))
        .and_then(|line| line.split('│').nth(2))
        .and_then(|count| count.trim().replace(',', "").parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no proposed→applied row with a sample count in:\n{stats}"));
    assert!(applied_samples >= 20, "{applied_samples} entries accounted for after 20 writes:\n{stats}");

    // Phase 4: without a quorum the survivor reports itself unhealthy.
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
