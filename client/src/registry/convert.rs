//! Conversions between the registry types and their protobuf form (`keel.v1`). Lossless both
//! ways: protobuf's empty map, empty list and absent message are the typed fields' empties,
//! and a node's stored document travels in `stored_json` (empty for none), which is what
//! keeps go-micro's `{}`, `[]` and field order that the typed fields cannot.

use std::sync::Arc;

use keel_proto::v1 as pb;

use super::types::{Endpoint, Node, Service, Value};

impl From<pb::Service> for Service {
    fn from(service: pb::Service) -> Service {
        Service {
            name: service.name,
            version: service.version,
            metadata: service.metadata.into_iter().collect(),
            endpoints: service.endpoints.into_iter().map(Endpoint::from).collect(),
            nodes: service.nodes.into_iter().map(Node::from).collect(),
        }
    }
}

impl From<Service> for pb::Service {
    fn from(service: Service) -> pb::Service {
        pb::Service {
            name: service.name,
            version: service.version,
            metadata: service.metadata.into_iter().collect(),
            endpoints: service.endpoints.into_iter().map(pb::Endpoint::from).collect(),
            nodes: service.nodes.into_iter().map(pb::Node::from).collect(),
        }
    }
}

impl From<&Service> for pb::Service {
    fn from(service: &Service) -> pb::Service {
        pb::Service::from(service.clone())
    }
}

impl From<pb::Node> for Node {
    fn from(node: pb::Node) -> Node {
        Node {
            id: node.id,
            address: node.address,
            metadata: node.metadata.into_iter().collect(),
            stored_json: (!node.stored_json.is_empty()).then(|| Arc::from(node.stored_json)),
        }
    }
}

impl From<Node> for pb::Node {
    fn from(node: Node) -> pb::Node {
        pb::Node {
            id: node.id,
            address: node.address,
            metadata: node.metadata.into_iter().collect(),
            stored_json: node.stored_json.as_deref().unwrap_or_default().to_string(),
        }
    }
}

impl From<pb::Endpoint> for Endpoint {
    fn from(endpoint: pb::Endpoint) -> Endpoint {
        Endpoint {
            name: endpoint.name,
            request: endpoint.request.map(Value::from),
            response: endpoint.response.map(Value::from),
            metadata: endpoint.metadata.into_iter().collect(),
        }
    }
}

impl From<Endpoint> for pb::Endpoint {
    fn from(endpoint: Endpoint) -> pb::Endpoint {
        pb::Endpoint {
            name: endpoint.name,
            request: endpoint.request.map(pb::Value::from),
            response: endpoint.response.map(pb::Value::from),
            metadata: endpoint.metadata.into_iter().collect(),
        }
    }
}

impl From<pb::Value> for Value {
    fn from(value: pb::Value) -> Value {
        Value { name: value.name, type_: value.r#type, values: value.values.into_iter().map(Value::from).collect() }
    }
}

impl From<Value> for pb::Value {
    fn from(value: Value) -> pb::Value {
        pb::Value {
            name: value.name,
            r#type: value.type_,
            values: value.values.into_iter().map(pb::Value::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_round_trip_is_lossless() {
        let json = r#"{"name":"s","version":"1","metadata":{"a":"b"},"endpoints":[{"name":"E","request":{"name":"R","type":"R","values":[{"name":"x","type":"int","values":null}]},"response":null,"metadata":null}],"nodes":[{"id":"n","address":"127.0.0.1:1","metadata":{"k":"v"}}]}"#;
        let service = Service::from_json(json.as_bytes()).expect("valid JSON");
        let back = Service::from(pb::Service::from(&service));
        assert_eq!(back, service);
        assert_eq!(back.to_json(), json);
    }

    #[test]
    fn the_stored_document_survives_protobuf() {
        // go-micro v5's field order and empties, which the typed fields alone would lose.
        let json = r#"{"name":"s","version":"1","metadata":{},"endpoints":[{"request":{"name":"R","type":"R","values":[]},"response":null,"metadata":{},"name":"E"}],"nodes":[{"metadata":{},"id":"n","address":"127.0.0.1:1"}]}"#;
        let service = Service::from_json(json.as_bytes()).expect("valid JSON");
        let message = pb::Service::from(&service);
        assert_eq!(message.nodes[0].stored_json, json);
        let back = Service::from(message);
        assert_eq!(back.to_json(), json);
        assert_eq!(back.nodes[0].stored_json.as_deref(), Some(json));
    }
}
