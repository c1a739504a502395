//! etcdctl 3.4 against Keel prints what it prints against etcd 3.4: the same script runs on a
//! fresh 3-member cluster of each, and the outputs must match once the things that are
//! legitimately different (member and cluster IDs, ports, timings, terms) are normalised.

use keel_tests::transcript::{assert_same_transcripts, step, Step};
use keel_tests::{etcdctl, Server, TestCluster};

const TXN_SUCCEEDS: &str = "value(\"zoo\") = \"z\"\nmod(\"zoo\") > \"0\"\nversion(\"zoo\") = \"1\"\ncreate(\"zoo\") < \"1000\"\n\nput txn-key yes\nget zoo\n\nput txn-key no\n\n";
const TXN_FAILS: &str = "value(\"zoo\") != \"z\"\n\nput txn-key yes\n\nput txn-key no\ndel foo2\n\n";

const SCRIPT: &[Step] = &[
    step(&["put", "foo", "bar"]),
    step(&["put", "foo", "baz", "--prev-kv"]),
    step(&["put", "foo1", "v1"]),
    step(&["put", "foo2", "v2"]),
    step(&["put", "zoo", "z"]),
    step(&["get", "foo"]),
    step(&["get", "foo", "--prefix"]),
    step(&["get", "foo1", "--from-key"]),
    step(&["get", "foo", "--rev=2"]),
    step(&["get", "foo", "--prefix", "--limit=2"]),
    step(&["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]),
    step(&["get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND"]),
    step(&["get", "foo", "--prefix", "--keys-only"]),
    step(&["get", "foo", "--prefix", "--print-value-only"]),
    step(&["get", "foo", "--consistency=s"]),
    step(&["get", "foo", "--prefix", "-w", "json"]),
    step(&["get", "nothing-here"]),
    step(&["get", "nothing-here", "-w", "json"]),
    step(&["put", "foo", "again", "-w", "json"]),
    Step { args: &["txn"], stdin: TXN_SUCCEEDS },
    Step { args: &["txn"], stdin: TXN_FAILS },
    Step { args: &["txn", "-w", "json"], stdin: TXN_SUCCEEDS },
    step(&["get", "txn-key"]),
    step(&["del", "foo1", "--prev-kv"]),
    step(&["del", "nothing-here"]),
    step(&["del", "foo", "--prefix"]),
    step(&["get", "", "--from-key"]),
    step(&["compaction", "5"]),
    step(&["get", "foo", "--rev=3"]),
    step(&["get", "zoo", "--rev=5"]),
    step(&["get", "foo", "--rev=1000"]),
    step(&["compaction", "4"]),
    step(&["compaction", "1000"]),
    step(&["del", "zoo", "-w", "json"]),
    step(&["put", "a1", "x"]),
    step(&["put", "a2", "y"]),
    step(&["put", "a1", "z"]),
    step(&["put", "a2", "--ignore-value"]),
    step(&["put", "missing", "--ignore-value"]),
    step(&["get", "a", "--prefix", "--sort-by=CREATE", "--order=DESCEND"]),
    step(&["get", "a", "--prefix", "--sort-by=VERSION", "--order=ASCEND"]),
    step(&["get", "a", "--prefix", "--count-only", "-w", "json"]),
    step(&["get", "a", "--prefix", "-w", "fields"]),
    step(&["get", "a", "--prefix", "--limit=1", "-w", "json"]),
    step(&["get", "a1", "a3", "--rev=0"]),
    step(&["del", "a", "--from-key", "--prev-kv"]),
    step(&["get", "", "--from-key", "--keys-only"]),
];

#[tokio::test(flavor = "multi_thread")]
async fn etcdctl_prints_the_same_as_against_etcd() {
    let (keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    assert_same_transcripts(&keel, &etcd, SCRIPT);
}

#[tokio::test(flavor = "multi_thread")]
async fn member_list_and_endpoint_commands_tell_the_truth() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let endpoints = cluster.endpoints_csv();

    // Phase 1: member list names every member with its peer and client URLs.
    let mut listed = String::new();
    keel_tests::wait_for(keel_tests::READY_TIMEOUT, "every member to publish its client URLs", || {
        listed = etcdctl(&endpoints, &["member", "list"]).stdout;
        let done = cluster.members.iter().all(|m| listed.contains(&m.client_url));
        async move { done }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {listed}"));
    for member in &cluster.members {
        let line = listed
            .lines()
            .find(|l| l.contains(&member.peer_url))
            .unwrap_or_else(|| panic!("{} missing: {listed}", member.name));
        let fields: Vec<&str> = line.split(", ").collect();
        assert_eq!(
            fields[1..],
            ["started", member.name.as_str(), member.peer_url.as_str(), member.client_url.as_str(), "false"],
            "{line}"
        );
    }

    // Phase 2: endpoint status: one leader, the same term and the same leader ID everywhere.
    let status = etcdctl(&endpoints, &["endpoint", "status", "-w", "json"]);
    assert!(status.success, "{status:?}");
    let statuses: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    let statuses = statuses.as_array().expect("array");
    assert_eq!(statuses.len(), 3);
    let leaders: Vec<u64> = statuses.iter().map(|s| s["Status"]["leader"].as_u64().unwrap_or(0)).collect();
    assert!(leaders.iter().all(|l| *l != 0 && *l == leaders[0]), "{leaders:?}");
    let is_leader = statuses.iter().filter(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leaders[0])).count();
    assert_eq!(is_leader, 1);
    assert!(statuses.iter().all(|s| s["Status"]["raftIndex"].as_u64().unwrap_or(0) > 0), "{statuses:?}");
    assert!(statuses.iter().all(|s| s["Status"]["version"].as_str().is_some_and(|v| v.starts_with("3.4"))));

    // Phase 3: endpoint health says healthy for every member.
    let health = etcdctl(&endpoints, &["endpoint", "health"]);
    assert!(health.success, "{health:?}");
    for member in &cluster.members {
        assert!(
            health.stdout.contains(&format!("{} is healthy", member.client_url))
                || health.stderr.contains(&format!("{} is healthy", member.client_url)),
            "{health:?}"
        );
    }
}
