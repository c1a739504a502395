//! The registry contract as one suite, run against every implementation: `MemoryRegistry` in
//! keel-client's tests, `GrpcRegistry` against a real cluster in keel-tests. It panics on the
//! first broken expectation, saying which.
//!
//! Safe on a shared registry: every service it touches is named `conformance-<random>-...`
//! and removed at the end of its case. Waits use tokio's clock and a deadline, so the suite is
//! instant under `tokio::time::pause()` and takes a few seconds (TTLs) against a cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{Action, Node, RegisterOptions, Registry, Selector, Service, Strategy, Value, WatchOptions, Watcher};
use crate::error::Error;

/// How long any expected change may take to show: a lease expiry after its TTL, a failover.
const WAIT: Duration = Duration::from_secs(10);
/// Between two checks of a condition being waited for.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The TTL of registrations meant to expire (or to be kept alive) during the suite.
const SHORT_TTL: Duration = Duration::from_secs(1);

/// Runs every case against `registry`.
pub async fn run(registry: Arc<dyn Registry>) {
    let names = Names::new();
    get_of_unknown_service_is_not_found(&*registry, &names).await;
    register_get_list_deregister(&*registry, &names).await;
    invalid_requests_are_rejected(&*registry, &names).await;
    names_that_would_share_a_key_are_refused(&*registry, &names).await;
    a_name_with_a_slash_is_not_its_dashed_twin(&*registry, &names).await;
    reads_carry_the_stored_bytes(&*registry, &names).await;
    versions_are_grouped(&*registry, &names).await;
    watch_reports_create_update_delete(&*registry, &names).await;
    ttl_expiry_deletes(&*registry, &names).await;
    keep_registered_holds_then_deregisters(&*registry, &names).await;
    dropped_registration_deregisters(&*registry, &names).await;
    selector_follows_changes(registry.clone(), &names).await;
}

/// Unique service names for one run.
struct Names {
    run: String,
}

impl Names {
    fn new() -> Names {
        Names { run: format!("conformance-{:08x}", rand::rng().random::<u32>()) }
    }

    fn service(&self, case: &str) -> String {
        format!("{}-{case}", self.run)
    }
}

/// A service with one node, metadata and an endpoint, so every field makes the round trip.
fn service(name: &str, version: &str, node_id: &str) -> Service {
    let value = |name: &str, type_: &str| Value { name: name.into(), type_: type_.into(), values: Vec::new() };
    Service {
        name: name.into(),
        version: version.into(),
        metadata: BTreeMap::from([("team".to_string(), "keel".to_string())]),
        endpoints: vec![super::Endpoint {
            name: "Greeter.Hello".into(),
            request: Some(Value { values: vec![value("name", "string")], ..value("Request", "Request") }),
            response: Some(value("Response", "Response")),
            metadata: BTreeMap::from([("handler".to_string(), "rpc".to_string())]),
        }],
        nodes: vec![Node {
            id: node_id.into(),
            address: "127.0.0.1:7000".into(),
            metadata: BTreeMap::from([("protocol".to_string(), "grpc".to_string())]),
            ..Node::default()
        }],
    }
}

/// Services sorted by version and their nodes by id, for order-independent comparison.
fn sorted(mut services: Vec<Service>) -> Vec<Service> {
    services.sort_by(|a, b| a.version.cmp(&b.version));
    for service in &mut services {
        service.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    }
    services
}

async fn get_of_unknown_service_is_not_found(registry: &dyn Registry, names: &Names) {
    let result = registry.get_service(&names.service("never-registered")).await;
    assert_eq!(result, Err(Error::NotFound), "get_service of a service never registered");
}

async fn register_get_list_deregister(registry: &dyn Registry, names: &Names) {
    let greeter = service(&names.service("basic"), "1.0.0", "node-1");
    registry.register(&greeter, RegisterOptions::default()).await.expect("register");
    assert_eq!(registry.get_service(&greeter.name).await, Ok(vec![greeter.clone()]), "get after register");

    let listed = registry.list_services().await.expect("list_services");
    let mine: Vec<_> = listed.into_iter().filter(|service| service.name == greeter.name).collect();
    assert_eq!(mine.len(), 1, "list_services shows the service once: {mine:?}");
    assert_eq!(mine[0].nodes, greeter.nodes, "list_services shows the node");

    registry.deregister(&greeter).await.expect("deregister");
    assert_eq!(registry.get_service(&greeter.name).await, Err(Error::NotFound), "get after deregister");
    let listed = registry.list_services().await.expect("list_services");
    assert!(listed.iter().all(|service| service.name != greeter.name), "list after deregister: {listed:?}");
    registry.deregister(&greeter).await.expect("deregistering a node not registered is not an error");
}

async fn invalid_requests_are_rejected(registry: &dyn Registry, names: &Names) {
    let cases = [
        ("empty name", Service { name: String::new(), ..service("x", "1", "n") }),
        ("no node", Service { nodes: Vec::new(), ..service(&names.service("invalid"), "1", "n") }),
    ];
    for (what, bad) in cases {
        let result = registry.register(&bad, RegisterOptions::default()).await;
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "register with {what}: {result:?}");
    }
    // A TTL past etcd's MaxLeaseTTL once stopped every lease of the cluster from expiring.
    let service = service(&names.service("invalid-ttl"), "1", "n");
    for ttl in [Duration::from_secs(super::TTL_MAX_SECS.unsigned_abs() + 1), Duration::MAX] {
        let result = registry.register(&service, RegisterOptions::with_ttl(ttl)).await;
        assert!(matches!(result, Err(Error::InvalidArgument(_))), "register with a TTL of {ttl:?}: {result:?}");
    }
    assert_eq!(registry.get_service(&service.name).await, Err(Error::NotFound), "refused registrations wrote nothing");
}

/// `result` is `InvalidArgument` and its message names `field`.
fn assert_invalid(result: &crate::Result<impl std::fmt::Debug>, field: &str, what: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains(field), "{what}: {message:?} names no {field}")
        }
        other => panic!("{what}: {other:?}, expected InvalidArgument"),
    }
}

async fn names_that_would_share_a_key_are_refused(registry: &dyn Registry, names: &Names) {
    let name = names.service("names");
    // go-micro would store these under another name's key, or outside the service's prefix.
    for bad in [format!("{name}/api"), ".".to_string(), "..".to_string()] {
        let bad = service(&bad, "1", "n");
        let registered = registry.register(&bad, RegisterOptions::default()).await;
        assert_invalid(&registered, "service name", &format!("register {:?}", bad.name));
        let deregistered = registry.deregister(&bad).await;
        assert_invalid(&deregistered, "service name", &format!("deregister {:?}", bad.name));
    }
    for bad_id in ["a/b", ".", "..", ""] {
        let registered = registry.register(&service(&name, "1", bad_id), RegisterOptions::default()).await;
        assert_invalid(&registered, "node id", &format!("register node id {bad_id:?}"));
    }
    for bad in ["", ".", ".."] {
        assert_invalid(&registry.get_service(bad).await, "service name", &format!("get_service({bad:?})"));
        let watch = registry.watch(WatchOptions::service(bad)).await.map(|_| ());
        assert_invalid(&watch, "service name", &format!("watch({bad:?})"));
    }
    assert_eq!(registry.get_service(&name).await, Err(Error::NotFound), "nothing refused was registered");
}

async fn a_name_with_a_slash_is_not_its_dashed_twin(registry: &dyn Registry, names: &Names) {
    // go-micro stores "<run>-pay/api" under the key prefix of "<run>-pay-api".
    let dashed = service(&names.service("pay-api"), "1", "node-1");
    let slashed = format!("{}/api", names.service("pay"));
    registry.register(&dashed, RegisterOptions::default()).await.expect("register");
    assert_eq!(registry.get_service(&slashed).await, Err(Error::NotFound), "a lookup of {slashed:?} finds no twin");
    assert_eq!(registry.get_service(&dashed.name).await, Ok(vec![dashed.clone()]), "the dashed name is found");
    registry.deregister(&dashed).await.expect("deregister");
}

async fn reads_carry_the_stored_bytes(registry: &dyn Registry, names: &Names) {
    let name = names.service("stored");
    let mut watcher = registry.watch(WatchOptions::service(&name)).await.expect("watch");

    // Phase 1: a service built in code is stored as go-micro's json.Marshal of it, and reads
    // carry those bytes.
    let typed = service(&name, "1", "typed");
    registry.register(&typed, RegisterOptions::default()).await.expect("register");
    let found = registry.get_service(&name).await.expect("get_service");
    assert_eq!(
        found[0].nodes[0].stored_json.as_deref(),
        Some(typed.to_json().as_str()),
        "get carries the stored bytes"
    );
    let created = next_of(watcher.as_mut(), &name).await;
    assert_eq!(created.service.nodes[0].stored_json.as_deref(), Some(typed.to_json().as_str()), "watch does too");

    // Phase 2: a service decoded from go-micro v5's JSON (its field order, `{}` and `[]`) is
    // registered as exactly those bytes, and read back as them.
    let v5 = format!(
        r#"{{"name":"{name}","version":"2","metadata":{{}},"endpoints":[{{"request":{{"name":"Req","type":"Req","values":[]}},"response":null,"metadata":{{}},"name":"S.M"}}],"nodes":[{{"metadata":{{}},"id":"v5","address":"127.0.0.1:7002"}}]}}"#
    );
    let decoded = Service::from_json(v5.as_bytes()).expect("go-micro's JSON decodes");
    registry.register(&decoded, RegisterOptions::default()).await.expect("register the decoded service");
    let found = registry.get_service(&name).await.expect("get_service");
    let version_2 = found.iter().find(|service| service.version == "2").expect("version 2 is registered");
    assert_eq!(version_2.to_json(), v5, "re-encodes to go-micro's bytes");
    let created = next_of(watcher.as_mut(), &name).await;
    assert_eq!(created.service.to_json(), v5, "the watch result re-encodes to go-micro's bytes");

    for registration in [&typed, &decoded] {
        registry.deregister(registration).await.expect("deregister");
    }
}

async fn versions_are_grouped(registry: &dyn Registry, names: &Names) {
    let name = names.service("versions");
    let registrations = [service(&name, "1", "a"), service(&name, "2", "b"), service(&name, "1", "c")];
    for registration in &registrations {
        registry.register(registration, RegisterOptions::default()).await.expect("register");
    }
    let mut version_1 = service(&name, "1", "a");
    version_1.nodes.extend(service(&name, "1", "c").nodes);
    let expected = vec![version_1, service(&name, "2", "b")];
    let services = registry.get_service(&name).await.expect("get_service");
    assert_eq!(sorted(services), expected, "one service per version, each with its nodes");
    for registration in &registrations {
        registry.deregister(registration).await.expect("deregister");
    }
}

async fn watch_reports_create_update_delete(registry: &dyn Registry, names: &Names) {
    let name = names.service("watch");
    let mut one = registry.watch(WatchOptions::service(&name)).await.expect("watch one service");
    let mut all = registry.watch(WatchOptions::default()).await.expect("watch every service");

    let created = service(&name, "1", "node-1");
    registry.register(&created, RegisterOptions::default()).await.expect("register");
    let mut updated = created.clone();
    updated.nodes[0].address = "127.0.0.1:7001".into();
    registry.register(&updated, RegisterOptions::default()).await.expect("register again, changed");
    registry.deregister(&updated).await.expect("deregister");

    let expected = [(Action::Create, &created), (Action::Update, &updated), (Action::Delete, &updated)];
    for (watcher, which) in [(&mut one, "service watch"), (&mut all, "all-services watch")] {
        for (action, service) in expected {
            let result = next_of(watcher.as_mut(), &name).await;
            assert_eq!((result.action, &result.service), (action, service), "{which}");
        }
    }

    one.stop();
    assert_eq!(one.next().await, Err(Error::WatchStopped), "next after stop");
}

async fn ttl_expiry_deletes(registry: &dyn Registry, names: &Names) {
    let expiring = service(&names.service("ttl"), "1", "node-1");
    let mut watcher = registry.watch(WatchOptions::service(&expiring.name)).await.expect("watch");
    registry.register(&expiring, RegisterOptions::with_ttl(SHORT_TTL)).await.expect("register with TTL");
    assert_eq!(registry.get_service(&expiring.name).await, Ok(vec![expiring.clone()]), "get before expiry");
    eventually("the registration expires", || async {
        registry.get_service(&expiring.name).await == Err(Error::NotFound)
    })
    .await;
    assert_eq!(next_of(watcher.as_mut(), &expiring.name).await.action, Action::Create);
    let deleted = next_of(watcher.as_mut(), &expiring.name).await;
    assert_eq!((deleted.action, deleted.service), (Action::Delete, expiring), "expiry is seen as delete");
}

async fn keep_registered_holds_then_deregisters(registry: &dyn Registry, names: &Names) {
    let kept = service(&names.service("keep"), "1", "node-1");
    let registration =
        registry.keep_registered(&kept, RegisterOptions::with_ttl(SHORT_TTL)).await.expect("keep_registered");
    assert!(registration.is_registered());
    // Three TTLs: the lease would have expired thrice without keep-alives.
    tokio::time::sleep(SHORT_TTL * 3).await;
    assert_eq!(registry.get_service(&kept.name).await, Ok(vec![kept.clone()]), "still registered after 3 TTLs");
    assert!(registration.is_registered());
    assert_eq!(registration.re_registrations(), 0, "the lease was kept, never lost");
    registration.shutdown().await.expect("shutdown deregisters");
    assert_eq!(registry.get_service(&kept.name).await, Err(Error::NotFound), "gone after shutdown");
}

async fn dropped_registration_deregisters(registry: &dyn Registry, names: &Names) {
    let dropped = service(&names.service("drop"), "1", "node-1");
    // A TTL far longer than the wait: only the drop can explain the service going.
    let long_ttl = WAIT * 6;
    let registration =
        registry.keep_registered(&dropped, RegisterOptions::with_ttl(long_ttl)).await.expect("keep_registered");
    drop(registration);
    eventually("a dropped registration deregisters", || async {
        registry.get_service(&dropped.name).await == Err(Error::NotFound)
    })
    .await;
}

async fn selector_follows_changes(registry: Arc<dyn Registry>, names: &Names) {
    let name = names.service("selector");
    let (a, b) = (service(&name, "1", "a"), service(&name, "2", "b"));
    for registration in [&a, &b] {
        registry.register(registration, RegisterOptions::default()).await.expect("register");
    }
    let selector = Selector::new(registry.clone(), Strategy::RoundRobin);
    let mut picked = Vec::new();
    for _ in 0..4 {
        picked.push(selector.select(&name).await.expect("select").id);
    }
    picked.sort();
    assert_eq!(picked, ["a", "a", "b", "b"], "round robin over both versions' nodes");

    registry.deregister(&a).await.expect("deregister a");
    eventually("the selector drops a deregistered node", || async {
        selector.nodes(&name).await.is_ok_and(|nodes| nodes == b.nodes)
    })
    .await;
    assert_eq!(selector.select(&name).await.map(|node| node.id), Ok("b".to_string()));

    registry.deregister(&b).await.expect("deregister b");
    eventually("the selector finds no node", || async { selector.select(&name).await == Err(Error::NotFound) }).await;

    let random = Selector::new(registry.clone(), Strategy::Random);
    registry.register(&a, RegisterOptions::default()).await.expect("register a again");
    assert_eq!(random.select(&name).await.map(|node| node.id), Ok("a".to_string()), "random with one node");
    registry.deregister(&a).await.expect("deregister a");
}

/// The next result of `watcher` about service `name` (others, from a shared registry, are
/// skipped), within [`WAIT`].
async fn next_of(watcher: &mut dyn Watcher, name: &str) -> super::WatchResult {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let next = tokio::time::timeout_at(deadline, watcher.next()).await;
        let result = next.unwrap_or_else(|_| panic!("no watch result about {name} within {WAIT:?}"));
        let result = result.unwrap_or_else(|error| panic!("watch about {name} failed: {error}"));
        if result.service.name == name {
            return result;
        }
    }
}

/// Waits until `condition` holds, checking every [`POLL_INTERVAL`], for at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {WAIT:?} waiting until {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
