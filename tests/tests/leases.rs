//! Leases under faults: a lease kept alive outlives kill -9 and SIGSTOP of the leader; once
//! keep-alives stop its keys go within the TTL plus one election, and never early; keep-alives
//! sent to a follower count; acknowledged grants survive kill -9 of every member.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, EventType, GetOptions, LeaseGrantOptions, LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions,
    PutOptions, WatchOptions,
};
use keel_tests::{try_connect, wait_for, wait_for_some, Server, TestCluster, READY_TIMEOUT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Short enough to keep the tests fast, long enough that a keep-alive every TTL/3 gets
/// through an election (500 ms timeout here) with room to spare.
const LEASE_TTL_SECS: i64 = 5;
const LEASE_TTL: Duration = Duration::from_secs(LEASE_TTL_SECS as u64);

/// How long one keep-alive attempt may take before the keeper tries the next member.
const KEEP_ALIVE_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Slack on expiry: a new leader gives every lease its full TTL again, so expiry may come
/// one election (and the revoke's commit) later than TTL after the last keep-alive; and on a
/// loaded 2-core machine the revoke and its watch event can take seconds more. Lateness is
/// only bounded here (a lease must go); earliness is checked exactly, from the delete event's
/// arrival, which load can only delay.
const EXPIRY_SLACK: Duration = Duration::from_secs(8);

/// A task keeping one lease alive every TTL/3 through whichever member answers, like a client
/// library does: on a broken or silent stream it moves on to the next member.
struct Keeper {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<KeeperState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct KeeperState {
    acks: u64,
    /// When the newest keep-alive that may have reached a member was sent.
    last_attempt: Option<Instant>,
    /// Set when a member answered "no such lease" (TTL 0): the lease is gone.
    lost: Option<String>,
    /// Every failed attempt (seconds since the keeper started, member, error), for failure
    /// messages.
    failures: Vec<(f32, usize, String)>,
}

impl Keeper {
    fn start(endpoints: Vec<String>, lease: i64) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(KeeperState::default()));
        let task = tokio::spawn(keep_alive_loop(endpoints, lease, stop.clone(), state.clone()));
        Keeper { stop, state, task }
    }

    fn acks(&self) -> u64 {
        self.state.lock().expect("lock").acks
    }

    fn lost(&self) -> Option<String> {
        self.state.lock().expect("lock").lost.clone()
    }

    /// The failed attempts so far, for failure messages.
    fn failures(&self) -> String {
        format!("keep-alive failures (secs, member, error): {:?}", self.state.lock().expect("lock").failures)
    }

    /// Stops after the attempt in flight; returns when the last keep-alive was sent.
    async fn stop(self) -> Instant {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("keeper task");
        let state = self.state.lock().expect("lock");
        state.last_attempt.expect("at least one keep-alive was sent")
    }
}

type KeepAliveStream = (LeaseKeeper, LeaseKeepAliveStream);

async fn keep_alive_loop(endpoints: Vec<String>, lease: i64, stop: Arc<AtomicBool>, state: Arc<Mutex<KeeperState>>) {
    let interval = LEASE_TTL / 3;
    let started = Instant::now();
    let mut member = 0;
    let mut stream: Option<KeepAliveStream> = None;
    while !stop.load(Ordering::SeqCst) {
        state.lock().expect("lock").last_attempt = Some(Instant::now());
        let attempt =
            tokio::time::timeout(KEEP_ALIVE_ATTEMPT_TIMEOUT, keep_alive_once(&mut stream, &endpoints[member], lease));
        match attempt.await {
            Ok(Ok(ttl)) if ttl > 0 => {
                state.lock().expect("lock").acks += 1;
                // Pacing, not synchronisation: a keep-alive every TTL/3, as clients send them.
                tokio::time::sleep(interval).await;
            }
            Ok(Ok(ttl)) => {
                state.lock().expect("lock").lost = Some(format!("keep-alive answered TTL {ttl}"));
                return;
            }
            Ok(Err(AttemptFailed(error))) if error.contains("lease not found") => {
                state.lock().expect("lock").lost = Some(error);
                return;
            }
            failed => {
                let error = match failed {
                    Ok(Err(AttemptFailed(error))) => error,
                    _ => "timed out".to_string(),
                };
                state.lock().expect("lock").failures.push((started.elapsed().as_secs_f32(), member, error));
                stream = None;
                member = (member + 1) % endpoints.len();
            }
        }
    }
}

struct AttemptFailed(String);

/// One keep-alive on the member's stream (opening it first if needed); the TTL it answered.
async fn keep_alive_once(
    stream: &mut Option<KeepAliveStream>,
    endpoint: &str,
    lease: i64,
) -> Result<i64, AttemptFailed> {
    if let Some((keeper, responses)) = stream {
        keeper.keep_alive().await.map_err(|e| AttemptFailed(e.to_string()))?;
        let response = responses.message().await.map_err(|e| AttemptFailed(e.to_string()))?;
        return response.map(|r| r.ttl()).ok_or_else(|| AttemptFailed("keep-alive stream ended".into()));
    }
    let mut client = try_connect(&[endpoint.to_string()]).await.map_err(|e| AttemptFailed(e.to_string()))?;
    // Opening the stream sends the first keep-alive and fails on TTL 0 ("lease not found").
    let opened = client.lease_keep_alive(lease).await.map_err(|e| AttemptFailed(e.to_string()))?;
    *stream = Some(opened);
    Ok(LEASE_TTL_SECS)
}

/// Every event a watch on one member saw, with when it arrived.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Arrival>>>);

/// One event of a watch and when it arrived.
#[derive(Clone, Debug)]
struct Arrival {
    kind: EventType,
    key: String,
    revision: i64,
    at: Instant,
}

impl Events {
    /// Watches `prefix` on member `i` from `start_revision`; returns once the watch is created.
    async fn watch(cluster: &TestCluster, i: usize, prefix: &str, start_revision: i64) -> Events {
        let events = Events::default();
        let mut client = cluster.member_client(i).await;
        let options = WatchOptions::new().with_prefix().with_start_revision(start_revision);
        let mut stream = client.watch(prefix, Some(options)).await.expect("watch");
        let created = stream.message().await.expect("watch response").expect("created response");
        assert!(created.created() && !created.canceled(), "{created:?}");
        let sink = events.clone();
        tokio::spawn(async move {
            let _client = client;
            while let Ok(Some(response)) = stream.message().await {
                let now = Instant::now();
                for event in response.events() {
                    let kv = event.kv().expect("event kv");
                    let key = kv.key_str().unwrap_or_default().to_string();
                    let arrival = Arrival { kind: event.event_type(), key, revision: kv.mod_revision(), at: now };
                    sink.0.lock().expect("lock").push(arrival);
                }
            }
        });
        events
    }

    fn all(&self) -> Vec<Arrival> {
        self.0.lock().expect("lock").clone()
    }

    /// When the first delete of `key` arrived.
    fn deleted_at(&self, key: &str) -> Option<Instant> {
        self.all().into_iter().find(|e| e.kind == EventType::Delete && e.key == key).map(|e| e.at)
    }
}

async fn grant(client: &mut Client, ttl_secs: i64) -> i64 {
    let granted = client.lease_grant(ttl_secs, None).await.expect("lease grant");
    assert_eq!(granted.ttl(), ttl_secs);
    granted.id()
}

/// Puts `key` on `lease`; returns the revision of the put.
async fn put_on_lease(client: &mut Client, key: &str, lease: i64) -> i64 {
    let put = client.put(key, "held", Some(PutOptions::new().with_lease(lease))).await.expect("put with lease");
    put.header().expect("header").revision()
}

/// The key as a linearizable read through `client` sees it: (create_revision, lease).
async fn read(client: &mut Client, key: &str) -> Option<(i64, i64)> {
    let response = wait_for_some(READY_TIMEOUT, "a linearizable read", || {
        let mut client = client.clone();
        async move { client.get(key, None).await.ok() }
    })
    .await
    .expect("read");
    response.kvs().first().map(|kv| (kv.create_revision(), kv.lease()))
}

fn signal(cluster: &TestCluster, i: usize, signal: Signal) {
    let pid = cluster.members[i].pid().expect("member running");
    kill(Pid::from_raw(i32::try_from(pid).expect("pid fits")), signal).expect("send signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_kept_alive_survives_kill9_and_sigstop_of_the_leader() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let mut client = cluster.client().await;
    let lease = grant(&mut client, LEASE_TTL_SECS).await;
    let put_revision = put_on_lease(&mut client, "held/key", lease).await;
    let first_leader = cluster.leader().await;
    // The watch lives on a member that is never killed (it may be stopped: its stream then
    // resumes with SIGCONT).
    let watched = (first_leader + 1) % 3;
    let events = Events::watch(&cluster, watched, "held/", put_revision + 1).await;
    let keeper = Keeper::start(cluster.endpoints(), lease);

    // Phase 1: kill -9 of the leader; keep-alives move to the survivors for over a TTL.
    cluster.kill9(first_leader);
    tokio::time::sleep(LEASE_TTL + Duration::from_secs(1)).await;
    let mut survivor = cluster.member_client(watched).await;
    let after_kill = read(&mut survivor, "held/key").await;
    assert_eq!(after_kill, Some((put_revision, lease)), "{}\n{}", keeper.failures(), cluster.all_logs());
    assert_eq!(keeper.lost(), None);
    cluster.start_member(first_leader);
    cluster.wait_ready().await;

    // Phase 2: the leader is paused (SIGSTOP) for over a TTL: a new leader takes over the
    // keep-alives; when the old one resumes, it must not expire anything on its stale clock.
    let paused = cluster.leader().await;
    let acks_before_pause = keeper.acks();
    signal(&cluster, paused, Signal::SIGSTOP);
    tokio::time::sleep(LEASE_TTL + Duration::from_secs(1)).await;
    let other = (0..3).find(|i| *i != paused).expect("another member");
    let mut other = cluster.member_client(other).await;
    let during_pause = read(&mut other, "held/key").await;
    signal(&cluster, paused, Signal::SIGCONT);
    assert_eq!(
        during_pause,
        Some((put_revision, lease)),
        "expired while member {paused} was paused; {}\n{}",
        keeper.failures(),
        cluster.all_logs()
    );
    assert!(keeper.acks() > acks_before_pause, "no keep-alive got through while the leader was paused");
    cluster.wait_ready().await;
    tokio::time::sleep(LEASE_TTL / 2).await;
    let after_resume = read(&mut client, "held/key").await;
    assert_eq!(
        after_resume,
        Some((put_revision, lease)),
        "expired after member {paused} resumed; keeper lost the lease: {:?}; {}; watch saw {:?}\n{}",
        keeper.lost(),
        keeper.failures(),
        events.all(),
        cluster.all_logs()
    );

    // Phase 3: the watch saw no delete of the key: a marker after everything shows it has
    // caught up, and nothing but the marker arrived.
    client.put("held/marker", "end", None).await.expect("put marker");
    wait_for(READY_TIMEOUT, "the watch to see the marker", || {
        let seen = events.all().iter().any(|e| e.key == "held/marker");
        async move { seen }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    let seen: Vec<(EventType, String, i64)> = events.all().into_iter().map(|e| (e.kind, e.key, e.revision)).collect();
    assert_eq!(seen.len(), 1, "events besides the marker: {seen:?}");
    keeper.stop().await;
}

/// Keeps a lease alive for a while, stops, optionally kills the leader right then, and checks
/// that the key is still there just before TTL and gone (a delete event) by TTL + slack.
async fn expiry_after_keep_alives_stop(kill_the_leader: bool) {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let leader = cluster.leader().await;
    let watched = (leader + 1) % 3;
    let mut client = cluster.member_client(watched).await;
    let lease = grant(&mut client, LEASE_TTL_SECS).await;
    let put_revision = put_on_lease(&mut client, "expiring/key", lease).await;
    let events = Events::watch(&cluster, watched, "expiring/", put_revision + 1).await;

    // Phase 1: kept alive for longer than its TTL.
    let keeper = Keeper::start(cluster.endpoints(), lease);
    let started = Instant::now();
    wait_for(READY_TIMEOUT, "keep-alives for over a TTL", || {
        let done = started.elapsed() > LEASE_TTL + Duration::from_secs(1) && keeper.acks() >= 4;
        async move { done }
    })
    .await
    .expect("keep-alives");
    assert_eq!(read(&mut client, "expiring/key").await, Some((put_revision, lease)));

    // Phase 2: keep-alives stop (and the leader dies, in one variant).
    let last_keep_alive = keeper.stop().await;
    let mut expiry_base = Instant::now();
    if kill_the_leader {
        cluster.kill9(leader);
        expiry_base = Instant::now();
    }

    // Phase 3: the key outlives half its TTL after the last keep-alive (a read that load
    // delays past the TTL could not tell early from on time, so none is made near it)...
    tokio::time::sleep_until((last_keep_alive + LEASE_TTL / 2).into()).await;
    assert_eq!(
        read(&mut client, "expiring/key").await,
        Some((put_revision, lease)),
        "the key expired before half its TTL\n{}",
        cluster.all_logs()
    );
    // ...and is gone by TTL plus an election, with a delete event that did not come early.
    let deadline = expiry_base + LEASE_TTL + EXPIRY_SLACK;
    let deleted_at = wait_for_some(deadline.saturating_duration_since(Instant::now()), "the delete event", || {
        let deleted_at = events.deleted_at("expiring/key");
        async move { deleted_at }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: the key outlived TTL + {EXPIRY_SLACK:?}\n{}", cluster.all_logs()));
    // `last_keep_alive` is when the last keep-alive was sent, so the leader renewed the lease
    // after it; the event is seen after the delete. Both errors only make `after` larger.
    let after = deleted_at - last_keep_alive;
    // The second of tolerance is for the leader's clock stamps, not for load.
    assert!(after >= LEASE_TTL - Duration::from_secs(1), "deleted {after:?} after the last keep-alive");
    assert_eq!(read(&mut client, "expiring/key").await, None);
    let gone = client.lease_time_to_live(lease, None).await.expect("time to live");
    assert_eq!(gone.ttl(), -1, "an expired lease reads as TTL -1: {gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn once_keep_alives_stop_the_key_goes_within_the_ttl_and_not_before() {
    expiry_after_keep_alives_stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_when_the_leader_dies_meanwhile_comes_within_ttl_and_an_election() {
    expiry_after_keep_alives_stop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alives_sent_to_a_follower_keep_the_lease() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut at_follower = cluster.member_client(follower).await;
    let lease = grant(&mut at_follower, LEASE_TTL_SECS).await;
    put_on_lease(&mut at_follower, "follower/key", lease).await;

    // Phase 1: a keep-alive sent to the follower is answered with the full TTL.
    let (mut keeper, mut responses) = at_follower.lease_keep_alive(lease).await.expect("keep-alive stream");
    keeper.keep_alive().await.expect("send keep-alive");
    let response = responses.message().await.expect("keep-alive response").expect("stream open");
    assert_eq!((response.id(), response.ttl()), (lease, LEASE_TTL_SECS));

    // Phase 2: twice the TTL of keep-alives to the follower only: the lease (on the leader,
    // which decides expiry) stays alive. A stream broken by a hiccup is reopened, to the same
    // follower, as a client library would.
    let keeper = Keeper::start(vec![cluster.members[follower].client_url.clone()], lease);
    tokio::time::sleep(2 * LEASE_TTL).await;
    assert_eq!(keeper.lost(), None, "{}\n{}", keeper.failures(), cluster.all_logs());
    let acks = keeper.acks();
    let failures = keeper.failures();
    keeper.stop().await;
    assert!(acks >= 4, "{acks} keep-alives answered in {:?}; {failures}", 2 * LEASE_TTL);
    let remaining = wait_for_some(READY_TIMEOUT, "a lease time-to-live", || {
        let mut client = at_follower.clone();
        async move { client.lease_time_to_live(lease, None).await.ok() }
    })
    .await
    .expect("time to live");
    // Alive after twice its TTL: the keep-alives reached the leader.
    assert!(remaining.ttl() > 0, "the leader did not see the keep-alives: {remaining:?}");
    let mut at_leader = cluster.member_client(leader).await;
    assert_eq!(read(&mut at_leader, "follower/key").await.map(|(_, lease)| lease), Some(lease));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_grants_and_their_keys_survive_kill9_of_every_member() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let mut client = cluster.client().await;
    // Long TTLs: nothing may expire while the cluster restarts.
    let two_keys = grant(&mut client, 600).await;
    let one_key = grant(&mut client, 300).await;
    let chosen_id = 0x1234_5678;
    let granted = client.lease_grant(400, Some(LeaseGrantOptions::new().with_id(chosen_id))).await.expect("grant");
    assert_eq!(granted.id(), chosen_id);
    // etcd lets a client choose a negative id; stored big-endian its first byte is 0xff, which
    // a restarted member once lost (issue 14), so LeaseRevoke diverged between members.
    let negative_id = -5;
    let granted = client.lease_grant(500, Some(LeaseGrantOptions::new().with_id(negative_id))).await.expect("grant");
    assert_eq!(granted.id(), negative_id);
    let no_keys = grant(&mut client, 200).await;
    put_on_lease(&mut client, "durable/a", two_keys).await;
    put_on_lease(&mut client, "durable/b", two_keys).await;
    put_on_lease(&mut client, "durable/c", one_key).await;
    put_on_lease(&mut client, "durable/d", chosen_id).await;
    put_on_lease(&mut client, "durable/e", negative_id).await;
    client.put("durable/plain", "no lease", None).await.expect("put");

    // Phase 1: every member dies at once and restarts from its data dir.
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_ready().await;
    let mut client = cluster.client().await;

    // Phase 2: every lease is there with its TTL and keys.
    let mut listed: Vec<i64> = client.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect();
    listed.sort_unstable();
    let mut expected = vec![two_keys, one_key, chosen_id, negative_id, no_keys];
    expected.sort_unstable();
    assert_eq!(listed, expected, "{}", cluster.all_logs());
    let cases: [(i64, i64, &[&str]); 5] = [
        (two_keys, 600, &["durable/a", "durable/b"]),
        (one_key, 300, &["durable/c"]),
        (chosen_id, 400, &["durable/d"]),
        (negative_id, 500, &["durable/e"]),
        (no_keys, 200, &[]),
    ];
    for (lease, ttl, keys) in cases {
        let live = client.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await;
        let live = live.expect("time to live");
        assert_eq!(live.granted_ttl(), ttl, "{live:?}");
        assert!(live.ttl() > 0 && live.ttl() <= ttl, "{live:?}");
        let mut attached: Vec<String> = live.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        attached.sort_unstable();
        assert_eq!(attached, keys, "keys of lease {lease:x}");
    }

    // Phase 3: the keys are still attached: revoking a lease deletes its keys only.
    client.lease_revoke(two_keys).await.expect("revoke");
    client.lease_revoke(negative_id).await.expect("revoke the negative id");
    let left = client.get("durable/", Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    let left: Vec<&str> = left.kvs().iter().map(|kv| kv.key_str().unwrap_or_default()).collect();
    assert_eq!(left, ["durable/c", "durable/d", "durable/plain"]);
}
