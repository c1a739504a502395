//! Watches deliver exactly the history of their range: every revision once, in order, with no
//! gap, also across a restart of the member a watch is on (the watch resumes from its last
//! revision + 1). The Watch API's details against etcd 3.4: `watch_api.rs`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use keel_tests::{try_connect, wait_for, Server, TestCluster};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

/// Keys of one case (under its own namespace): two prefixes so prefix watches see a part.
const KEYS: [&str; 5] = ["a/0", "a/1", "a/2", "b/0", "b/1"];

/// How long a watch may take to deliver what the history holds.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One write of a scenario, on `KEYS` indices.
#[derive(Clone, Debug)]
enum Op {
    Put {
        key: usize,
        value: u8,
    },
    Delete {
        key: usize,
    },
    /// Deletes every key under "a/" or "b/" (one revision, several events).
    DeletePrefix {
        b: bool,
    },
    /// Puts and deletes of distinct keys, at one revision.
    Txn {
        puts: Vec<usize>,
        deletes: Vec<usize>,
    },
    /// A put attached to the scenario's current lease.
    PutLeased {
        key: usize,
    },
    /// Revokes the current lease (deleting its keys at one revision) and grants the next one.
    RevokeLease,
}

#[derive(Clone, Debug)]
struct Scenario {
    ops: Vec<Op>,
    /// The member killed (-9) before op `kill_before`, and restarted `down_for` ops later.
    restarted: usize,
    kill_before: usize,
    down_for: usize,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        4 => (key.clone(), any::<u8>()).prop_map(|(key, value)| Op::Put { key, value }),
        2 => key.clone().prop_map(|key| Op::Delete { key }),
        1 => any::<bool>().prop_map(|b| Op::DeletePrefix { b }),
        2 => proptest::sample::subsequence((0..KEYS.len()).collect::<Vec<_>>(), 1..=4).prop_flat_map(|keys| {
            let n = keys.len();
            (Just(keys), 0..=n).prop_map(|(keys, split)| Op::Txn {
                puts: keys[..split].to_vec(),
                deletes: keys[split..].to_vec(),
            })
        }),
        2 => key.prop_map(|key| Op::PutLeased { key }),
        1 => Just(Op::RevokeLease),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (proptest::collection::vec(op(), 8..24), 0..3usize, 1..4usize).prop_flat_map(|(ops, restarted, down_for)| {
        let len = ops.len();
        (Just(ops), Just(restarted), 0..len, Just(down_for))
            .prop_map(|(ops, restarted, kill_before, down_for)| Scenario { ops, restarted, kill_before, down_for })
    })
}

/// One event as a watch delivers it, or as the history says it happened.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    revision: i64,
    key: String,
    /// `None` for a delete.
    value: Option<String>,
}

/// Which keys a watcher covers.
#[derive(Clone, Debug)]
enum Range {
    Key(String),
    Prefix(String),
    All,
}

impl Range {
    fn contains(&self, key: &str) -> bool {
        match self {
            Range::Key(k) => key == k,
            Range::Prefix(prefix) => key.starts_with(prefix.as_str()),
            Range::All => true,
        }
    }

    fn watch(&self) -> (String, WatchOptions) {
        match self {
            Range::Key(key) => (key.clone(), WatchOptions::new()),
            Range::Prefix(prefix) => (prefix.clone(), WatchOptions::new().with_prefix()),
            Range::All => (String::new(), WatchOptions::new().with_all_keys()),
        }
    }
}

/// A watch on one member that resumes from its last revision + 1 whenever its stream breaks
/// (the member died), on the same member once it is back.
struct Watcher {
    member: usize,
    range: Range,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Set when the server canceled the watch, which it must not here.
    failure: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(cluster: &TestCluster, member: usize, range: Range, start_revision: i64) -> Watcher {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failure = Arc::new(Mutex::new(None));
        let endpoint = cluster.members[member].client_url.clone();
        let task = tokio::spawn(resuming_watch(endpoint, range.clone(), start_revision, seen.clone(), failure.clone()));
        Watcher { member, range, seen, failure, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn last_revision(&self) -> i64 {
        self.seen().last().map_or(0, |s| s.revision)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn resuming_watch(
    endpoint: String,
    range: Range,
    start_revision: i64,
    seen: Arc<Mutex<Vec<Seen>>>,
    failure: Arc<Mutex<Option<String>>>,
) {
    let next = AtomicI64::new(start_revision);
    loop {
        let Ok(mut client) = try_connect(std::slice::from_ref(&endpoint)).await else {
            // The member is down: retry until it is back.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (key, options) = range.watch();
        let Ok(mut stream) = client.watch(key, Some(options.with_start_revision(next.load(Ordering::SeqCst)))).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled() {
                *failure.lock().expect("lock") = Some(format!("watch canceled: {response:?}"));
                return;
            }
            let mut seen = seen.lock().expect("lock");
            for event in response.events() {
                let kv = event.kv().expect("event kv");
                seen.push(Seen {
                    revision: kv.mod_revision(),
                    key: kv.key_str().unwrap_or_default().to_string(),
                    value: (event.event_type() == EventType::Put)
                        .then(|| kv.value_str().unwrap_or_default().to_string()),
                });
                next.store(kv.mod_revision() + 1, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn every_watcher_sees_exactly_the_history_of_its_range_across_a_member_restart() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    // One cluster for every case (each case in its own key namespace): starting three
    // members per case would dominate the run time.
    let cluster = RefCell::new(runtime.block_on(TestCluster::start(Server::Keel, 3)));
    let case = Cell::new(0);
    // Few cases, no shrinking (each step restarts a member) and no regression file: a failure
    // prints its scenario.
    let config =
        ProptestConfig { cases: 6, max_shrink_iters: 0, failure_persistence: None, ..ProptestConfig::default() };
    let result = TestRunner::new(config).run(&scenario(), |scenario| {
        case.set(case.get() + 1);
        let mut cluster = cluster.borrow_mut();
        runtime
            .block_on(check_scenario(&mut cluster, case.get(), &scenario))
            .map_err(|e| TestCaseError::fail(format!("{e}\nscenario: {scenario:?}")))
    });
    if let Err(error) = result {
        panic!("{error}\n{}", cluster.borrow().all_logs());
    }
}

async fn check_scenario(cluster: &mut TestCluster, case: usize, scenario: &Scenario) -> Result<(), String> {
    let namespace = format!("case{case}/");
    let key = |i: usize| format!("{namespace}{}", KEYS[i]);
    // Writes and history reads go through a member that is never restarted.
    let writer = (scenario.restarted + 1) % 3;
    let mut client = cluster.member_client(writer).await;
    let start = client.get("any", None).await.map_err(|e| e.to_string())?.header().expect("header").revision();

    // Phase 1: watchers on every member, from the next revision.
    let watchers = [
        Watcher::start(cluster, 0, Range::Key(key(0)), start + 1),
        Watcher::start(cluster, 1, Range::Prefix(format!("{namespace}a/")), start + 1),
        Watcher::start(cluster, 2, Range::All, start + 1),
        Watcher::start(cluster, scenario.restarted, Range::Prefix(format!("{namespace}b/")), start + 1),
    ];

    // Phase 2: the writes, with a member down for a few of them.
    let mut lease = client.lease_grant(60, None).await.map_err(|e| e.to_string())?.id();
    let restart_before = scenario.kill_before + scenario.down_for;
    for (i, op) in scenario.ops.iter().enumerate() {
        if i == scenario.kill_before {
            cluster.kill9(scenario.restarted);
            cluster.wait_ready().await;
        }
        if i == restart_before {
            cluster.start_member(scenario.restarted);
            cluster.wait_ready().await;
        }
        apply(&mut client, op, &key, &mut lease).await.map_err(|e| format!("op {i} {op:?}: {e}"))?;
    }
    if !cluster.members[scenario.restarted].is_running() {
        cluster.start_member(scenario.restarted);
        cluster.wait_ready().await;
    }
    client.lease_revoke(lease).await.map_err(|e| e.to_string())?;
    // A last write every watcher covers: once a watcher has it, it has everything before it.
    let end = Txn::new().and_then([TxnOp::put(key(0), "end", None), TxnOp::put(key(3), "end", None)]);
    let end = client.txn(end).await.map_err(|e| e.to_string())?.header().expect("header").revision();

    // Phase 3: the history, from the MVCC store of the member that stayed up.
    let history = history(&mut client, start, end).await?;
    wait_for(DELIVERY_TIMEOUT, "every watcher to reach the last revision", || {
        let done = watchers.iter().all(|w| w.last_revision() >= end || w.failure.lock().expect("lock").is_some());
        async move { done }
    })
    .await
    .map_err(|e| {
        let progress: Vec<i64> = watchers.iter().map(Watcher::last_revision).collect();
        format!("{e}: watchers at {progress:?}, end {end}")
    })?;

    // Phase 4: each watcher saw exactly the history of its range.
    for watcher in &watchers {
        if let Some(failure) = watcher.failure.lock().expect("lock").clone() {
            return Err(format!("watcher {:?} on member {}: {failure}", watcher.range, watcher.member));
        }
        let expected: Vec<Seen> = history.iter().filter(|s| watcher.range.contains(&s.key)).cloned().collect();
        let seen = by_revision(watcher.seen());
        if seen != expected {
            return Err(format!(
                "watcher {:?} on member {} (start {start}, end {end}):\n  expected {expected:?}\n  seen     {seen:?}",
                watcher.range, watcher.member
            ));
        }
    }
    let delivered: Vec<usize> = watchers.iter().map(|w| w.seen().len()).collect();
    eprintln!(
        "case {case}: {} ops, revisions {start}..={end}, member {} restarted, events per watcher {delivered:?}",
        scenario.ops.len(),
        scenario.restarted
    );
    Ok(())
}

/// Applies one op; the error text says why it failed.
async fn apply(
    client: &mut Client,
    op: &Op,
    key: &impl Fn(usize) -> String,
    lease: &mut i64,
) -> Result<(), etcd_client::Error> {
    match op {
        Op::Put { key: k, value } => client.put(key(*k), format!("v{value}"), None).await.map(drop),
        Op::Delete { key: k } => client.delete(key(*k), None).await.map(drop),
        Op::DeletePrefix { b } => {
            let prefix = key(if *b { 3 } else { 0 }).trim_end_matches(char::is_numeric).to_string();
            client.delete(prefix, Some(DeleteOptions::new().with_prefix())).await.map(drop)
        }
        Op::Txn { puts, deletes } => {
            let ops: Vec<TxnOp> = puts
                .iter()
                .map(|k| TxnOp::put(key(*k), "txn", None))
                .chain(deletes.iter().map(|k| TxnOp::delete(key(*k), None)))
                .collect();
            client.txn(Txn::new().and_then(ops)).await.map(drop)
        }
        Op::PutLeased { key: k } => {
            client.put(key(*k), "leased", Some(PutOptions::new().with_lease(*lease))).await.map(drop)
        }
        Op::RevokeLease => {
            client.lease_revoke(*lease).await?;
            *lease = client.lease_grant(60, None).await?.id();
            Ok(())
        }
    }
}

/// Every event of revisions (start, end], derived from Range at each revision: a key whose
/// mod_revision is r was put at r; a key there at r - 1 and gone at r was deleted at r.
/// Sorted by revision, then key.
async fn history(client: &mut Client, start: i64, end: i64) -> Result<Vec<Seen>, String> {
    let mut before = state_at(client, start).await?;
    let mut events = Vec::new();
    for revision in start + 1..=end {
        let now = state_at(client, revision).await?;
        let at_revision = events.len();
        for (key, (mod_revision, value)) in &now {
            if *mod_revision == revision {
                events.push(Seen { revision, key: key.clone(), value: Some(value.clone()) });
            }
        }
        for key in before.keys().filter(|key| !now.contains_key(*key)) {
            events.push(Seen { revision, key: key.clone(), value: None });
        }
        if events.len() == at_revision {
            return Err(format!("revision {revision} changed nothing: the history has a hole"));
        }
        before = now;
    }
    events.sort();
    Ok(events)
}

/// key -> (mod_revision, value) for every key at `revision`.
async fn state_at(client: &mut Client, revision: i64) -> Result<BTreeMap<String, (i64, String)>, String> {
    let options = GetOptions::new().with_all_keys().with_revision(revision);
    let response = client.get("", Some(options)).await.map_err(|e| format!("range at {revision}: {e}"))?;
    Ok(response
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().unwrap_or_default().to_string();
            (key, (kv.mod_revision(), kv.value_str().unwrap_or_default().to_string()))
        })
        .collect())
}

/// The events as delivered, each revision's events sorted by key (the history does not know
/// the order of a txn's operations); the order of revisions is kept, so a revision out of
/// place or delivered twice still shows.
fn by_revision(mut seen: Vec<Seen>) -> Vec<Seen> {
    let mut start = 0;
    while start < seen.len() {
        let revision = seen[start].revision;
        let len = seen[start..].iter().take_while(|s| s.revision == revision).count();
        seen[start..start + len].sort();
        start += len;
    }
    seen
}
