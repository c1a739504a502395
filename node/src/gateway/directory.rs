//! The gateway's view of the registry: every registered node and every explicit route, kept
//! current by one registry watch, so that no request reads the registry. Readers take an
//! immutable snapshot; only the watch task writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keel_client::registry::{Action, Endpoint, Registry, Service, WatchOptions};

use super::route::Route;

/// How long the watch task waits before it lists and watches again after a failure.
const RESYNC_DELAY: Duration = Duration::from_secs(1);

/// One registered node of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub node_id: String,
    pub address: String,
    pub version: String,
}

/// The `host:port` to connect to for a registered node address: go-micro registers
/// `host:port`, some services an `http://host:port/` URL.
pub fn host_port(address: &str) -> &str {
    address.strip_prefix("http://").unwrap_or(address).trim_end_matches('/')
}

/// What the registry held when it was last seen.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Service name → its nodes, in node id order.
    pub services: HashMap<String, Vec<Instance>>,
    /// Every explicit route, in service name order.
    pub routes: Vec<Route>,
}

impl Snapshot {
    pub fn instances(&self, service: &str) -> &[Instance] {
        self.services.get(service).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The current snapshot; cheap to read from any task.
#[derive(Debug, Default)]
pub struct Directory {
    // std RwLock: held only to clone or swap an Arc, never across an await.
    current: RwLock<Arc<Snapshot>>,
    /// Whether the registry has been read once: until then "not found" would be a lie.
    synced: AtomicBool,
}

impl Directory {
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut current) => *current = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        self.synced.store(true, Ordering::Release);
    }
}

/// Keeps `directory` in step with the registry until the task is dropped; `on_change` is told
/// of each node that registers (so a node ejected earlier gets its chance again).
pub async fn follow(registry: Arc<dyn Registry>, directory: Arc<Directory>, on_register: impl Fn(&str)) {
    loop {
        if let Err(error) = sync(registry.as_ref(), &directory, &on_register).await {
            tracing::warn!("the registry watch broke ({error}); listing again in {RESYNC_DELAY:?}");
        }
        tokio::time::sleep(RESYNC_DELAY).await;
    }
}

/// Registrations keyed by (service, node id): one go-micro registration each.
type Registrations = BTreeMap<(String, String), Service>;

async fn sync(registry: &dyn Registry, directory: &Directory, on_register: &impl Fn(&str)) -> keel_client::Result<()> {
    // The watch first, then the list: a change between the two is in both, and applying a
    // registration or a removal twice is harmless; one made before the watch is in the list.
    let mut watcher = registry.watch(WatchOptions::default()).await?;
    let mut registrations = registrations_of(registry.list_services().await?);
    directory.publish(snapshot_of(&registrations));
    loop {
        let change = watcher.next().await?;
        let Some(node) = change.service.nodes.first() else { continue };
        let key = (change.service.name.clone(), node.id.clone());
        match change.action {
            Action::Create | Action::Update => {
                on_register(&node.address);
                registrations.insert(key, change.service);
            }
            Action::Delete => {
                registrations.remove(&key);
            }
        }
        directory.publish(snapshot_of(&registrations));
    }
}

/// The snapshot of services as a registry lists them (`keelctl gateway routes`).
pub fn snapshot_from(services: Vec<Service>) -> Snapshot {
    snapshot_of(&registrations_of(services))
}

fn registrations_of(services: Vec<Service>) -> Registrations {
    let mut registrations = Registrations::new();
    for service in services {
        for node in &service.nodes {
            let key = (service.name.clone(), node.id.clone());
            registrations.insert(key, Service { nodes: vec![node.clone()], ..service.clone() });
        }
    }
    registrations
}

fn snapshot_of(registrations: &Registrations) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let mut routed: BTreeMap<(&str, &str), &Endpoint> = BTreeMap::new();
    for ((name, node_id), service) in registrations {
        for node in &service.nodes {
            let instance =
                Instance { node_id: node_id.clone(), address: node.address.clone(), version: service.version.clone() };
            snapshot.services.entry(name.clone()).or_default().push(instance);
        }
        for endpoint in &service.endpoints {
            // Every node of a service registers the same endpoints: one route each.
            routed.entry((name, &endpoint.name)).or_insert(endpoint);
        }
    }
    snapshot.routes = routed
        .into_iter()
        .filter_map(|((service, name), endpoint)| Route::from_metadata(service, name, &endpoint.metadata))
        .collect();
    snapshot
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_address_is_connected_to_as_host_port() {
        for address in ["127.0.0.1:8080", "http://127.0.0.1:8080", "http://127.0.0.1:8080/", "127.0.0.1:8080/"] {
            assert_eq!(super::host_port(address), "127.0.0.1:8080", "{address}");
        }
    }

    use super::*;
    use keel_client::registry::MemoryRegistry;
    use keel_client::registry::{Node, RegisterOptions};

    async fn until(directory: &Directory, what: &str, condition: impl Fn(&Snapshot) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition(&directory.snapshot()) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_directory_follows_registrations_and_routes() {
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::new());
        let mut first = Service::with_node("greeter", "1.0.0", Node::new("a", "127.0.0.1:1"));
        registry.register(&first, RegisterOptions::default()).await.expect("register");
        let directory = Arc::new(Directory::default());
        let follower = tokio::spawn(follow(registry.clone(), directory.clone(), |_| {}));
        until(&directory, "the listed node", |s| s.instances("greeter").len() == 1).await;

        let mut endpoint = Endpoint { name: "Say.Hello".into(), ..Default::default() };
        endpoint.metadata.insert("path".into(), "/hi".into());
        let second = Service {
            endpoints: vec![endpoint],
            ..Service::with_node("greeter", "1.0.0", Node::new("b", "127.0.0.1:2"))
        };
        registry.register(&second, RegisterOptions::default()).await.expect("register");
        until(&directory, "the watched node and its route", |s| {
            s.instances("greeter").len() == 2 && s.routes.len() == 1
        })
        .await;

        first.nodes[0].address = "127.0.0.1:3".into();
        registry.deregister(&second).await.expect("deregister");
        until(&directory, "the route to go with its node", |s| s.routes.is_empty()).await;
        assert_eq!(directory.snapshot().instances("greeter")[0].address, "127.0.0.1:1");
        follower.abort();
    }
}
