//! The service registry as a typed view over the keyspace, in go-micro's etcd layout:
//! `/micro/registry/<service>/<node-id>` holds the JSON of the service with that one node,
//! exactly as go-micro's etcd registry writes it, so Go services on go-micro and Rust services
//! on `keel-client` see each other.
//!
//! Names follow `keel_client::registry::names`: Keel writes only names that are their own key
//! segment (no `/`, not `.` or `..`), and readers keep only registrations whose stored name is
//! the one asked for, since go-micro stores `a/b` under the key prefix of `a-b`. A node read
//! carries its stored bytes, so every view gives back what go-micro wrote.
//!
//! Pure: keys, values, validation and grouping. The API layer proposes and reads.

use keel_client::registry::names::{self, NameError};
use keel_client::registry::Service;

use crate::command::KeyValuePair;
use crate::limits::{NODES_PER_REGISTRATION_MAX, REGISTRATION_BYTES_MAX};
use crate::mvcc::{Event, EventKind};

/// go-micro's etcd registry prefix (one definition, shared with the client).
pub const PREFIX: &str = keel_client::registry::KEY_PREFIX;

/// Service names and node ids longer than this are refused (one definition, shared with the
/// client, whose in-memory registry applies the same rules; the reason is given there).
pub const NAME_BYTES_MAX: usize = keel_client::registry::NAME_BYTES_MAX;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A service name or node id that go-micro's layout would not keep as its own key segment
    /// (or that is empty or too long).
    #[error("registry: {0}")]
    InvalidName(#[from] NameError),
    #[error("registry: a registration needs at least one node")]
    NoNodes,
    #[error("registry: at most {NODES_PER_REGISTRATION_MAX} nodes per registration")]
    TooManyNodes,
    #[error("registry: ttl_seconds must not be negative")]
    NegativeTtl,
    #[error("registry: a registration is larger than {REGISTRATION_BYTES_MAX} bytes")]
    TooLarge,
    /// The node's key holds another registration (go-micro stores service `a/b` under the key
    /// of `a-b`, and node `n/1` under the key of `n-1`): registering would overwrite it.
    #[error(
        "registry: key {key:?} holds node {node_id:?} of service {service:?}; not overwriting another registration"
    )]
    KeyHeld { key: String, service: String, node_id: String },
    #[error("service not found")]
    NotFound,
}

/// go-micro's `nodePath`: '/' in either name becomes '-'.
pub fn node_key(service: &str, node_id: &str) -> Vec<u8> {
    keel_client::registry::node_key(service, node_id).into_bytes()
}

/// The prefix under which every node of `service` lives (with the trailing '/', so that
/// "greeter" does not match "greeter-admin").
pub fn service_prefix(service: &str) -> Vec<u8> {
    keel_client::registry::service_prefix(service).into_bytes()
}

/// Checks a Register request: names that are their own key segments, 1..=64 nodes.
pub fn validate_registration(service: &Service, ttl_secs: i64) -> Result<(), RegistryError> {
    validate_written_names(service)?;
    if ttl_secs < 0 {
        return Err(RegistryError::NegativeTtl);
    }
    if service.nodes.len() > NODES_PER_REGISTRATION_MAX {
        return Err(RegistryError::TooManyNodes);
    }
    Ok(())
}

/// Checks a Deregister request: names that are their own key segments, 1..=64 nodes.
pub fn validate_deregistration(service: &Service) -> Result<(), RegistryError> {
    validate_written_names(service)?;
    if service.nodes.len() > NODES_PER_REGISTRATION_MAX {
        return Err(RegistryError::TooManyNodes);
    }
    Ok(())
}

/// Checks the service name of a GetService or Watch: any name go-micro can register under
/// the prefix, `/` included (see [`is_of`]).
pub fn validate_lookup(name: &str) -> Result<(), RegistryError> {
    Ok(names::check_looked_up(names::SERVICE_NAME, name)?)
}

fn validate_written_names(service: &Service) -> Result<(), RegistryError> {
    names::check_written(names::SERVICE_NAME, &service.name)?;
    if service.nodes.is_empty() {
        return Err(RegistryError::NoNodes);
    }
    for node in &service.nodes {
        names::check_written(names::NODE_ID, &node.id)?;
    }
    Ok(())
}

/// Whether a registration read under the key prefix of `name` is of the service `name`:
/// go-micro stores `a/b` under the prefix of `a-b`, and neither may pass for the other.
pub fn is_of(registration: &Service, name: &str) -> bool {
    registration.name == name
}

/// Whether the value stored at the key of (`name`, `node_id`) is that very node's
/// registration, or something that is not a registration. `Err` names the other registration
/// it holds (go-micro's `a/b` node `n/1` is stored under the key of `a-b` node `n-1`).
pub fn holds_only(value: &[u8], key: &[u8], name: &str, node_id: &str) -> Result<(), RegistryError> {
    let Some(holder) = decode(value) else { return Ok(()) };
    match holder.nodes.as_slice() {
        [node] if is_of(&holder, name) && node.id == node_id => Ok(()),
        nodes => Err(RegistryError::KeyHeld {
            key: String::from_utf8_lossy(key).into_owned(),
            service: holder.name.clone(),
            node_id: nodes.first().map(|node| node.id.clone()).unwrap_or_default(),
        }),
    }
}

/// The (key, value) of each node of `service`, the value being the service with that node
/// only, as go-micro's `Register` writes it, or the node's stored document when it describes
/// exactly that (a registration read and registered again keeps its bytes).
pub fn registration_puts(service: &Service) -> Result<Vec<KeyValuePair>, RegistryError> {
    service
        .nodes
        .iter()
        .map(|node| {
            let one = Service { nodes: vec![node.clone()], ..service.clone() };
            // Go's json.Marshal byte for byte (it escapes <, > and &), as go-micro writes it.
            let value = one.to_json().into_bytes();
            if value.len() > REGISTRATION_BYTES_MAX {
                return Err(RegistryError::TooLarge);
            }
            Ok((node_key(&service.name, &node.id), value))
        })
        .collect()
}

/// A registry value; `None` for anything under the prefix that is not one (another tool's
/// key), which readers skip as go-micro does. Its node keeps the stored bytes.
pub fn decode(value: &[u8]) -> Option<Service> {
    Service::from_json(value).ok()
}

/// go-micro's grouping: one service per (name, version) with the nodes of every registration
/// of it, sorted by name then version, nodes by id (one definition, shared with the client).
pub use keel_client::registry::group;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// What a watcher of the registry reports for one change: go-micro's rules (a put that
/// created the key is `create`, any other put `update`, a delete `delete` with the service as
/// it was). `None` for changes that are not registrations.
pub fn watch_result(event: &Event, previous: Option<&[u8]>) -> Option<(Action, Service)> {
    match event.kind {
        EventKind::Put => {
            let action =
                if event.kv.create_revision == event.kv.mod_revision { Action::Create } else { Action::Update };
            Some((action, decode(&event.kv.value)?))
        }
        EventKind::Delete => Some((Action::Delete, decode(previous?)?)),
    }
}

#[cfg(test)]
mod tests {
    use keel_client::registry::Node;

    use super::*;

    fn service(name: &str, version: &str, nodes: &[&str]) -> Service {
        Service {
            name: name.into(),
            version: version.into(),
            nodes: nodes
                .iter()
                .map(|id| Node { id: id.to_string(), address: "127.0.0.1:1".into(), ..Node::default() })
                .collect(),
            ..Service::default()
        }
    }

    #[test]
    fn keys_follow_go_micro_layout() {
        assert_eq!(node_key("go.micro.srv/greeter", "n/1"), b"/micro/registry/go.micro.srv-greeter/n-1".to_vec());
        assert_eq!(service_prefix("greeter"), b"/micro/registry/greeter/".to_vec());
    }

    #[test]
    fn registrations_group_by_name_and_version() {
        let grouped = group([
            service("b", "1", &["b2"]),
            service("a", "1", &["a1"]),
            service("b", "1", &["b1"]),
            service("b", "2", &["b3"]),
        ]);
        let shape: Vec<(String, String, Vec<String>)> =
            grouped.into_iter().map(|s| (s.name, s.version, s.nodes.into_iter().map(|n| n.id).collect())).collect();
        let expected = vec![
            ("a".to_string(), "1".to_string(), vec!["a1".to_string()]),
            ("b".to_string(), "1".to_string(), vec!["b1".to_string(), "b2".to_string()]),
            ("b".to_string(), "2".to_string(), vec!["b3".to_string()]),
        ];
        assert_eq!(shape, expected);
    }

    #[test]
    fn each_node_is_written_as_the_service_with_that_node_only() {
        let puts = registration_puts(&service("greeter", "1.0", &["g1", "g2"])).expect("valid");
        assert_eq!(puts.len(), 2);
        let first = decode(&puts[0].1).expect("decodes");
        assert_eq!(first.nodes.len(), 1);
        assert_eq!(first.nodes[0].id, "g1");
    }

    #[test]
    fn bad_registrations_are_refused_with_a_reason() {
        let check = |service: Service, ttl_secs| validate_registration(&service, ttl_secs).map_err(|e| e.to_string());
        assert_eq!(check(service("", "1", &["x"]), 10), Err("registry: service name is empty".into()));
        assert_eq!(check(service("a", "1", &[]), 10), Err("registry: a registration needs at least one node".into()));
        assert_eq!(check(service("a", "1", &[""]), 10), Err("registry: node id is empty".into()));
        assert_eq!(check(service("a", "1", &["x"]), -1), Err("registry: ttl_seconds must not be negative".into()));
        let slash = check(service("pay/api", "1", &["x"]), 10).expect_err("'/' is refused");
        assert!(slash.starts_with(r#"registry: service name "pay/api" contains '/'"#), "{slash}");
        for step in [".", ".."] {
            let refused = check(service("a", "1", &[step]), 10).expect_err("a path step is refused");
            assert!(refused.starts_with(&format!("registry: node id {step:?} is a path step")), "{refused}");
            assert!(validate_deregistration(&service(step, "1", &["x"])).is_err());
            assert!(validate_lookup(step).is_err());
        }
        assert_eq!(validate_lookup("pay/api"), Ok(()));
    }

    #[test]
    fn a_read_keeps_only_the_service_asked_for() {
        let slashed = decode(br#"{"name":"pay/api","nodes":[{"id":"n1"}]}"#).expect("decodes");
        let dashed = decode(br#"{"name":"pay-api","nodes":[{"id":"n2"}]}"#).expect("decodes");
        // Both live under service_prefix("pay-api") == service_prefix("pay/api").
        assert_eq!(service_prefix("pay/api"), service_prefix("pay-api"));
        assert!(is_of(&slashed, "pay/api") && !is_of(&slashed, "pay-api"));
        assert!(is_of(&dashed, "pay-api") && !is_of(&dashed, "pay/api"));
    }
}
