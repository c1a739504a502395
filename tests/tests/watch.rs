//! Watches deliver exactly the history of their range: every revision once, in order, with no
//! gap, also across a restart of the member a watch is on (the watch resumes from its last
//! revision + 1). And the details of the Watch API (compacted starts, prev_kv, filters,
//! cancel, progress) are etcd's: the same scenarios run on etcd 3.4 and Keel, compared.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse,
    WatchStream,
};
use keel_tests::{try_connect, wait_for, Server, TestCluster, READY_TIMEOUT};
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

// ---- The Watch API's details, etcd 3.4 vs Keel ----

/// etcd splits a watch response into fragments (when the watch asked for them) once it is
/// bigger than `--max-request-bytes` (1.5 MiB by default) plus 512 KiB of gRPC overhead.
const WATCH_FRAGMENT_BYTES: usize = 1_572_864 + 524_288;

#[tokio::test(flavor = "multi_thread")]
async fn watch_api_details_match_etcd() {
    // Progress notifications every 500 ms instead of 10 minutes, so the test can see one.
    let flags = ["--experimental-watch-progress-notify-interval", "500ms"];
    let (keel, etcd) = tokio::join!(
        TestCluster::start_with(Server::Keel, 3, &flags),
        TestCluster::start_with(Server::Etcd, 3, &flags)
    );
    // etcd first: a scenario's own assertion failing there means the test is wrong.
    let etcd_observed = observe(&etcd).await;
    let keel_observed = observe(&keel).await;
    let mut mismatches = Vec::new();
    for ((name, k), (_, e)) in keel_observed.iter().zip(&etcd_observed) {
        if k != e {
            mismatches.push(format!("{name}\n  etcd: {e}\n  keel: {k}"));
        }
    }
    assert!(mismatches.is_empty(), "{}\n{}", mismatches.join("\n"), keel.all_logs());
}

/// What each scenario observed, as text with revisions relative to the scenario's start (the
/// two clusters need not agree on absolute revisions) and watch IDs relative to the first.
/// Each scenario also asserts what etcd 3.4 is known to do, so a wrong expectation shows on
/// etcd itself.
async fn observe(cluster: &TestCluster) -> Vec<(&'static str, String)> {
    let leader = cluster.leader().await;
    // Watches on a follower: Keel serves them from its own copy of the state.
    let mut client = cluster.member_client((leader + 1) % 3).await;
    let mut observed = Vec::new();
    // Each scenario is announced, so a failing assertion or timeout inside it says where it was.
    macro_rules! scenario {
        ($name:expr, $run:ident) => {{
            eprintln!("{:?}: {}", cluster.server, $name);
            observed.push(($name, $run(&mut client).await));
        }};
    }
    scenario!("a start revision below the compaction", compacted_start);
    scenario!("a start revision at the compaction", start_at_compaction);
    scenario!("prev_kv on put and delete", prev_kv);
    scenario!("the NOPUT and NODELETE filters", filters);
    scenario!("cancel", cancel);
    scenario!("a progress request", progress);
    scenario!("progress notifications", progress_notify);
    // Last: on a server that cannot take it, a 1 MB revision may leave the cluster unusable.
    scenario!("fragments of a big revision", fragments);
    observed
}

async fn revision(client: &mut Client) -> i64 {
    client.get("any", None).await.expect("get").header().expect("header").revision()
}

/// The next response of `stream`, within a deadline.
async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(READY_TIMEOUT, stream.message())
        .await
        .expect("a watch response in time")
        .expect("watch stream")
        .expect("watch stream open")
}

/// A response as text: flags, the compact revision and header revision relative to `base`
/// (0 stays 0), and its events.
fn describe(response: &WatchResponse, base: i64, first_watch_id: i64) -> String {
    let relative = |r: i64| if r == 0 { "0".to_string() } else { format!("base{:+}", r - base) };
    let header = response.header().map_or(0, |h| h.revision());
    let events: Vec<String> = response.events().iter().map(|e| describe_event(e, base)).collect();
    // -1: a progress response, for no watch in particular.
    let watch_id = if response.watch_id() == -1 { -1 } else { response.watch_id() - first_watch_id };
    format!(
        "{{watch {watch_id} created {} canceled {} compact {} reason {:?} header {} events {events:?}}}",
        response.created(),
        response.canceled(),
        relative(response.compact_revision()),
        response.cancel_reason(),
        relative(header),
    )
}

fn describe_event(event: &etcd_client::Event, base: i64) -> String {
    let kv = |kv: Option<&etcd_client::KeyValue>| {
        kv.map(|kv| {
            let relative = |r: i64| if r == 0 { "0".to_string() } else { format!("base{:+}", r - base) };
            format!(
                "{}={:?} create {} mod {} version {} lease {}",
                kv.key_str().unwrap_or_default(),
                kv.value_str().unwrap_or_default(),
                relative(kv.create_revision()),
                relative(kv.mod_revision()),
                kv.version(),
                kv.lease()
            )
        })
    };
    format!("{:?} {:?} prev {:?}", event.event_type(), kv(event.kv()), kv(event.prev_kv()))
}

async fn compacted_start(client: &mut Client) -> String {
    for value in ["1", "2", "3"] {
        client.put("cw", value, None).await.expect("put");
    }
    let compacted = revision(client).await;
    client.compact(compacted, None).await.expect("compact");
    let options = WatchOptions::new().with_start_revision(compacted - 1);
    let mut stream = client.watch("cw", Some(options)).await.expect("watch");
    let mut responses = Vec::new();
    let mut first_watch_id = None;
    // Until the cancellation: etcd 3.4 answers "created", then cancels with the compact revision.
    loop {
        let response = next(&mut stream).await;
        let watch_id = *first_watch_id.get_or_insert(response.watch_id());
        responses.push(describe(&response, compacted, watch_id));
        if response.canceled() {
            assert_eq!(response.compact_revision(), compacted, "{response:?}");
            break;
        }
        assert!(responses.len() < 3, "no cancellation: {responses:?}");
    }
    responses.join(" ")
}

async fn start_at_compaction(client: &mut Client) -> String {
    client.put("cr", "1", None).await.expect("put");
    client.put("cr", "2", None).await.expect("put");
    let compacted = revision(client).await;
    client.compact(compacted, None).await.expect("compact");
    // The compaction revision itself is still readable: the watch replays it.
    let options = WatchOptions::new().with_start_revision(compacted);
    let mut stream = client.watch("cr", Some(options)).await.expect("watch");
    let created = next(&mut stream).await;
    let watch_id = created.watch_id();
    let mut responses = vec![describe(&created, compacted, watch_id)];
    let mut events = 0;
    while events < 1 {
        let response = next(&mut stream).await;
        events += response.events().len();
        responses.push(describe(&response, compacted, watch_id));
    }
    responses.join(" ")
}

async fn prev_kv(client: &mut Client) -> String {
    let base = revision(client).await;
    let options = WatchOptions::new().with_start_revision(base + 1).with_prev_key();
    let mut stream = client.watch("pk", Some(options)).await.expect("watch");
    let created = next(&mut stream).await;
    let watch_id = created.watch_id();
    client.put("pk", "v1", None).await.expect("put");
    client.put("pk", "v2", None).await.expect("put");
    client.delete("pk", None).await.expect("delete");
    let mut events = Vec::new();
    while events.len() < 3 {
        let response = next(&mut stream).await;
        assert_eq!(response.watch_id(), watch_id);
        events.extend(response.events().iter().map(|e| describe_event(e, base)));
    }
    // The delete carries the value it removed.
    assert!(events[2].starts_with("Delete") && events[2].contains("prev Some(\"pk=\\\"v2\\\""), "{events:?}");
    events.join(" ")
}

async fn filters(client: &mut Client) -> String {
    let base = revision(client).await;
    let from = WatchOptions::new().with_start_revision(base + 1);
    let mut no_put =
        client.watch("nf", Some(from.clone().with_filters([WatchFilterType::NoPut]))).await.expect("watch");
    let mut no_delete = client.watch("nf", Some(from.with_filters([WatchFilterType::NoDelete]))).await.expect("watch");
    next(&mut no_put).await;
    next(&mut no_delete).await;
    client.put("nf", "1", None).await.expect("put");
    client.delete("nf", None).await.expect("delete");
    client.put("nf", "2", None).await.expect("put");
    client.delete("nf", None).await.expect("delete");
    let mut observed = Vec::new();
    for (name, stream) in [("NOPUT", &mut no_put), ("NODELETE", &mut no_delete)] {
        let mut events = Vec::new();
        while events.len() < 2 {
            let response = next(stream).await;
            events.extend(response.events().iter().map(|e| describe_event(e, base)));
        }
        observed.push(format!("{name}: {events:?}"));
    }
    assert!(observed[0].matches("Delete").count() == 2 && !observed[0].contains("Put "), "{observed:?}");
    observed.join(" ")
}

async fn cancel(client: &mut Client) -> String {
    let base = revision(client).await;
    let mut stream = client.watch("cancelled", None).await.expect("watch");
    let created = next(&mut stream).await;
    let first = created.watch_id();
    stream.cancel(first).await.expect("cancel");
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled() && canceled.watch_id() == first, "{canceled:?}");
    // A second watch on the same stream sees the next put; the canceled one sees nothing
    // (its event would come first: one stream delivers in revision order).
    stream.watch("cancelled", None).await.expect("second watch");
    let second = next(&mut stream).await;
    client.put("cancelled", "1", None).await.expect("put");
    let event = next(&mut stream).await;
    assert_eq!(event.watch_id(), second.watch_id(), "an event for the canceled watch: {event:?}");
    [created, canceled, second, event].iter().map(|r| describe(r, base, first)).collect::<Vec<_>>().join(" ")
}

async fn progress(client: &mut Client) -> String {
    let mut stream = client.watch("progress", None).await.expect("watch");
    let created = next(&mut stream).await;
    client.put("progress", "1", None).await.expect("put");
    let event = next(&mut stream).await;
    client.put("elsewhere", "1", None).await.expect("put");
    let base = revision(client).await;
    stream.request_progress().await.expect("progress request");
    // No events, and the header says how far the watch stream has got: the current revision.
    let progress = next(&mut stream).await;
    assert!(progress.events().is_empty() && progress.header().map(|h| h.revision()) == Some(base), "{progress:?}");
    let first = created.watch_id();
    format!("{} {}", describe(&event, base, first), describe(&progress, base, first))
}

async fn fragments(client: &mut Client) -> String {
    // Three values of 1 MB, deleted at one revision: with prev_kv the revision's events are
    // 3 MB, over the limit; two fit in it.
    let value_bytes = 1_000_000;
    const { assert!(2 * 1_000_000 < WATCH_FRAGMENT_BYTES && 3 * 1_000_000 > WATCH_FRAGMENT_BYTES) };
    for i in 0..3 {
        // A failure here is an observation (etcd takes 1 MB values), not a broken test.
        if let Err(error) = client.put(format!("frag/{i}"), vec![b'x'; value_bytes], None).await {
            return format!("put of a 1 MB value failed: {error}");
        }
    }
    let base = revision(client).await;
    let from = WatchOptions::new().with_prefix().with_prev_key().with_start_revision(base + 1);
    let mut fragmented = client.watch("frag/", Some(from.clone().with_fragment())).await.expect("watch");
    let mut whole = client.watch("frag/", Some(from)).await.expect("watch");
    next(&mut fragmented).await;
    next(&mut whole).await;
    client.delete("frag/", Some(DeleteOptions::new().with_prefix())).await.expect("delete");
    let mut observed = Vec::new();
    for (name, stream) in [("fragment", &mut fragmented), ("whole", &mut whole)] {
        let mut per_response = Vec::new();
        while per_response.iter().sum::<usize>() < 3 {
            let response = next(stream).await;
            assert!(response.events().iter().all(|e| e.kv().is_some_and(|kv| kv.mod_revision() == base + 1)));
            per_response.push(response.events().len());
        }
        observed.push(format!("{name}: events per response {per_response:?}"));
    }
    assert_eq!(observed, ["fragment: events per response [2, 1]", "whole: events per response [3]"]);
    observed.join(" ")
}

async fn progress_notify(client: &mut Client) -> String {
    let options = WatchOptions::new().with_progress_notify();
    let mut stream = client.watch("notified", Some(options)).await.expect("watch");
    let created = next(&mut stream).await;
    client.put("elsewhere", "2", None).await.expect("put");
    let base = revision(client).await;
    // Idle (no event for it): within an interval or two, a notification of the current revision.
    let notified = next(&mut stream).await;
    assert!(notified.events().is_empty() && notified.header().map(|h| h.revision()) == Some(base), "{notified:?}");
    client.put("notified", "1", None).await.expect("put");
    let event = next(&mut stream).await;
    let first = created.watch_id();
    [notified, event].iter().map(|r| describe(r, base, first)).collect::<Vec<_>>().join(" ")
}
