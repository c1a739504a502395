//! The exact JSON of registrations read from the cluster, so that a service read through Keel
//! encodes to the bytes its writer stored.
//!
//! The typed fields cannot carry that: Go writes a nil map as `null` and an empty one as `{}`
//! (a stock go-micro server registers `"metadata":{}` on every endpoint), protobuf cannot tell
//! the two apart, and go-micro itself changed its field order in v4.10.2 (commit "fix: struct
//! field alignment", #2632: `Node` is `metadata, id, address` and `Endpoint` is
//! `request, response, metadata, name` since then). So every node read from the cluster keeps
//! the stored document it came from ([`Node::stored_json`]), and encoding a [`Service`]
//! reuses those bytes wherever the typed fields still say what the document says:
//!
//! - one node whose document decodes to exactly this service: the document, byte for byte;
//! - several nodes (a service grouped from several registrations): the first node's document
//!   with its `nodes` list replaced by each node's own object as stored (a node changed since,
//!   or without a document, is encoded from its typed fields);
//! - otherwise (changed service-level fields, no document): the typed fields, as go-micro's
//!   `json.Marshal` writes them.
//!
//! Pure; reads only its arguments. The document is outside input: decoding is bounded by
//! serde_json's recursion limit, and nothing here panics on any bytes.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::types::{Node, Service};

/// This service's JSON built from the stored documents of its nodes, or `None` when the typed
/// fields must be encoded instead (see the module comment).
pub(super) fn exact_json(service: &Service) -> Option<String> {
    let first = service.nodes.first()?;
    let first_json = first.stored_json.as_deref()?;
    let first_stored = decode_typed(first_json)?;
    if !same_service_fields(&first_stored, service) || !is_document_of(&first_stored, first) {
        return None;
    }
    if service.nodes.len() == 1 {
        // Whitespace around a JSON value is not part of it (and a value inside another
        // cannot carry it), so only the value is given back.
        return Some(trim_json_whitespace(first_json).to_string());
    }
    let members: Members<'_> = serde_json::from_str(first_json).ok()?;
    let mut json = String::with_capacity(first_json.len().saturating_mul(service.nodes.len()));
    json.push('{');
    for (index, (key, value)) in members.0.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push_str(&super::go_json::to_string(key).ok()?);
        json.push(':');
        if key == "nodes" {
            json.push('[');
            for (index, node) in service.nodes.iter().enumerate() {
                if index > 0 {
                    json.push(',');
                }
                json.push_str(&node_json(node)?);
            }
            json.push(']');
        } else {
            json.push_str(value.get());
        }
    }
    json.push('}');
    Some(json)
}

/// One node's object: as stored when its document still describes it, else typed.
fn node_json(node: &Node) -> Option<String> {
    let stored = node.stored_json.as_deref().and_then(|json| {
        let service = decode_typed(json)?;
        if !is_document_of(&service, node) {
            return None;
        }
        let nodes: NodesOnly<'_> = serde_json::from_str(json).ok()?;
        match nodes.nodes.as_deref() {
            Some([only]) => Some(only.get().to_string()),
            _ => None,
        }
    });
    match stored {
        Some(json) => Some(json),
        None => super::go_json::to_string(node).ok(),
    }
}

/// Fuzzing entry point: decodes `data` as a stored registration and checks what readers rely
/// on. Must not panic on any input; a panic is a broken invariant:
///
/// - a registration (one node) encodes back to exactly `data` (less any whitespace around it);
/// - every encoding decodes back to the same typed service, including a service grouped from
///   this registration and a changed copy of it (the splice of stored and typed nodes).
#[doc(hidden)]
pub fn fuzz_registration(data: &[u8]) {
    let Ok(service) = Service::from_json(data) else { return };
    let json = service.to_json();
    if let (1, Ok(text)) = (service.nodes.len(), std::str::from_utf8(data)) {
        assert_eq!(json, trim_json_whitespace(text), "a registration encodes to its stored bytes");
    }
    let decoded = Service::from_json(json.as_bytes()).ok();
    assert_eq!(decoded.as_ref(), Some(&service), "the encoding of a service decodes to it: {json}");

    let mut changed = service.clone();
    for node in &mut changed.nodes {
        node.id.push('~');
    }
    for grouped in super::group([service, changed]) {
        let json = grouped.to_json();
        let decoded: Option<Service> = serde_json::from_str(&json).ok();
        assert_eq!(decoded.as_ref(), Some(&grouped), "a grouped service's encoding decodes to it: {json}");
    }
}

/// `json` without the whitespace JSON allows around a value (space, tab, line feed, carriage
/// return).
fn trim_json_whitespace(json: &str) -> &str {
    json.trim_matches([' ', '\t', '\n', '\r'])
}

/// The typed service of a document, without remembering the document (which would recurse).
fn decode_typed(json: &str) -> Option<Service> {
    serde_json::from_str(json).ok()
}

/// Whether `stored`, one registration, holds exactly `node` (typed fields compared).
fn is_document_of(stored: &Service, node: &Node) -> bool {
    matches!(stored.nodes.as_slice(), [only] if only == node)
}

fn same_service_fields(a: &Service, b: &Service) -> bool {
    a.name == b.name && a.version == b.version && a.metadata == b.metadata && a.endpoints == b.endpoints
}

/// A JSON object's members in their order, values as written.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Bounded by the document, which the cluster bounds (a registration's size).
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A registration's `nodes`, each as written.
#[derive(serde::Deserialize)]
struct NodesOnly<'a> {
    #[serde(borrow, default)]
    nodes: Option<Vec<&'a RawValue>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// go-micro v5.30's JSON of a service with one node (field order since v4.10.2; the empty
    /// endpoint metadata its server always registers).
    const V5: &str = r#"{"name":"greeter","version":"latest","metadata":{},"endpoints":[{"request":{"name":"Request","type":"Request","values":[]},"response":{"name":"Response","type":"Response","values":null},"metadata":{},"name":"Greeter.Hello"}],"nodes":[{"metadata":{"registry":"etcd"},"id":"greeter-1","address":"127.0.0.1:1"}]}"#;

    fn v5_node(id: &str) -> String {
        V5.replace("greeter-1", id)
    }

    #[test]
    fn one_registration_encodes_to_its_document() {
        let service = Service::from_json(V5.as_bytes()).expect("decodes");
        assert_eq!(service.to_json(), V5);
        // Changed: the typed fields win (go-micro's v2.9 order, nil as null).
        let mut changed = service.clone();
        changed.nodes[0].address = "127.0.0.1:2".into();
        assert_eq!(
            changed.to_json(),
            r#"{"name":"greeter","version":"latest","metadata":null,"endpoints":[{"name":"Greeter.Hello","request":{"name":"Request","type":"Request","values":null},"response":{"name":"Response","type":"Response","values":null},"metadata":null}],"nodes":[{"id":"greeter-1","address":"127.0.0.1:2","metadata":{"registry":"etcd"}}]}"#
        );
    }

    #[test]
    fn a_grouped_service_splices_each_nodes_stored_object() {
        let registrations = ["greeter-2", "greeter-1"].map(|id| Service::from_json(v5_node(id).as_bytes()));
        let registrations: Vec<Service> = registrations.into_iter().map(|r| r.expect("decodes")).collect();
        let grouped = super::super::group(registrations);
        assert_eq!(grouped.len(), 1);
        let expected = V5.replace(
            r#"[{"metadata":{"registry":"etcd"},"id":"greeter-1","address":"127.0.0.1:1"}]"#,
            r#"[{"metadata":{"registry":"etcd"},"id":"greeter-1","address":"127.0.0.1:1"},{"metadata":{"registry":"etcd"},"id":"greeter-2","address":"127.0.0.1:1"}]"#,
        );
        assert_eq!(grouped[0].to_json(), expected);

        // A node changed since it was read is encoded from its typed fields; the rest stay.
        let mut changed = grouped[0].clone();
        changed.nodes[1].address = "127.0.0.1:9".into();
        let expected = V5.replace(
            r#"[{"metadata":{"registry":"etcd"},"id":"greeter-1","address":"127.0.0.1:1"}]"#,
            r#"[{"metadata":{"registry":"etcd"},"id":"greeter-1","address":"127.0.0.1:1"},{"id":"greeter-2","address":"127.0.0.1:9","metadata":{"registry":"etcd"}}]"#,
        );
        assert_eq!(changed.to_json(), expected);
    }

    /// Documents of the shapes go-micro writes, for the fuzz test to mutate.
    const SAMPLES: [&str; 3] = [
        V5,
        r#"{"name":"a\u003cb\u003e\u0026c","version":"1","metadata":null,"endpoints":null,"nodes":[{"id":"n","address":"","metadata":null}],"extra":[1.50,-0,12345678901234567890e-3]}"#,
        r#"{"name":"ü","nodes":[{"id":"\u00fc","metadata":{"k":"\ud83d\ude00"}}],"endpoints":[{"name":"E","request":{"values":[{"values":[{"values":[]}]}]}}]}"#,
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn fuzz_registration_holds_on_random_bytes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            fuzz_registration(&data);
        }

        #[test]
        fn fuzz_registration_holds_on_mutated_samples(
            sample in 0..SAMPLES.len(),
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>(), 0..3u8), 0..6),
        ) {
            // Whitespace around the document, which a hand-made `etcdctl put` may leave.
        let mut data = format!(" {}\n", SAMPLES[sample]).into_bytes();
            for (position, byte, kind) in edits {
                let at = position % (data.len() + 1);
                match kind {
                    0 => data.insert(at, byte),
                    1 if at < data.len() => { data.remove(at); }
                    _ if at < data.len() => data[at] = byte,
                    _ => data.push(byte),
                }
            }
            fuzz_registration(&data);
        }
    }

    #[test]
    fn samples_are_registrations() {
        for sample in SAMPLES {
            let service = Service::from_json(sample.as_bytes()).expect("a sample decodes");
            assert_eq!(service.to_json(), sample);
            fuzz_registration(sample.as_bytes());
        }
    }

    #[test]
    fn equality_ignores_the_document() {
        let read = Service::from_json(V5.as_bytes()).expect("decodes");
        let mut typed = read.clone();
        typed.nodes[0].stored_json = None;
        assert_eq!(read, typed);
        assert_ne!(read.to_json(), typed.to_json());
    }
}
