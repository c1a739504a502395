//! A watcher that keeps up gets one response per revision, as etcd 3.4 sends it: go-micro's
//! etcd watcher reads only the first event of each response, so a response that carried
//! several revisions cost it registrations and deregistrations (issue 13). Checked on etcd and
//! Keel alike, with concurrent writers, a txn of several puts (one revision, one response) and
//! two leases expiring together.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::{Client, PutOptions, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream};
use keel_tests::{Server, TestCluster, READY_TIMEOUT};

const WRITERS: usize = 30;
const PREFIX: &str = "/micro/registry/synced/";

#[tokio::test(flavor = "multi_thread")]
async fn keel_sends_a_synced_watcher_one_revision_per_response() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    check(&cluster).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_sends_a_synced_watcher_one_revision_per_response() {
    // The reference: if this fails, the expectation is wrong, not Keel.
    let cluster = TestCluster::start(Server::Etcd, 3).await;
    check(&cluster).await;
}

async fn check(cluster: &TestCluster) {
    let leader = cluster.leader().await;
    // One watcher on the leader, one on a follower: both serve from their own applied state.
    let mut watchers = Vec::new();
    for member in [leader, (leader + 1) % 3] {
        let mut client = cluster.member_client(member).await;
        let stream = client.watch(PREFIX, Some(WatchOptions::new().with_prefix())).await.expect("watch");
        watchers.push(stream);
    }

    // Phase 1: concurrent single puts, then one txn that puts three keys in one revision.
    let writers = (0..WRITERS).map(|i| {
        let endpoints = cluster.endpoints();
        tokio::spawn(async move {
            let mut client =
                Client::connect(&endpoints[i % endpoints.len()..i % endpoints.len() + 1], None).await.expect("connect");
            client.put(format!("{PREFIX}node-{i}"), "{}", None).await.expect("put");
        })
    });
    futures::future::join_all(writers).await.into_iter().for_each(|joined| joined.expect("writer"));
    let mut client = cluster.client().await;
    let txn_puts = ["txn-a", "txn-b", "txn-c"].map(|key| TxnOp::put(format!("{PREFIX}{key}"), "{}", None));
    client.txn(Txn::new().and_then(txn_puts)).await.expect("txn");

    // Phase 2: two keys on two leases that expire together, like two nodes of one service
    // killed at once.
    let first = client.lease_grant(2, None).await.expect("grant").id();
    let second = client.lease_grant(2, None).await.expect("grant").id();
    client.put(format!("{PREFIX}leased-a"), "{}", Some(PutOptions::new().with_lease(first))).await.expect("put");
    client.put(format!("{PREFIX}leased-b"), "{}", Some(PutOptions::new().with_lease(second))).await.expect("put");

    let events_expected = WRITERS + 3 + 2 + 2;
    for (watcher, stream) in watchers.iter_mut().enumerate() {
        let responses = match collect(stream, events_expected).await {
            Ok(responses) => responses,
            Err(seen) => {
                // What is missing, and whether the leases still live: enough to tell a slow
                // watcher from a lease that never expired.
                let mut ttls = Vec::new();
                for lease in [first, second] {
                    ttls.push(client.lease_time_to_live(lease, None).await.map(|l| l.ttl()));
                }
                panic!(
                    "{:?}: watcher {watcher} got {} of {events_expected} events in time: {seen:?}; \
                     the leases' TTL left now: {ttls:?}",
                    cluster.server,
                    seen.len()
                );
            }
        };
        let mut revisions = BTreeSet::new();
        for response in &responses {
            let header = response.header().expect("header").revision();
            let in_response: BTreeSet<i64> =
                response.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()).collect();
            // A delete event's kv carries the deletion's revision as its mod_revision.
            assert_eq!(
                in_response.len(),
                1,
                "{:?}: a response with events of several revisions: {:?}",
                cluster.server,
                response.events()
            );
            let revision = *in_response.iter().next().expect("an event");
            assert_eq!(header, revision, "{:?}: the header carries the events' revision", cluster.server);
            assert!(revisions.insert(revision), "{:?}: revision {revision} sent twice", cluster.server);
        }
        let txn_response = responses.iter().find(|r| r.events().len() == 3);
        assert!(txn_response.is_some(), "{:?}: the txn's three puts come in one response", cluster.server);
        let lease_deletes = responses
            .iter()
            .filter(|r| r.events().iter().any(|e| e.event_type() == etcd_client::EventType::Delete))
            .count();
        assert_eq!(lease_deletes, 2, "{:?}: each expired lease's delete in its own response", cluster.server);
    }
}

/// Responses until `events` events arrived, each within the deadline; else the events seen
/// (type and key).
async fn collect(stream: &mut WatchStream, events: usize) -> Result<Vec<WatchResponse>, Vec<String>> {
    let mut responses = Vec::new();
    let mut seen = Vec::new();
    // Leases expire within a few seconds of their TTL; everything else is immediate.
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT + Duration::from_secs(10);
    while seen.len() < events {
        let Ok(message) = tokio::time::timeout_at(deadline, stream.message()).await else {
            return Err(seen);
        };
        let response = message.expect("watch stream").expect("watch stream open");
        for event in response.events() {
            let key = event.kv().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).unwrap_or_default();
            seen.push(format!("{:?} {key}", event.event_type()));
        }
        if !response.events().is_empty() {
            responses.push(response);
        }
    }
    Ok(responses)
}
