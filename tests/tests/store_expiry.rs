//! Store expiry over a real cluster: a TTL record is readable until its expiry and never
//! after it, is never removed before it, and an overwrite replaces its TTL.

use std::time::Duration;

use etcd_client::GetOptions;
use keel_proto::v1::{ListRequest, ReadRequest};
use keel_tests::{wait_for, Server, TestCluster};

#[path = "support/store.rs"]
mod support;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_ttl_record_is_readable_until_it_expires_and_others_are_untouched() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = store(&cluster, 1).await;
    write(&client, write_request("", "", "forever", b"stays")).await;
    let mut long = write_request("", "", "long", b"stays a minute");
    long.ttl_seconds = Some(60);
    write(&client, long).await;

    // Phase 1: a TTL-4 s record is readable at 2 s, with 1..=4 s left.
    let mut short = write_request("", "", "short", b"goes");
    short.ttl_seconds = Some(4);
    let written_from = unix_now();
    write(&client, short).await;
    let written_by = unix_now();
    sleep_until_unix(written_from + 2.0).await;
    let record = read_one(&client, "short").await.expect("the TTL record is readable at 2 s");
    assert_eq!(record.value, b"goes");
    assert!((1..=4).contains(&record.ttl_seconds), "remaining ttl at 2 s: {record:?}");
    let expiry = record.expiry as f64;
    assert!(expiry <= written_by.ceil() + 4.0, "expiry {expiry} for a TTL of 4 s written by {written_by:.3}");

    // Phase 2: by 5 s (and past its expiry) it is gone from every member.
    sleep_until_unix((written_from + 5.0).max(expiry + 0.05)).await;
    for i in 0..3 {
        let client = store(&cluster, i).await;
        let found = read_one(&client, "short").await;
        assert!(
            found.is_none(),
            "member {i} still reads the record {:.2} s after it was written: {found:?}",
            unix_now() - written_from
        );
    }

    // Phase 3: the other records are untouched.
    let forever = read_one(&client, "forever").await.expect("the record without TTL is still there");
    assert_eq!((forever.value.as_slice(), forever.ttl_seconds, forever.expiry), (&b"stays"[..], 0, 0));
    let long = read_one(&client, "long").await.expect("the TTL-60 record is still there");
    assert_eq!(long.value, b"stays a minute");
    assert!((50..=60).contains(&long.ttl_seconds), "{long:?}");
    let all = read_keys(&client, ReadRequest { prefix: true, ..Default::default() }).await;
    assert_eq!(all, ["forever", "long"]);
    let listed = list_keys(&client, ListRequest::default()).await;
    assert_eq!(listed, ["forever", "long"], "List streams no expired key");

    // Checked last, so the phases above run either way: a record lives at least its TTL, so
    // whole seconds may round its expiry up, never down.
    assert!(
        expiry >= written_from + 4.0,
        "expiry {expiry} for a TTL of 4 s written between {written_from:.3} and {written_by:.3}: it lived only {:.3} s",
        expiry - written_by
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overwriting_a_record_replaces_its_ttl() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = store(&cluster, 0).await;
    let mut etcd = cluster.client().await;
    let lease_of = |key: &str| {
        let (mut etcd, key) = (etcd.clone(), format!("{PREFIX}micro/micro/{key}"));
        async move { etcd.get(key, None).await.expect("etcd get").kvs().first().map(|kv| kv.lease()) }
    };

    // Two records on a short TTL; one is then rewritten without a TTL, the other with a long one.
    let mut keys_and_leases = Vec::new();
    for key in ["to-forever", "to-longer"] {
        let mut short = write_request("", "", key, b"short-lived");
        short.ttl_seconds = Some(2);
        write(&client, short).await;
        keys_and_leases.push(lease_of(key).await.expect("written"));
    }
    write(&client, write_request("", "", "to-forever", b"kept")).await;
    let mut longer = write_request("", "", "to-longer", b"kept a minute");
    longer.ttl_seconds = Some(60);
    write(&client, longer).await;
    // A record without a TTL gets one.
    write(&client, write_request("", "", "to-short", b"was forever")).await;
    let mut short = write_request("", "", "to-short", b"now short");
    short.ttl_seconds = Some(2);
    write(&client, short).await;

    let forever = read_one(&client, "to-forever").await.expect("to-forever");
    assert_eq!((forever.value.as_slice(), forever.ttl_seconds, forever.expiry), (&b"kept"[..], 0, 0));
    assert_eq!(lease_of("to-forever").await, Some(0), "a record without TTL is on no lease");

    // Once the first leases are over, the rewritten records are still there.
    for lease in keys_and_leases {
        wait_for(Duration::from_secs(LEASE_SHARING_SECS_MAX as u64 + 5), "the short TTL's lease to end", || {
            let mut etcd = etcd.clone();
            async move { etcd.lease_time_to_live(lease, None).await.is_ok_and(|r| r.ttl() <= 0) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    }
    let forever = read_one(&client, "to-forever").await.expect("the record rewritten without a TTL is kept");
    assert_eq!(forever.value, b"kept");
    let longer = read_one(&client, "to-longer").await.expect("the record rewritten with a longer TTL is kept");
    assert_eq!(longer.value, b"kept a minute");
    assert!((40..=60).contains(&longer.ttl_seconds), "{longer:?}");
    assert!(read_one(&client, "to-short").await.is_none(), "the record rewritten with a 2 s TTL expired");
    let raw = etcd.get(format!("{PREFIX}micro/micro/"), Some(GetOptions::new().with_prefix().with_keys_only()));
    let raw = raw.await.expect("etcd get");
    let keys: Vec<&str> = raw.kvs().iter().map(|kv| kv.key_str().unwrap_or_default()).collect();
    assert!(keys.contains(&"/micro/store/micro/micro/to-forever"), "{keys:?}");
}

/// One read of the expiring record during the poll.
#[derive(Debug)]
struct Probe {
    member: usize,
    sent_at: f64,
    answered_at: f64,
    found: bool,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_is_never_readable_after_its_expiry_nor_removed_before_it() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let clients = [store(&cluster, 0).await, store(&cluster, 1).await, store(&cluster, 2).await];
    let mut etcd = cluster.client().await;
    let key = "expiring";
    let raw_key = format!("{PREFIX}micro/micro/{key}");

    // A whole-second expiry 3 s ahead.
    let expiry = unix_now().ceil() as i64 + 3;
    let mut request = write_request("", "", key, b"until then");
    request.expiry = Some(expiry);
    write(&clients[0], request).await;
    let deadline = expiry as f64;
    let record = read_one(&clients[1], key).await.expect("readable before its expiry");
    assert_eq!(record.expiry, expiry, "Read reports the expiry written: {record:?}");

    // Reads in a tight loop, members in turn, until 1.5 s past the expiry: a read sent after
    // the expiry must miss, a read answered before it must hit. The raw etcd key, too, must
    // be there until the expiry.
    let mut probes = Vec::new();
    let mut raw_early_misses = Vec::new();
    let mut n = 0usize;
    while unix_now() < deadline + 1.5 {
        let member = n % 3;
        let sent_at = unix_now();
        let found = read_one(&clients[member], key).await.is_some();
        probes.push(Probe { member, sent_at, answered_at: unix_now(), found });
        if n.is_multiple_of(10) {
            let raw = etcd.get(raw_key.as_str(), None).await.expect("etcd get");
            let answered_at = unix_now();
            if raw.kvs().is_empty() && answered_at < deadline {
                raw_early_misses.push(answered_at);
            }
        }
        n += 1;
    }
    let late: Vec<&Probe> = probes.iter().filter(|p| p.found && p.sent_at >= deadline).collect();
    assert!(late.is_empty(), "read after its expiry {expiry}: {late:?}");
    let early: Vec<&Probe> = probes.iter().filter(|p| !p.found && p.answered_at < deadline).collect();
    assert!(early.is_empty(), "missing before its expiry {expiry}: {early:?}");
    assert!(raw_early_misses.is_empty(), "{raw_key} deleted before the expiry {expiry}: at {raw_early_misses:?}");
    let hits_near = probes.iter().filter(|p| p.found && p.answered_at > deadline - 0.5).count();
    let misses_near = probes.iter().filter(|p| !p.found && p.sent_at < deadline + 0.5).count();
    let per_member = [0, 1, 2].map(|m| probes.iter().filter(|p| p.member == m).count());
    eprintln!(
        "reads around the expiry per member {per_member:?}; {hits_near} hits in its last 0.5 s, {misses_near} misses in the 0.5 s after"
    );

    // The etcd key goes too, when its lease (shared with records expiring soon after) expires.
    let lease_end = Duration::from_secs(LEASE_SHARING_SECS_MAX as u64 + 3);
    wait_for(lease_end, "the etcd key to be deleted", || {
        let (mut etcd, raw_key) = (etcd.clone(), raw_key.clone());
        async move { etcd.get(raw_key, None).await.is_ok_and(|r| r.kvs().is_empty()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e} ({:.1} s after the expiry)\n{}", unix_now() - deadline, cluster.all_logs()));
}
