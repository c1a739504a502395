//! The registry's data types, shaped exactly like go-micro's `registry.Service` family so that
//! the JSON stored under `/micro/registry/...` is what go-micro's etcd plugin reads and writes.
//!
//! Keel writes the typed fields as go-micro v2.9 to v4.10.1 does: a nil map or slice as `null`,
//! fields in the struct's declaration order; the serde attributes below reproduce both.
//! Decoding accepts `null`, a missing field or a value. A service read from the cluster also
//! keeps the documents it was decoded from ([`Node::stored_json`]) and encodes to those bytes
//! while its typed fields still match them (see [`super::stored`]). Use [`super::go_json`] to
//! encode: it also escapes `<`, `>`, `&`, U+2028 and U+2029 as Go does.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// One version of a service and the nodes running it. In the registry's keyspace each node is
/// stored separately, as a `Service` holding exactly that one node.
///
/// Serializing a service read from the cluster gives back the stored bytes (go-micro's `{}`
/// and `[]`, its field order, its escapes) for as long as its fields are unchanged; a changed
/// or new service is encoded from its fields. Only JSON serializers (serde_json, [`go_json`])
/// are supported: the stored bytes are emitted as a raw JSON value.
///
/// [`go_json`]: super::go_json
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Service {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
    /// BTreeMap: Go writes map keys sorted, and so does a BTreeMap.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoints: Vec<Endpoint>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub nodes: Vec<Node>,
}

/// One running instance of a service.
///
/// Equality compares the go-micro fields only, not [`Node::stored_json`]: two nodes are the
/// same node whatever bytes they were read from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Node {
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub address: String,
    #[serde(default, serialize_with = "empty_map_as_null", deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    /// The registration this node was read from, exactly as stored: go-micro's JSON of the
    /// service with this one node. Set by every read and watch of a registry; `None` on nodes
    /// built in code. Lets the service encode to the stored bytes (see [`Service`]) and
    /// registering it again keep them. Not part of the JSON, nor of equality.
    #[serde(skip)]
    pub stored_json: Option<Arc<str>>,
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        // stored_json is where the node came from, not what it is.
        self.id == other.id && self.address == other.address && self.metadata == other.metadata
    }
}

impl Eq for Node {}

/// The typed fields of a [`Service`] in go-micro's order, as `json.Marshal` writes them.
#[derive(Serialize)]
struct TypedService<'a> {
    name: &'a str,
    version: &'a str,
    #[serde(serialize_with = "borrowed_map_as_null")]
    metadata: &'a BTreeMap<String, String>,
    #[serde(serialize_with = "borrowed_slice_as_null")]
    endpoints: &'a [Endpoint],
    #[serde(serialize_with = "borrowed_slice_as_null")]
    nodes: &'a [Node],
}

fn borrowed_map_as_null<S: Serializer>(map: &&BTreeMap<String, String>, serializer: S) -> Result<S::Ok, S::Error> {
    empty_map_as_null(map, serializer)
}

fn borrowed_slice_as_null<S: Serializer, T: Serialize>(items: &&[T], serializer: S) -> Result<S::Ok, S::Error> {
    empty_vec_as_null(items, serializer)
}

impl Serialize for Service {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The stored bytes when they still describe this service; they are valid JSON (they
        // decoded), so from_string fails only if that is broken, and then the fields are used.
        if let Some(raw) = super::stored::exact_json(self).and_then(|json| RawValue::from_string(json).ok()) {
            return raw.serialize(serializer);
        }
        TypedService {
            name: &self.name,
            version: &self.version,
            metadata: &self.metadata,
            endpoints: &self.endpoints,
            nodes: &self.nodes,
        }
        .serialize(serializer)
    }
}

/// One RPC method a service exposes, as go-micro describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub request: Option<Value>,
    #[serde(default)]
    pub response: Option<Value>,
    #[serde(default, serialize_with = "empty_map_as_null", deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
}

/// A request or response type of an [`Endpoint`], with its fields as nested values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, serialize_with = "empty_vec_as_null", deserialize_with = "null_as_default")]
    pub values: Vec<Value>,
}

impl Service {
    /// A service with one node and nothing else, e.g. for `deregister`, which reads only the
    /// service name and node ids.
    pub fn with_node(name: impl Into<String>, version: impl Into<String>, node: Node) -> Service {
        Service { name: name.into(), version: version.into(), nodes: vec![node], ..Service::default() }
    }

    /// This service as go-micro's JSON, byte for byte what Go's `json.Marshal` writes.
    pub fn to_json(&self) -> String {
        match super::go_json::to_string(self) {
            Ok(json) => json,
            // Every map in Service has string keys, the only way serde_json can fail.
            Err(error) => unreachable!("a registry Service always encodes as JSON: {error}"),
        }
    }

    /// Decodes go-micro's JSON of a service (`null` and missing fields are empty). A service
    /// with exactly one node is a registration as stored: its node keeps `json`
    /// ([`Node::stored_json`]), so [`Service::to_json`] gives back these very bytes.
    pub fn from_json(json: &[u8]) -> serde_json::Result<Service> {
        let mut service: Service = serde_json::from_slice(json)?;
        if let [node] = service.nodes.as_mut_slice() {
            // None only if the bytes were not UTF-8 inside a field serde_json skipped: then
            // the typed fields are all there is.
            node.stored_json = std::str::from_utf8(json).ok().map(Arc::from);
        }
        Ok(service)
    }
}

impl Node {
    /// A node without metadata.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Node {
        Node { id: id.into(), address: address.into(), ..Node::default() }
    }
}

/// Where go-micro's etcd registry (and Keel) keeps registrations.
pub const KEY_PREFIX: &str = "/micro/registry/";

/// The etcd key holding one node of a service: `/micro/registry/<service>/<node id>`, with `/`
/// in either part replaced by `-` as go-micro does, so a key has exactly two segments. This is
/// go-micro's `path.Join` for every name [`super::names::check_written`] accepts (Keel writes
/// no other); for `.`, `..` or empty parts go-micro's key would differ.
pub fn node_key(service_name: &str, node_id: &str) -> String {
    format!("{KEY_PREFIX}{}/{}", service_name.replace('/', "-"), node_id.replace('/', "-"))
}

/// The etcd prefix of every node of one service (see [`node_key`]): go-micro's
/// `servicePath(name) + "/"`. Names with `/` share it with their dashed twin, so readers also
/// check the stored name ([`Service::name`]).
pub fn service_prefix(service_name: &str) -> String {
    format!("{KEY_PREFIX}{}/", service_name.replace('/', "-"))
}

/// go-micro's grouping of registrations: one service per (name, version) with the nodes of
/// every registration of it, sorted by name then version, nodes by id. The service-level
/// fields (metadata, endpoints) are those of the registration with the smallest node id, the
/// first in key order, as go-micro's GetService takes the first it reads.
pub fn group(registrations: impl IntoIterator<Item = Service>) -> Vec<Service> {
    let mut registrations: Vec<Service> = registrations.into_iter().collect();
    // Stable: registrations with no node (not written by go-micro) keep their order.
    registrations.sort_by_cached_key(|service| service.nodes.first().map(|node| node.id.clone()));
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
        // Stable, so a registration of several nodes keeps its first node first.
        service.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    }
    services
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn empty_map_as_null<S: Serializer>(map: &BTreeMap<String, String>, serializer: S) -> Result<S::Ok, S::Error> {
    if map.is_empty() {
        serializer.serialize_none()
    } else {
        map.serialize(serializer)
    }
}

fn empty_vec_as_null<S: Serializer, T: Serialize>(items: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    if items.is_empty() {
        serializer.serialize_none()
    } else {
        items.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `json` (as go-micro writes it) decodes and re-encodes to the same bytes.
    fn check_round_trip(json: &str) -> Service {
        let service: Service = serde_json::from_str(json).expect("go-micro JSON decodes");
        assert_eq!(service.to_json(), json);
        service
    }

    #[test]
    fn go_micro_json_round_trips_byte_exactly() {
        // What go-micro v4's etcd plugin stores for a service with one handler.
        let json = r#"{"name":"helloworld","version":"latest","metadata":null,"endpoints":[{"name":"Helloworld.Call","request":{"name":"CallRequest","type":"CallRequest","values":[{"name":"name","type":"string","values":null}]},"response":{"name":"CallResponse","type":"CallResponse","values":[{"name":"msg","type":"string","values":null}]},"metadata":{"endpoint":"Helloworld.Call","handler":"rpc","method":"POST","path":"/helloworld/call"}}],"nodes":[{"id":"helloworld-6b1f9a3c","address":"10.0.0.7:41521","metadata":{"broker":"http","protocol":"grpc","registry":"etcd","server":"grpc","transport":"grpc"}}]}"#;
        let service = check_round_trip(json);
        assert_eq!(service.nodes[0].metadata["registry"], "etcd");
        assert_eq!(service.endpoints[0].request.as_ref().map(|v| v.type_.as_str()), Some("CallRequest"));
    }

    #[test]
    fn nil_maps_slices_and_values_are_null() {
        check_round_trip(
            r#"{"name":"a","version":"","metadata":null,"endpoints":[{"name":"E","request":null,"response":null,"metadata":null}],"nodes":[{"id":"n","address":"","metadata":null}]}"#,
        );
        check_round_trip(r#"{"name":"a","version":"1","metadata":{"k":"v"},"endpoints":null,"nodes":null}"#);
    }

    #[test]
    fn html_and_line_separators_are_escaped_as_go_does() {
        check_round_trip(
            r#"{"name":"a\u003cb\u003e\u0026c\u2028\u2029","version":"\"\\\n\t\u0001","metadata":null,"endpoints":null,"nodes":null}"#,
        );
    }

    #[test]
    fn decoding_accepts_missing_and_null_fields() {
        let service: Service = serde_json::from_str(r#"{"name":"a","nodes":[{"id":"n","metadata":null}]}"#)
            .expect("missing fields decode");
        assert_eq!(service, Service::with_node("a", "", Node::new("n", "")));
        let service: Service =
            serde_json::from_str(r#"{"name":null,"version":null,"metadata":null,"endpoints":null,"nodes":null}"#)
                .expect("null fields decode");
        assert_eq!(service, Service::default());
    }

    #[test]
    fn keys_have_two_segments() {
        assert_eq!(node_key("go.micro/srv", "a/b"), "/micro/registry/go.micro-srv/a-b");
        assert_eq!(service_prefix("x/y"), "/micro/registry/x-y/");
    }
}
