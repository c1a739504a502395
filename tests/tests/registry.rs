//! The native registry (`keel.v1.Registry`, the `keel-client` library and `keelctl registry`)
//! over a real cluster: it passes the client's conformance suite, shares go-micro's etcd
//! layout both ways, fails over to a live member, and its leases behave under process death.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
// keel-client's types beside the protobuf ones of the same names.
use keel_client::registry::{
    GrpcRegistry, Node as ClientNode, RegisterOptions, Registry, Service as ClientService, WatchOptions,
};
use keel_proto::v1::registry_client::RegistryClient;
use keel_proto::v1::{
    DeregisterRequest, GetServiceRequest, ListServicesRequest, Node, RegisterRequest, Service, WatchRequest,
    WatchResponse,
};
use keel_tests::{
    etcdctl, grpc_channel, keelctl, keelctl_binary, metric, retry_unavailable, wait_for, wait_for_some, Background,
    Server, TestCluster, READY_TIMEOUT,
};
use tonic::transport::Channel;

/// go-micro's etcd registry prefix.
const PREFIX: &str = "/micro/registry/";

/// A service as go-micro's etcd registry writes it: one key per node, the service with that
/// one node as JSON.
const GO_MICRO_GREETER: &str = r#"{"name":"greeter","version":"1.0.0","metadata":null,"endpoints":null,"nodes":[{"id":"greeter-1","address":"127.0.0.1:9000","metadata":null}]}"#;

/// How long a registry watch may take to report a change.
const WATCH_TIMEOUT: Duration = Duration::from_secs(15);

async fn registry(cluster: &TestCluster, i: usize) -> RegistryClient<Channel> {
    RegistryClient::new(grpc_channel(&cluster.members[i].client_url).await)
}

fn service(name: &str, version: &str, node_id: &str, address: &str) -> Service {
    Service {
        name: name.into(),
        version: version.into(),
        nodes: vec![Node { id: node_id.into(), address: address.into(), metadata: HashMap::new(), ..Node::default() }],
        ..Default::default()
    }
}

/// A native registry watch, with its responses collected as they arrive.
struct RegistryWatch {
    responses: Arc<std::sync::Mutex<Vec<WatchResponse>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RegistryWatch {
    /// Starts a watch of `service` ("" = all) on member `i`; returns once the first response
    /// (no results, the start revision) has arrived.
    async fn start(cluster: &TestCluster, i: usize, service: &str) -> (RegistryWatch, i64) {
        let mut client = registry(cluster, i).await;
        let request = WatchRequest { service: service.into(), start_revision: 0 };
        let mut stream = client.watch(request).await.expect("registry watch").into_inner();
        let first = tokio::time::timeout(WATCH_TIMEOUT, stream.message())
            .await
            .expect("the first watch response in time")
            .expect("watch stream")
            .expect("watch stream open");
        assert!(first.results.is_empty(), "the first response carries no results: {first:?}");
        assert!(first.revision > 0, "the first response carries the start revision: {first:?}");
        let responses = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = responses.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(response)) = stream.message().await {
                sink.lock().expect("lock").push(response);
            }
        });
        (RegistryWatch { responses, task }, first.revision)
    }

    /// (action, service name, node id) of every result so far.
    fn actions(&self) -> Vec<(String, String, String)> {
        self.responses
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|r| r.results.iter())
            .map(|result| {
                let service = result.service.clone().unwrap_or_default();
                let node = service.nodes.first().map(|n| n.id.clone()).unwrap_or_default();
                (result.action.clone(), service.name, node)
            })
            .collect()
    }

    async fn wait_for_action(&self, action: &str, node: &str) -> Vec<(String, String, String)> {
        wait_for_some(WATCH_TIMEOUT, &format!("a {action} of {node}"), || {
            let actions = self.actions();
            let found = actions.iter().any(|(a, _, n)| a == action && n == node);
            async move { found.then_some(actions) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", self.actions()))
    }
}

impl Drop for RegistryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_registry_passes_the_conformance_suite() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let registry = GrpcRegistry::connect(&cluster.endpoints()).await.expect("connect");
    keel_client::registry::conformance::run(Arc::new(registry)).await;
}

/// How long one registry call may take when a member is down: trying the dead one first
/// and moving on must not eat a caller's whole deadline.
const FAILOVER_CALL_MAX: Duration = Duration::from_secs(5);

/// Runs `call`, failing if it takes longer than [`FAILOVER_CALL_MAX`].
async fn within<T>(what: &str, call: impl std::future::Future<Output = keel_client::Result<T>>) -> T {
    match tokio::time::timeout(FAILOVER_CALL_MAX, call).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("{what}: {error}"),
        Err(_) => panic!("{what}: took over {FAILOVER_CALL_MAX:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_fails_over_past_a_dead_member() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let dead = cluster.leader().await;
    cluster.kill9(dead);
    cluster.wait_ready().await;
    // The dead member first: every first attempt goes to it.
    let mut endpoints = vec![cluster.members[dead].client_url.clone()];
    endpoints.extend((0..3).filter(|i| *i != dead).map(|i| cluster.members[i].client_url.clone()));
    let registry = within("connect", GrpcRegistry::connect(&endpoints)).await;

    // Phase 1: every operation works with the first endpoint dead.
    let first = ClientService::with_node("failover", "1.0.0", ClientNode::new("failover-1", "127.0.0.1:9301"));
    let mut watcher = within("watch", registry.watch(WatchOptions::service("failover"))).await;
    let registration =
        within("keep_registered", registry.keep_registered(&first, RegisterOptions::with_ttl(Duration::from_secs(5))))
            .await;
    let created = within("the watch's first change", watcher.next()).await;
    assert_eq!((created.action.as_str(), created.service.nodes[0].id.as_str()), ("create", "failover-1"));
    let found = within("get_service", registry.get_service("failover")).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].nodes, first.nodes);
    let listed = within("list_services", registry.list_services()).await;
    assert!(listed.iter().any(|s| s.name == "failover"), "{listed:?}");

    // Phase 2: the dead member is back, and the member after it in the list dies: the
    // registration, the watch and new calls all move on.
    cluster.start_member(dead);
    cluster.wait_ready().await;
    let next = (0..3).find(|i| *i != dead).expect("a second member");
    cluster.kill9(next);
    cluster.wait_ready().await;
    let second = ClientService::with_node("failover", "1.0.0", ClientNode::new("failover-2", "127.0.0.1:9302"));
    within("register", registry.register(&second, RegisterOptions::default())).await;
    let created = within("the watch's change after the failover", watcher.next()).await;
    assert_eq!((created.action.as_str(), created.service.nodes[0].id.as_str()), ("create", "failover-2"));
    tokio::time::sleep(Duration::from_secs(5 + 1)).await;
    let found = within("get_service", registry.get_service("failover")).await;
    let mut nodes: Vec<&str> = found.iter().flat_map(|s| s.nodes.iter().map(|n| n.id.as_str())).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["failover-1", "failover-2"], "the kept registration lapsed across the failover");
    within("shutdown", registration.shutdown()).await;
    within("deregister", registry.deregister(&second)).await;
    let deleted = within("the watch's delete", watcher.next()).await;
    assert_eq!(deleted.action.as_str(), "delete");
}

/// The TTL of the re-registration test: long enough to see its remaining time fall and rise.
const REREGISTER_TTL_SECS: i64 = 5;

/// One of `member`'s `keel_forwarded_requests_total` counters.
fn forwarded(cluster: &TestCluster, member: usize, request: &str) -> f64 {
    let name = format!("keel_forwarded_requests_total{{request=\"{request}\"}}");
    metric(&cluster.members[member].client_url, &name).unwrap_or_else(|| panic!("{name} missing"))
}

/// The leader's view of `lease`'s remaining seconds.
async fn remaining_secs(leader: &mut etcd_client::Client, lease: i64) -> i64 {
    leader.lease_time_to_live(lease, None).await.expect("lease time-to-live").ttl()
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_again_through_a_follower_is_one_forwarded_write_that_renews_the_lease() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut at_follower = registry(&cluster, follower).await;
    let mut at_leader = cluster.member_client(leader).await;
    let request = RegisterRequest {
        service: Some(service("renewed", "1.0.0", "renewed-1", "127.0.0.1:9401")),
        ttl_seconds: REREGISTER_TTL_SECS,
    };

    // Phase 1: a registration through the follower; its lease's time runs down on the leader.
    let lease = retry_unavailable(|| {
        let (mut client, request) = (at_follower.clone(), request.clone());
        async move { client.register(request).await }
    })
    .await
    .expect("register")
    .lease_id;
    wait_for(READY_TIMEOUT, "the lease's time to run down", || {
        let mut leader = at_leader.clone();
        async move { remaining_secs(&mut leader, lease).await <= REREGISTER_TTL_SECS - 3 }
    })
    .await
    .expect("the lease's time runs down");

    // Phase 2: registering again through the follower costs one forwarded write (and the read
    // barrier's ReadIndex), no keep-alive, and gives the lease its whole TTL again on the leader.
    let before = ["write", "lease_keep_alive", "lease_time_to_live"].map(|kind| forwarded(&cluster, follower, kind));
    let again = at_follower.register(request.clone()).await.expect("register again").into_inner();
    let after = ["write", "lease_keep_alive", "lease_time_to_live"].map(|kind| forwarded(&cluster, follower, kind));
    assert_eq!(again.lease_id, lease, "the registration keeps its lease");
    assert_eq!(cluster.leader().await, leader, "the leader changed: the counts below would not mean anything");
    assert_eq!(
        [after[0] - before[0], after[1] - before[1], after[2] - before[2]],
        [1.0, 0.0, 0.0],
        "forwarded (write, keep-alive, time-to-live) for one re-registration"
    );
    let remaining = remaining_secs(&mut at_leader, lease).await;
    assert!(remaining >= REREGISTER_TTL_SECS - 1, "{remaining}s left after registering again");
}

#[tokio::test(flavor = "multi_thread")]
async fn go_micro_layout_is_shared_both_ways() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let mut etcd = cluster.client().await;
    let native = registry(&cluster, 1).await;
    let (watch, start) = RegistryWatch::start(&cluster, 2, "greeter").await;

    // Phase 1: a key written the way go-micro writes it is a registered service.
    etcd.put(format!("{PREFIX}greeter/greeter-1"), GO_MICRO_GREETER, None).await.expect("put");
    let actions = watch.wait_for_action("create", "greeter-1").await;
    assert_eq!(actions, [("create".to_string(), "greeter".to_string(), "greeter-1".to_string())]);
    let result = watch.responses.lock().expect("lock")[0].results[0].clone();
    assert!(result.revision > start, "{result:?}");
    let found = retry_unavailable(|| {
        let mut native = native.clone();
        async move { native.get_service(GetServiceRequest { name: "greeter".into() }).await }
    });
    let services = found.await.expect("get service").services;
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!((services[0].name.as_str(), services[0].version.as_str()), ("greeter", "1.0.0"));
    let nodes: Vec<(&str, &str)> = services[0].nodes.iter().map(|n| (n.id.as_str(), n.address.as_str())).collect();
    assert_eq!(nodes, [("greeter-1", "127.0.0.1:9000")]);

    // Phase 2: a native registration is go-micro's layout in etcd.
    let mut native_service = service("native", "2.0.0", "native-1", "127.0.0.1:9100");
    native_service.metadata.insert("zone".into(), "a".into());
    native_service.nodes[0].metadata.insert("weight".into(), "3".into());
    let request = RegisterRequest { service: Some(native_service.clone()), ttl_seconds: 30 };
    let registered = retry_unavailable(|| {
        let (mut native, request) = (native.clone(), request.clone());
        async move { native.register(request).await }
    });
    let registered = registered.await.expect("register");
    assert!(registered.lease_id != 0, "a TTL registration is on a lease: {registered:?}");
    let listed = etcd.get(PREFIX, Some(GetOptions::new().with_prefix())).await.expect("get --prefix");
    let keys: Vec<&str> = listed.kvs().iter().map(|kv| kv.key_str().unwrap_or_default()).collect();
    assert_eq!(keys, ["/micro/registry/greeter/greeter-1", "/micro/registry/native/native-1"]);
    let stored = &listed.kvs()[1];
    assert_eq!(stored.lease(), registered.lease_id);
    let value: serde_json::Value = serde_json::from_slice(stored.value()).expect("a JSON value");
    assert_eq!(value["name"], "native");
    assert_eq!(value["version"], "2.0.0");
    assert_eq!(value["metadata"], serde_json::json!({"zone": "a"}));
    assert_eq!(
        value["nodes"],
        serde_json::json!([{"id": "native-1", "address": "127.0.0.1:9100", "metadata": {"weight": "3"}}])
    );
    let all = retry_unavailable(|| {
        let mut native = native.clone();
        async move { native.list_services(ListServicesRequest {}).await }
    });
    let all = all.await.expect("list").services;
    let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["greeter", "native"]);

    // Phase 3: deregistering removes the key; deleting go-micro's key is a "delete".
    let deregistered = retry_unavailable(|| {
        let (mut native, service) = (native.clone(), native_service.clone());
        async move { native.deregister(DeregisterRequest { service: Some(service) }).await }
    });
    deregistered.await.expect("deregister");
    let left = etcd.get(format!("{PREFIX}native/"), Some(GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(left.count(), 0);
    let missing = retry_unavailable(|| {
        let mut native = native.clone();
        async move { native.get_service(GetServiceRequest { name: "native".into() }).await }
    });
    let missing = missing.await.expect_err("deregistered");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    etcd.delete(format!("{PREFIX}greeter/greeter-1"), None).await.expect("delete");
    let actions = watch.wait_for_action("delete", "greeter-1").await;
    assert_eq!(actions.len(), 2, "only greeter is watched: {actions:?}");
}

/// A `keelctl` that runs until stopped (`registry register`, `registry watch`) against `endpoints`.
fn keelctl_background(endpoints: &str, args: &[&str]) -> Background {
    let mut command = Command::new(keelctl_binary());
    command.arg("--endpoints").arg(endpoints).args(args);
    Background::spawn(command)
}

/// The `keelctl registry watch -o json` lines so far, parsed: (action, service name).
/// keelctl prints nothing when its watch starts: register a probe service (no lease) until
/// the watch reports it, so that later registrations are certainly seen. `watch_lines`
/// leaves the probe out.
async fn wait_until_watching(watch: &Background, native: &RegistryClient<Channel>) {
    wait_for(READY_TIMEOUT, "the registry watch to be running", || {
        let mut native = native.clone();
        let seen = watch.stdout().contains(PROBE);
        async move {
            let node = Node { id: "p".into(), address: "127.0.0.1:1".into(), ..Node::default() };
            let service = Service { name: PROBE.into(), version: "0".into(), nodes: vec![node], ..Service::default() };
            let _ = native.register(RegisterRequest { service: Some(service), ttl_seconds: 0 }).await;
            seen
        }
    })
    .await
    .expect("the watch reports a probe registration");
}

const PROBE: &str = "watch-probe";

fn watch_lines(watch: &Background) -> Vec<(String, String)> {
    watch
        .stdout()
        .lines()
        .filter(|line| !line.contains(PROBE))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| {
            (
                v["action"].as_str().unwrap_or_default().to_string(),
                v["service"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Whether `name` has a registered node; `None` while the cluster is unavailable.
async fn service_exists(client: &mut RegistryClient<Channel>, name: &str) -> Option<bool> {
    match client.get_service(GetServiceRequest { name: name.into() }).await {
        Ok(found) => Some(!found.into_inner().services.is_empty()),
        Err(status) if status.code() == tonic::Code::NotFound => Some(false),
        Err(status) if status.code() == tonic::Code::Unavailable => None,
        Err(status) => panic!("get service {name}: {status:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keelctl_registration_goes_with_its_process_and_survives_the_leader() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let leader = cluster.leader().await;
    let watched = (leader + 1) % 3;
    let native = registry(&cluster, watched).await;
    // The watcher talks to a member that is never killed.
    let watch = keelctl_background(&cluster.members[watched].client_url, &["-o", "json", "registry", "watch"]);
    wait_until_watching(&watch, &native).await;
    let register = |name: &str, ttl: &str| {
        let args = [
            "registry",
            "register",
            "--service",
            name,
            "--version",
            "1.0.0",
            "--node-id",
            &format!("{name}-1"),
            "--address",
            "127.0.0.1:9200",
            "--metadata",
            "zone=a",
            "--ttl",
            ttl,
        ];
        keelctl_background(&cluster.endpoints_csv(), &args)
    };

    // Phase 1: a registration whose process dies (SIGKILL, no deregister) goes when its
    // lease expires: within the TTL (3 s) and an election, with a delete event. The deadline
    // is wide for a loaded 2-core machine; that it goes at all, and only once, is the point.
    let doomed = register("doomed", "3");
    wait_for(READY_TIMEOUT, "the registration", || {
        let mut native = native.clone();
        async move { service_exists(&mut native, "doomed").await == Some(true) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", doomed.stderr()));
    let killed = doomed.kill();
    let killed_at = Instant::now();
    wait_for(Duration::from_secs(12), "the registration to expire", || {
        let mut native = native.clone();
        async move { service_exists(&mut native, "doomed").await == Some(false) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; keelctl printed {killed:?}\n{}", cluster.all_logs()));
    let printed = watch.wait_for_stdout(WATCH_TIMEOUT, "a delete", |out| out.contains("\"delete\"")).await;
    printed.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        watch_lines(&watch),
        [("create".to_string(), "doomed".to_string()), ("delete".to_string(), "doomed".to_string())]
    );
    eprintln!("registration gone {:?} after SIGKILL of its keelctl", killed_at.elapsed());

    // Phase 2: a registration kept alive by its keelctl outlives kill -9 of the leader.
    let kept = register("kept", "5");
    wait_for(READY_TIMEOUT, "the registration", || {
        let mut native = native.clone();
        async move { service_exists(&mut native, "kept").await == Some(true) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", kept.stderr()));
    cluster.kill9(leader);
    tokio::time::sleep(Duration::from_secs(5 + 2)).await;
    let still_there = wait_for_some(READY_TIMEOUT, "a registry read", || {
        let mut native = native.clone();
        async move {
            let found = native.get_service(GetServiceRequest { name: "kept".into() }).await;
            match found {
                Err(status) if status.code() == tonic::Code::NotFound => Some(false),
                other => other.ok().map(|_| true),
            }
        }
    })
    .await
    .expect("read");
    assert!(still_there, "the kept registration expired; keelctl: {:?}\n{}", kept.stderr(), cluster.all_logs());
    let lines = watch_lines(&watch);
    assert!(!lines.contains(&("delete".to_string(), "kept".to_string())), "{lines:?}");
    drop(kept);

    // Phase 3: a registration etcdctl wrote in go-micro's layout shows in `keelctl registry get`.
    let key = format!("{PREFIX}greeter/greeter-1");
    let put = tokio::task::block_in_place(|| etcdctl(&cluster.endpoints_csv(), &["put", &key, GO_MICRO_GREETER]));
    assert!(put.success, "{put:?}");
    let table = tokio::task::block_in_place(|| keelctl(&cluster, &["registry", "get", "greeter"]));
    assert_eq!(table.exited, Some(true), "{table:?}");
    for text in ["greeter", "1.0.0", "greeter-1", "127.0.0.1:9000"] {
        assert!(table.stdout.contains(text), "{text} missing from {table:?}");
    }
    let json = tokio::task::block_in_place(|| keelctl(&cluster, &["-o", "json", "registry", "get", "greeter"]));
    assert_eq!(json.exited, Some(true), "{json:?}");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    let node = serde_json::json!({"id": "greeter-1", "address": "127.0.0.1:9000"});
    assert!(contains_object(&value, &node), "{value}");
    let missing = tokio::task::block_in_place(|| keelctl(&cluster, &["registry", "get", "no-such-service"]));
    assert_eq!(missing.exited, Some(false), "{missing:?}");
    assert!(missing.stderr.starts_with("Error: "), "{missing:?}");

    // Phase 4: list shows it; deregister removes go-micro's key.
    let list = tokio::task::block_in_place(|| keelctl(&cluster, &["registry", "list"]));
    assert_eq!(list.exited, Some(true), "{list:?}");
    assert!(list.stdout.contains("greeter"), "{list:?}");
    let list = tokio::task::block_in_place(|| keelctl(&cluster, &["-o", "json", "registry", "list"]));
    let names: Vec<String> = list
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {list:?}")))
        .flat_map(|value| match value {
            serde_json::Value::Array(services) => services,
            service => vec![service],
        })
        .map(|service| service["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(names.contains(&"greeter".to_string()), "{list:?}");
    let args = ["registry", "deregister", "--service", "greeter", "--node-id", "greeter-1"];
    let deregistered = tokio::task::block_in_place(|| keelctl(&cluster, &args));
    assert_eq!(deregistered.exited, Some(true), "{deregistered:?}");
    let left =
        tokio::task::block_in_place(|| etcdctl(&cluster.endpoints_csv(), &["get", PREFIX, "--prefix", "--keys-only"]));
    assert!(!left.stdout.contains("greeter"), "{left:?}");
}

/// Whether `value` holds, anywhere, an object with every field of `wanted`.
fn contains_object(value: &serde_json::Value, wanted: &serde_json::Value) -> bool {
    let matches = match (value, wanted) {
        (serde_json::Value::Object(map), serde_json::Value::Object(fields)) => {
            fields.iter().all(|(k, v)| map.get(k) == Some(v))
        }
        _ => false,
    };
    matches
        || match value {
            serde_json::Value::Object(map) => map.values().any(|v| contains_object(v, wanted)),
            serde_json::Value::Array(items) => items.iter().any(|v| contains_object(v, wanted)),
            _ => false,
        }
}

/// What go-micro v2.9 (field order of v2.9 to v4.10.1) writes for a stock server: `{}` on
/// endpoint metadata, `[]` and nested `values`, `null` for nil, Go's HTML escapes (`\u003c`,
/// `\u003e`, `\u0026`, `\u2028`) and raw UTF-8 for the rest.
const GO_MICRO_V2: &str = r#"{"name":"shapes-v2","version":"1.0.0","metadata":{"owner":"café \u003cops\u003e \u0026 co"},"endpoints":[{"name":"Greeter.Hello","request":{"name":"HelloRequest","type":"HelloRequest","values":[{"name":"name","type":"string","values":null},{"name":"tags","type":"[]string","values":[]},{"name":"inner","type":"Inner","values":[{"name":"deep","type":"Deep","values":[]}]}]},"response":{"name":"HelloResponse","type":"HelloResponse","values":[]},"metadata":{}},{"name":"Greeter.Stream","request":null,"response":null,"metadata":{"stream":"true"}}],"nodes":[{"id":"shapes-v2-1","address":"127.0.0.1:9001","metadata":{"emoji":"😀","line":"a\u2028b"}}]}"#;

/// What go-micro v5.30 writes: `Node` and `Endpoint` fields in the order of v4.10.2 and later
/// (go-micro #2632 reordered them for struct alignment). Two nodes of one version.
const GO_MICRO_V5_NODE_1: &str = r#"{"name":"shapes-v5","version":"latest","metadata":{"a":"1"},"endpoints":[{"request":{"name":"Req","type":"Req","values":[]},"response":{"name":"Rsp","type":"Rsp","values":null},"metadata":{},"name":"S.M"}],"nodes":[{"metadata":{"registry":"etcd"},"id":"shapes-v5-1","address":"127.0.0.1:9101"}]}"#;
const GO_MICRO_V5_NODE_2: &str = r#"{"name":"shapes-v5","version":"latest","metadata":{"a":"1"},"endpoints":[{"request":{"name":"Req","type":"Req","values":[]},"response":{"name":"Rsp","type":"Rsp","values":null},"metadata":{},"name":"S.M"}],"nodes":[{"metadata":{"registry":"etcd"},"id":"shapes-v5-2","address":"127.0.0.1:9102"}]}"#;
/// The two v5 registrations as one service: the first's document, both nodes as stored.
const GO_MICRO_V5_GROUPED: &str = r#"{"name":"shapes-v5","version":"latest","metadata":{"a":"1"},"endpoints":[{"request":{"name":"Req","type":"Req","values":[]},"response":{"name":"Rsp","type":"Rsp","values":null},"metadata":{},"name":"S.M"}],"nodes":[{"metadata":{"registry":"etcd"},"id":"shapes-v5-1","address":"127.0.0.1:9101"},{"metadata":{"registry":"etcd"},"id":"shapes-v5-2","address":"127.0.0.1:9102"}]}"#;

/// Fields absent rather than null (a hand-written or non-Go registration).
const ABSENT_FIELDS: &str = r#"{"name":"shapes-absent","nodes":[{"id":"shapes-absent-1","address":"127.0.0.1:9004"}]}"#;

/// Fields go-micro does not know, with numbers Keel's types have no place for.
const EXTRA_FIELDS: &str = r#"{"name":"shapes-extra","version":"","metadata":null,"endpoints":null,"nodes":[{"id":"shapes-extra-1","address":"127.0.0.1:9003","metadata":null,"weight":1.50}],"ttl":30,"big":12345678901234567890,"ratio":-1.5e-7}"#;

/// (key, stored bytes) of every shape, written as go-micro writes them.
const SHAPES: [(&str, &str); 5] = [
    ("/micro/registry/shapes-v2/shapes-v2-1", GO_MICRO_V2),
    ("/micro/registry/shapes-v5/shapes-v5-1", GO_MICRO_V5_NODE_1),
    ("/micro/registry/shapes-v5/shapes-v5-2", GO_MICRO_V5_NODE_2),
    ("/micro/registry/shapes-absent/shapes-absent-1", ABSENT_FIELDS),
    ("/micro/registry/shapes-extra/shapes-extra-1", EXTRA_FIELDS),
];

/// (service, what reading it through Keel must encode to).
const SHAPES_READ: [(&str, &str); 4] = [
    ("shapes-v2", GO_MICRO_V2),
    ("shapes-v5", GO_MICRO_V5_GROUPED),
    ("shapes-absent", ABSENT_FIELDS),
    ("shapes-extra", EXTRA_FIELDS),
];

#[tokio::test(flavor = "multi_thread")]
async fn registrations_read_through_keel_re_encode_to_the_bytes_go_micro_wrote() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let mut etcd = cluster.client().await;
    let native = registry(&cluster, 0).await;
    let client = GrpcRegistry::connect(&cluster.endpoints()).await.expect("connect");
    let mut client_watch = client.watch(WatchOptions::default()).await.expect("keel-client watch");
    let keelctl_watch = keelctl_background(&cluster.endpoints_csv(), &["-o", "json", "registry", "watch"]);
    wait_until_watching(&keelctl_watch, &native).await;

    // Phase 1: go-micro's registrations, written as go-micro writes them.
    for (key, json) in SHAPES {
        etcd.put(key, json, None).await.expect("put");
    }

    // Phase 2: the native gRPC API carries each node's stored bytes.
    for (key, json) in SHAPES {
        let name = key.split('/').nth(3).expect("a registry key");
        let found = retry_unavailable(|| {
            let mut native = native.clone();
            async move { native.get_service(GetServiceRequest { name: name.into() }).await }
        });
        let services = found.await.expect("get service").services;
        let node = services.iter().flat_map(|service| &service.nodes).find(|node| key.ends_with(&node.id));
        assert_eq!(node.map(|node| node.stored_json.as_str()), Some(json), "{key}");
    }

    // Phase 3: keel-client's services encode to those bytes: get, list and watch.
    for (name, json) in SHAPES_READ {
        let services = client.get_service(name).await.expect("get_service");
        assert_eq!(services.len(), 1, "{services:?}");
        assert_eq!(services[0].to_json(), json, "get_service({name})");
    }
    let listed = client.list_services().await.expect("list_services");
    for (name, json) in SHAPES_READ {
        let service = listed.iter().find(|service| service.name == name).expect("listed");
        assert_eq!(service.to_json(), json, "list_services: {name}");
    }
    let mut created = Vec::new();
    while created.len() < SHAPES.len() {
        let result = tokio::time::timeout(WATCH_TIMEOUT, client_watch.next()).await.expect("a watch result in time");
        let result = result.expect("watch");
        if result.service.name.starts_with("shapes-") {
            assert_eq!(result.action.as_str(), "create");
            created.push(result.service.to_json());
        }
    }
    assert_eq!(created, SHAPES.map(|(_, json)| json.to_string()), "keel-client watch results");

    // Phase 4: `keelctl -o json` prints them: get, and watch.
    for (name, json) in SHAPES_READ {
        let printed = tokio::task::block_in_place(|| keelctl(&cluster, &["-o", "json", "registry", "get", name]));
        assert_eq!(printed.exited, Some(true), "{printed:?}");
        assert_eq!(printed.stdout, format!("[{json}]\n"), "keelctl registry get {name}");
    }
    let expected: Vec<String> =
        SHAPES.iter().map(|(_, json)| format!(r#"{{"action":"create","service":{json}}}"#)).collect();
    let printed = keelctl_watch
        .wait_for_stdout(WATCH_TIMEOUT, "every shape", |out| expected.iter().all(|line| out.contains(line.as_str())))
        .await;
    printed.unwrap_or_else(|e| panic!("keelctl registry watch: {e}"));
}
