//! `/health` and `/metrics` over plain HTTP on the client port, as etcd serves them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use keel_tests::{wait_for_some, Server, TestCluster};

/// A minimal HTTP/1.1 GET: (status code, body).
fn http_get(client_url: &str, path: &str) -> std::io::Result<(u16, String)> {
    let address = client_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
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
