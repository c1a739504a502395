//! `/health` and `/metrics` over plain HTTP on the client port, as etcd serves them (every
//! metric etcd's alerting rules and Grafana dashboard read included), and Keel's own
//! `/debug/raft`.

use std::time::Duration;

use keel_tests::{http_get, wait_for_some, Server, TestCluster};

/// Every metric etcd 3.4's alerting rules (`etcd3_alert.rules.yml`, the etcd mixin) and its
/// Grafana dashboard (`grafana.json`) read, by the name a scrape shows (a histogram's
/// `_bucket`). Labelled counters appear once something is counted under a label, as in Go.
const OPERATOR_METRICS: [&str; 22] = [
    // Alerting rules.
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_failed_total",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_peer_round_trip_time_seconds_bucket",
    "etcd_disk_wal_fsync_duration_seconds_bucket",
    "etcd_disk_backend_commit_duration_seconds_bucket",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_server_quota_backend_bytes",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    // The dashboard, besides those.
    "grpc_server_started_total",
    "etcd_debugging_mvcc_db_total_size_in_bytes",
    "process_resident_memory_bytes",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_bytes_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
];

/// Whether a scrape has samples of `name`.
fn has_metric(scrape: &str, name: &str) -> bool {
    scrape.lines().any(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_etcds_alerts_and_dashboard_read_is_exported_as_etcd_exports_it() {
    let extensive = ["--metrics", "extensive"];
    let (mut keel, mut etcd) = tokio::join!(
        TestCluster::start_with(Server::Keel, 3, &extensive),
        TestCluster::start_with(Server::Etcd, 3, &extensive)
    );
    for cluster in [&mut keel, &mut etcd] {
        let leader = cluster.leader().await;
        let mut client = cluster.member_client(leader).await;
        // Traffic of every kind the rules look at: writes, a watch stream, a lease stream and
        // a failed call.
        let mut events = client.watch("metrics/", None).await.expect("watch");
        for i in 0..10 {
            client.put(format!("metrics/{i}"), "v", None).await.expect("put");
        }
        events.message().await.expect("a watch response").expect("not ended");
        let lease = client.lease_grant(30, None).await.expect("lease").id();
        let (mut keeper, mut keep_alives) = client.lease_keep_alive(lease).await.expect("keep-alive");
        keeper.keep_alive().await.expect("keep alive");
        keep_alives.message().await.expect("a keep-alive response").expect("not ended");
        let future = client.status().await.expect("status").header().expect("header").revision() + 1000;
        client.compact(future, None).await.expect_err("a compaction past the current revision fails");
        // A follower's machine dies: the leader counts what it cannot send.
        let follower = (0..3).find(|i| *i != leader).expect("a follower");
        cluster.kill9(follower);
        let url = cluster.members[leader].client_url.clone();
        let scraped = wait_for_some(Duration::from_secs(30), "every operator metric", || {
            let url = url.clone();
            async move {
                let (_, scrape) = tokio::task::spawn_blocking(move || http_get(&url, "/metrics")).await.ok()?.ok()?;
                OPERATOR_METRICS.iter().all(|name| has_metric(&scrape, name)).then_some(scrape)
            }
        })
        .await;
        let scrape = scraped.unwrap_or_else(|e| {
            let (_, scrape) = http_get(&url, "/metrics").expect("metrics");
            let missing: Vec<&&str> = OPERATOR_METRICS.iter().filter(|name| !has_metric(&scrape, name)).collect();
            panic!("{e}: {:?} misses {missing:?}", cluster.server)
        });
        // Calls are labelled as go-grpc-prometheus labels them.
        for line in [
            r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 10"#,
            r#"grpc_server_started_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 1"#,
            r#"grpc_server_started_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 1"#,
            r#"grpc_server_handled_total{grpc_code="OutOfRange",grpc_method="Compact",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
        ] {
            assert!(scrape.contains(line), "{:?}: {line} missing from:\n{scrape}", cluster.server);
        }
    }
}

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
