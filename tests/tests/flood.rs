//! A flood from one client degrades that client, not the cluster: its connection may have only
//! `--max-concurrent-streams` calls open on the member, the rest wait on the client's own
//! connection, and another client's writes and reads keep being answered meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use keel_tests::{http_get, Server, TestCluster, CALL_TIMEOUT};

const STREAMS_PER_CONNECTION: usize = 8;
const FLOODING_TASKS: usize = 200;
const POLITE_CALLS: usize = 20;

#[tokio::test(flavor = "multi_thread")]
async fn one_clients_flood_waits_on_its_own_connection_while_others_are_served() {
    let streams = STREAMS_PER_CONNECTION.to_string();
    let cluster = TestCluster::start_with(Server::Keel, 1, &["--max-concurrent-streams", &streams]).await;
    let url = cluster.members[0].client_url.clone();

    // The flood: many tasks, one connection, 16 KiB puts as fast as the member takes them.
    let flooder = cluster.member_client(0).await;
    // Until the member's HTTP/2 SETTINGS reach the client, the client does not know the cap and
    // may open more streams at once, which the member refuses (REFUSED_STREAM, as the protocol
    // says). A client that has made one call knows it; the flood starts from there.
    flooder.clone().put("flood/ready", "", None).await.expect("a first put on the flooding connection");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOODING_TASKS)
        .map(|task| {
            let (mut client, stop, answered) = (flooder.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let value = vec![b'f'; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match client.put(format!("flood/{task}"), value.clone(), None).await {
                        Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                        Err(e) => panic!("a flooding put failed instead of waiting its turn: {e}"),
                    };
                }
            })
        })
        .collect();

    // Meanwhile another client, on its own connection: every call answered in time, and the
    // member never has more of the flood's calls open than the cap.
    let mut polite = cluster.member_client(0).await;
    let mut most_in_flight = 0;
    for i in 0..POLITE_CALLS {
        let key = format!("polite/{i}");
        let put = tokio::time::timeout(CALL_TIMEOUT, polite.put(key.as_str(), "v", None)).await;
        put.expect("a polite put answered in time").expect("a polite put");
        let got = tokio::time::timeout(CALL_TIMEOUT, polite.get(key.as_str(), None)).await;
        assert_eq!(got.expect("a polite get answered in time").expect("a polite get").kvs().len(), 1);
        most_in_flight = most_in_flight.max(puts_in_flight(&url));
    }
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        tokio::time::timeout(CALL_TIMEOUT, task).await.expect("the flood winds down").expect("no flooding put failed");
    }
    assert!(answered.load(Ordering::Relaxed) > 0, "the flooder is served too, at its connection's pace");
    assert!(
        most_in_flight <= STREAMS_PER_CONNECTION,
        "the member had {most_in_flight} puts open, past the {STREAMS_PER_CONNECTION} one connection may have"
    );
    assert!(most_in_flight >= 2, "the flood was on while the polite client was served ({most_in_flight})");
}

/// Writes the member has proposed and not answered (`etcd_server_proposals_pending`): with one
/// member, every put in flight.
fn puts_in_flight(client_url: &str) -> usize {
    let (status, scrape) = http_get(client_url, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let gauge = scrape.lines().find_map(|line| line.strip_prefix("etcd_server_proposals_pending "));
    gauge.and_then(|value| value.trim().parse::<f64>().ok()).expect("etcd_server_proposals_pending") as usize
}
