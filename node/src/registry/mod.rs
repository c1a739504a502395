//! The service registry as a typed view over the keyspace, in go-micro's etcd layout:
//! `/micro/registry/<service>/<node-id>` holds the JSON of the service with that one node,
//! exactly as go-micro's etcd registry writes it, so Go services on go-micro and Rust services
//! on `keel-client` see each other.
//!
//! Pure: keys, values, validation and grouping. The API layer proposes and reads.

use std::collections::BTreeMap;

use keel_client::registry::{Node, Service};

use crate::command::KeyValuePair;
use crate::mvcc::{Event, EventKind};

/// go-micro's etcd registry prefix (one definition, shared with the client).
pub const PREFIX: &str = keel_client::registry::KEY_PREFIX;

/// Service names and node ids longer than this are refused: they are path segments of keys
/// that every watcher of the registry matches against.
pub const NAME_BYTES_MAX: usize = 256;

/// One node's registration (the service's JSON with that node) may be at most this large:
/// endpoints and metadata fit easily; anything bigger belongs in the Store.
pub const REGISTRATION_BYTES_MAX: usize = 64 * 1024;

/// Nodes one Register call may carry (each one key of one atomic command).
pub const NODES_PER_REGISTRATION_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry: service name is empty")]
    EmptyName,
    #[error("registry: a registration needs at least one node")]
    NoNodes,
    #[error("registry: at most {NODES_PER_REGISTRATION_MAX} nodes per registration")]
    TooManyNodes,
    #[error("registry: node id is empty")]
    EmptyNodeId,
    #[error("registry: {what} is longer than {NAME_BYTES_MAX} bytes")]
    NameTooLong { what: &'static str },
    #[error("registry: ttl_seconds must not be negative")]
    NegativeTtl,
    #[error("registry: a registration is larger than {REGISTRATION_BYTES_MAX} bytes")]
    TooLarge,
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

/// The end of the key range starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Checks a Register request: a name, 1..=64 nodes each with an id, names within bounds.
pub fn validate_registration(service: &Service, ttl_secs: i64) -> Result<(), RegistryError> {
    validate_name(service)?;
    if ttl_secs < 0 {
        return Err(RegistryError::NegativeTtl);
    }
    if service.nodes.is_empty() {
        return Err(RegistryError::NoNodes);
    }
    if service.nodes.len() > NODES_PER_REGISTRATION_MAX {
        return Err(RegistryError::TooManyNodes);
    }
    validate_node_ids(service)
}

/// Checks a Deregister request: a name and node ids.
pub fn validate_deregistration(service: &Service) -> Result<(), RegistryError> {
    validate_name(service)?;
    if service.nodes.is_empty() {
        return Err(RegistryError::NoNodes);
    }
    validate_node_ids(service)
}

pub fn validate_name(service: &Service) -> Result<(), RegistryError> {
    if service.name.is_empty() {
        return Err(RegistryError::EmptyName);
    }
    if service.name.len() > NAME_BYTES_MAX {
        return Err(RegistryError::NameTooLong { what: "service name" });
    }
    Ok(())
}

fn validate_node_ids(service: &Service) -> Result<(), RegistryError> {
    for node in &service.nodes {
        if node.id.is_empty() {
            return Err(RegistryError::EmptyNodeId);
        }
        if node.id.len() > NAME_BYTES_MAX {
            return Err(RegistryError::NameTooLong { what: "node id" });
        }
    }
    Ok(())
}

/// The (key, value) of each node of `service`, the value being the service with that node
/// only, as go-micro's `Register` writes it.
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
/// key), which readers skip as go-micro does.
pub fn decode(value: &[u8]) -> Option<Service> {
    Service::from_json(value).ok()
}

/// go-micro's grouping: one service per (name, version) with the nodes of every registration
/// of it, sorted by name then version, nodes by id.
pub fn group(registrations: impl IntoIterator<Item = Service>) -> Vec<Service> {
    let mut grouped: BTreeMap<(String, String), Service> = BTreeMap::new();
    for registration in registrations {
        let key = (registration.name.clone(), registration.version.clone());
        match grouped.get_mut(&key) {
            Some(service) => service.nodes.extend(registration.nodes),
            None => {
                grouped.insert(key, registration);
            }
        }
    }
    let mut services: Vec<Service> = grouped.into_values().collect();
    for service in &mut services {
        service.nodes.sort_by(|a: &Node, b: &Node| a.id.cmp(&b.id));
    }
    services
}

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
        assert_eq!(prefix_end(b"/micro/registry/"), b"/micro/registry0".to_vec());
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
        assert_eq!(validate_registration(&service("", "1", &["x"]), 10), Err(RegistryError::EmptyName));
        assert_eq!(validate_registration(&service("a", "1", &[]), 10), Err(RegistryError::NoNodes));
        assert_eq!(validate_registration(&service("a", "1", &[""]), 10), Err(RegistryError::EmptyNodeId));
        assert_eq!(validate_registration(&service("a", "1", &["x"]), -1), Err(RegistryError::NegativeTtl));
    }
}
