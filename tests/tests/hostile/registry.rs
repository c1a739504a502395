//! The registry's names: go-micro's key layout must never let two distinct services or nodes share a key.
//!
//! go-micro's etcd registry stores a node at `path.Join(prefix, service with '/'→'-', id with
//! '/'→'-')`: `pay/api` and `pay-api` share a key prefix, a node id `..` escapes its service.
//! Before the fix the native API wrote such names onto another name's key, returned go-micro's
//! `pay/api` as `pay-api`, and overwrote or deleted the other's registration.

use std::collections::HashMap;
use std::time::Duration;

use keel_proto::v1::registry_client::RegistryClient;
use keel_proto::v1::{
    DeregisterRequest, GetServiceRequest, ListServicesRequest, Node, RegisterRequest, Service, WatchRequest,
    WatchResponse,
};
use keel_tests::{grpc_channel, retry_unavailable, Server, TestCluster};
use tonic::transport::Channel;
use tonic::Code;

/// How long a watch may take to report a change.
const WATCH_TIMEOUT: Duration = Duration::from_secs(15);

/// go-micro's JSON of service `name` with node `id`, as its etcd registry writes it.
fn go_micro_json(name: &str, id: &str) -> String {
    format!(
        r#"{{"name":"{name}","version":"1","metadata":null,"endpoints":null,"nodes":[{{"id":"{id}","address":"127.0.0.1:9500","metadata":null}}]}}"#
    )
}

fn service(name: &str, id: &str) -> Service {
    Service {
        name: name.into(),
        version: "1".into(),
        nodes: vec![Node {
            id: id.into(),
            address: "127.0.0.1:9600".into(),
            metadata: HashMap::new(),
            ..Node::default()
        }],
        ..Service::default()
    }
}

async fn register(native: &RegistryClient<Channel>, service: Service) -> Result<(), tonic::Status> {
    retry_unavailable(|| {
        let (mut native, service) = (native.clone(), service.clone());
        async move { native.register(RegisterRequest { service: Some(service), ttl_seconds: 0 }).await }
    })
    .await
    .map(|_| ())
}

async fn deregister(native: &RegistryClient<Channel>, service: Service) -> Result<(), tonic::Status> {
    retry_unavailable(|| {
        let (mut native, service) = (native.clone(), service.clone());
        async move { native.deregister(DeregisterRequest { service: Some(service) }).await }
    })
    .await
    .map(|_| ())
}

/// (service name, node id) of every node GetService(`name`) returns; empty for NOT_FOUND.
async fn nodes_of(native: &RegistryClient<Channel>, name: &str) -> Vec<(String, String)> {
    let found = retry_unavailable(|| {
        let mut native = native.clone();
        async move { native.get_service(GetServiceRequest { name: name.into() }).await }
    });
    match found.await {
        Ok(found) => found
            .services
            .iter()
            .flat_map(|service| service.nodes.iter().map(|node| (service.name.clone(), node.id.clone())))
            .collect(),
        Err(status) if status.code() == Code::NotFound => Vec::new(),
        Err(status) => panic!("get_service({name}): {status:?}"),
    }
}

fn pair(name: &str, id: &str) -> (String, String) {
    (name.to_string(), id.to_string())
}

/// Starts a native watch of `service` and returns its stream after the first response.
async fn watch(native: &RegistryClient<Channel>, service: &str) -> tonic::Streaming<WatchResponse> {
    let mut native = native.clone();
    let request = WatchRequest { service: service.into(), start_revision: 0 };
    let mut stream = native.watch(request).await.expect("watch").into_inner();
    let first = tokio::time::timeout(WATCH_TIMEOUT, stream.message()).await.expect("in time");
    assert!(first.expect("watch stream").expect("open").results.is_empty());
    stream
}

/// The next result's (action, service name, node id).
async fn next_result(stream: &mut tonic::Streaming<WatchResponse>) -> (String, String, String) {
    loop {
        let response = tokio::time::timeout(WATCH_TIMEOUT, stream.message()).await.expect("a result in time");
        let response = response.expect("watch stream").expect("open");
        if let Some(result) = response.results.into_iter().next() {
            let service = result.service.unwrap_or_default();
            let node = service.nodes.first().map(|node| node.id.clone()).unwrap_or_default();
            return (result.action, service.name, node);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn names_go_micro_would_move_onto_another_key_are_refused() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let native = RegistryClient::new(grpc_channel(&cluster.members[0].client_url).await);
    let mut etcd = cluster.client().await;

    // Attack: names that go-micro's layout maps onto another name's key or out of the prefix.
    let cases = [
        (service("pay/api", "n1"), "service name \"pay/api\" contains '/'"),
        (service(".", "n1"), "service name \".\" is a path step"),
        (service("..", "n1"), "service name \"..\" is a path step"),
        (service("pay", "a/b"), "node id \"a/b\" contains '/'"),
        (service("pay", "."), "node id \".\" is a path step"),
        (service("pay", ".."), "node id \"..\" is a path step"),
    ];
    for (bad, words) in cases {
        let what = format!("{}/{}", bad.name, bad.nodes[0].id);
        let refused = register(&native, bad.clone()).await.expect_err(&what);
        assert_eq!(refused.code(), Code::InvalidArgument, "register {what}: {refused:?}");
        assert!(refused.message().starts_with(&format!("registry: {words}")), "register {what}: {refused:?}");
        let refused = deregister(&native, bad).await.expect_err(&what);
        assert_eq!(refused.code(), Code::InvalidArgument, "deregister {what}: {refused:?}");
    }
    for bad in [".", ".."] {
        let mut client = native.clone();
        let refused = client.get_service(GetServiceRequest { name: bad.into() }).await.expect_err(bad);
        assert_eq!(refused.code(), Code::InvalidArgument, "get {bad}: {refused:?}");
        let refused = client.watch(WatchRequest { service: bad.into(), start_revision: 0 }).await.expect_err(bad);
        assert_eq!(refused.code(), Code::InvalidArgument, "watch {bad}: {refused:?}");
    }

    // Afterwards: nothing was written anywhere under /micro.
    let written = etcd.get("/micro", Some(etcd_client::GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(written.count(), 0, "{:?}", written.kvs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slash_name_never_passes_for_its_dashed_twin() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let native = RegistryClient::new(grpc_channel(&cluster.members[0].client_url).await);
    let mut etcd = cluster.client().await;
    let mut dashed_watch = watch(&native, "pay-api").await;
    let mut slashed_watch = watch(&native, "pay/api").await;

    // Attack: go-micro's "pay/api" (under go-micro's key for it) beside Keel's "pay-api".
    register(&native, service("pay-api", "keel-1")).await.expect("register pay-api");
    etcd.put("/micro/registry/pay-api/go-1", go_micro_json("pay/api", "go-1"), None).await.expect("put");

    // Afterwards: each name finds only its own nodes, in get, list and watch.
    assert_eq!(nodes_of(&native, "pay-api").await, [pair("pay-api", "keel-1")]);
    assert_eq!(nodes_of(&native, "pay/api").await, [pair("pay/api", "go-1")]);
    let listed = retry_unavailable(|| {
        let mut native = native.clone();
        async move { native.list_services(ListServicesRequest {}).await }
    });
    let mut names: Vec<String> = listed.await.expect("list").services.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["pay-api", "pay/api"]);
    let create = |name: &str, id: &str| ("create".to_string(), name.to_string(), id.to_string());
    assert_eq!(next_result(&mut dashed_watch).await, create("pay-api", "keel-1"));
    assert_eq!(next_result(&mut slashed_watch).await, create("pay/api", "go-1"));
    // A later change of each is seen by its own watch only (the first result of each watch
    // after the ones above must be its own).
    etcd.put("/micro/registry/pay-api/go-2", go_micro_json("pay/api", "go-2"), None).await.expect("put");
    register(&native, service("pay-api", "keel-2")).await.expect("register pay-api");
    assert_eq!(next_result(&mut dashed_watch).await, create("pay-api", "keel-2"));
    assert_eq!(next_result(&mut slashed_watch).await, create("pay/api", "go-2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn another_registration_on_the_same_key_is_never_overwritten_nor_deleted() {
    let cluster = TestCluster::start(Server::Keel, 1).await;
    let native = RegistryClient::new(grpc_channel(&cluster.members[0].client_url).await);
    let mut etcd = cluster.client().await;

    // Attack: go-micro's "pay/api" node "n1" and "shop" node "n/1" hold the keys that Keel's
    // "pay-api" node "n1" and "shop" node "n-1" map to.
    let keys = [
        ("/micro/registry/pay-api/n1", go_micro_json("pay/api", "n1"), service("pay-api", "n1")),
        ("/micro/registry/shop/n-1", go_micro_json("shop", "n/1"), service("shop", "n-1")),
    ];
    for (key, json, _) in &keys {
        etcd.put(*key, json.as_str(), None).await.expect("put");
    }
    for (key, json, colliding) in keys {
        let refused = register(&native, colliding.clone()).await.expect_err(key);
        assert_eq!(refused.code(), Code::FailedPrecondition, "{key}: {refused:?}");
        assert!(refused.message().contains("not overwriting another registration"), "{refused:?}");
        deregister(&native, colliding).await.expect("deregistering a node not registered is no error");

        // Afterwards: go-micro's registration is there, byte for byte.
        let stored = etcd.get(key, None).await.expect("get");
        assert_eq!(stored.kvs().first().map(|kv| kv.value()), Some(json.as_bytes()), "{key}");
    }

    // Keel's own nodes are still registered and deregistered as before.
    register(&native, service("pay-api", "n2")).await.expect("register");
    deregister(&native, service("pay-api", "n2")).await.expect("deregister");
    assert_eq!(nodes_of(&native, "pay-api").await, Vec::<(String, String)>::new());
}
