//! The registry's data types, shaped exactly like go-micro's `registry.Service` family so that
//! the JSON stored under `/micro/registry/...` is what go-micro's etcd plugin reads and writes.
//!
//! Go encodes a nil map or slice as `null` and field order follows the struct declaration; the
//! serde attributes below reproduce both. Decoding accepts `null`, a missing field or a value.
//! Use [`super::go_json`] to encode: it also escapes `<`, `>`, `&`, U+2028 and U+2029 as Go does.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One version of a service and the nodes running it. In the registry's keyspace each node is
/// stored separately, as a `Service` holding exactly that one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
    /// BTreeMap: Go writes map keys sorted, and so does a BTreeMap.
    #[serde(default, serialize_with = "empty_map_as_null", deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, serialize_with = "empty_vec_as_null", deserialize_with = "null_as_default")]
    pub endpoints: Vec<Endpoint>,
    #[serde(default, serialize_with = "empty_vec_as_null", deserialize_with = "null_as_default")]
    pub nodes: Vec<Node>,
}

/// One running instance of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub address: String,
    #[serde(default, serialize_with = "empty_map_as_null", deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
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

    /// Decodes go-micro's JSON of a service (`null` and missing fields are empty).
    pub fn from_json(json: &[u8]) -> serde_json::Result<Service> {
        serde_json::from_slice(json)
    }
}

impl Node {
    /// A node without metadata.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> Node {
        Node { id: id.into(), address: address.into(), metadata: BTreeMap::new() }
    }
}

/// Where go-micro's etcd registry (and Keel) keeps registrations.
pub const KEY_PREFIX: &str = "/micro/registry/";

/// The etcd key holding one node of a service: `/micro/registry/<service>/<node id>`, with `/`
/// in either part replaced by `-` as go-micro does, so a key has exactly two segments.
pub fn node_key(service_name: &str, node_id: &str) -> String {
    format!("{KEY_PREFIX}{}/{}", service_name.replace('/', "-"), node_id.replace('/', "-"))
}

/// The etcd prefix of every node of one service (see [`node_key`]).
pub fn service_prefix(service_name: &str) -> String {
    format!("{KEY_PREFIX}{}/", service_name.replace('/', "-"))
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
