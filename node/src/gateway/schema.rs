//! A service's message types, learnt once through gRPC server reflection (the v1 service, else
//! v1alpha; grpc-go and tonic-reflection serve both), so the gateway can transcode JSON for
//! services it was never built with. Every answer is outside input: the number of files, their
//! size and the time the exchange takes are bounded.

use std::time::Duration;

use prost_reflect::{DescriptorPool, MethodDescriptor};
use prost_types::FileDescriptorProto;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

/// More files than this is not a service's schema but a flood: refuse it.
pub const REFLECTED_FILES_MAX: usize = 512;
/// The longest the whole reflection exchange with one node may take.
pub const REFLECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// One reflection answer's size cap (tonic's default for any message).
const REFLECTION_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why a service's schema could not be had. Each is a 502 naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the service does not serve gRPC server reflection ({0}); register it with reflection on, or route it with handler=http")]
    NoReflection(String),
    #[error("gRPC server reflection failed: {0}")]
    Failed(String),
    /// The node could not be reached at all: another node may serve the schema.
    #[error("the node could not be reached: {0}")]
    Unreachable(String),
    #[error("the service's reflected descriptors are invalid: {0}")]
    Invalid(String),
    #[error("the service's reflection did not answer within {REFLECTION_TIMEOUT:?}")]
    TimedOut,
}

const V1: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/// The descriptors of every service `channel`'s server lists.
pub async fn fetch(channel: Channel) -> Result<DescriptorPool, SchemaError> {
    tokio::time::timeout(REFLECTION_TIMEOUT, async {
        match fetch_over(channel.clone(), V1).await {
            Err(SchemaError::NoReflection(_)) => fetch_over(channel, V1ALPHA).await,
            other => other,
        }
    })
    .await
    .map_err(|_| SchemaError::TimedOut)?
}

/// The method `endpoint` (micro's `Service.Method`) of the registered service `service` names:
/// go-micro calls `/<service>.<Service>/<Method>`, so that exact name first, then the one
/// reflected service whose last name component is `<Service>`.
pub fn find_method(pool: &DescriptorPool, service: &str, endpoint: &str) -> Option<MethodDescriptor> {
    let (service_part, method) = endpoint.split_once('.')?;
    let exact = pool.get_service_by_name(&format!("{service}.{service_part}"));
    let by_last_name = || {
        let mut matching = pool.services().filter(|s| s.name() == service_part);
        let first = matching.next()?;
        // Two packages with the same service name: ambiguous, so neither.
        matching.next().is_none().then_some(first)
    };
    exact.or_else(by_last_name)?.methods().find(|m| m.name() == method)
}

/// One reflection conversation over `path` (v1 and v1alpha share every message's fields, so
/// the v1 types speak both).
async fn fetch_over(channel: Channel, path: &'static str) -> Result<DescriptorPool, SchemaError> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(REFLECTION_MESSAGE_BYTES_MAX);
    grpc.ready().await.map_err(|e| SchemaError::Unreachable(e.to_string()))?;
    let (requests, queue) = tokio::sync::mpsc::channel(4);
    let codec = tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    let responses = grpc.streaming(tonic::Request::new(ReceiverStream::new(queue)), path, codec).await;
    let responses = responses.map_err(|status| match status.code() {
        tonic::Code::Unimplemented => SchemaError::NoReflection(status.message().to_string()),
        _ if super::grpc::never_reached(&status) => SchemaError::Unreachable(status.message().to_string()),
        _ => SchemaError::Failed(status.to_string()),
    })?;
    let mut stream = responses.into_inner();
    let mut conversation = Conversation { requests, responses: &mut stream };
    let services = conversation.list_services().await?;
    let mut files: Vec<FileDescriptorProto> = Vec::new();
    for service in services.iter().filter(|s| !s.starts_with("grpc.reflection.")) {
        let found = conversation.ask(MessageRequest::FileContainingSymbol(service.clone())).await?;
        add_new(&mut files, found)?;
    }
    // Reflection servers answer with a file, not always with what it imports: ask for each
    // missing import by name until none is missing.
    while let Some(missing) = first_missing_import(&files) {
        let found = conversation.ask(MessageRequest::FileByFilename(missing.clone())).await?;
        if !found.iter().any(|f| f.name() == missing) {
            return Err(SchemaError::Invalid(format!("the server did not send the imported file {missing:?}")));
        }
        add_new(&mut files, found)?;
    }
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files).map_err(|e| SchemaError::Invalid(e.to_string()))?;
    Ok(pool)
}

struct Conversation<'a> {
    requests: tokio::sync::mpsc::Sender<ServerReflectionRequest>,
    responses: &'a mut tonic::Streaming<ServerReflectionResponse>,
}

impl Conversation<'_> {
    async fn send(&mut self, request: MessageRequest) -> Result<MessageResponse, SchemaError> {
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        self.requests.send(request).await.map_err(|_| SchemaError::Failed("the server closed the stream".into()))?;
        let response = match self.responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(SchemaError::Failed("the server ended the stream early".into())),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                return Err(SchemaError::NoReflection(status.message().to_string()))
            }
            Err(status) => return Err(SchemaError::Failed(status.to_string())),
        };
        match response.message_response {
            Some(MessageResponse::ErrorResponse(error)) => {
                Err(SchemaError::Failed(format!("code {}: {}", error.error_code, error.error_message)))
            }
            Some(answer) => Ok(answer),
            None => Err(SchemaError::Failed("an empty answer".into())),
        }
    }

    async fn list_services(&mut self) -> Result<Vec<String>, SchemaError> {
        match self.send(MessageRequest::ListServices(String::new())).await? {
            MessageResponse::ListServicesResponse(list) => Ok(list.service.into_iter().map(|s| s.name).collect()),
            _ => Err(SchemaError::Failed("the answer to ListServices is not a list".into())),
        }
    }

    async fn ask(&mut self, request: MessageRequest) -> Result<Vec<FileDescriptorProto>, SchemaError> {
        let MessageResponse::FileDescriptorResponse(files) = self.send(request).await? else {
            return Err(SchemaError::Failed("the answer is not a file descriptor".into()));
        };
        files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost::Message::decode(bytes.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| SchemaError::Invalid(e.to_string()))
    }
}

fn add_new(files: &mut Vec<FileDescriptorProto>, found: Vec<FileDescriptorProto>) -> Result<(), SchemaError> {
    for file in found {
        if !files.iter().any(|f| f.name() == file.name()) {
            files.push(file);
        }
    }
    if files.len() > REFLECTED_FILES_MAX {
        return Err(SchemaError::Invalid(format!("more than {REFLECTED_FILES_MAX} files")));
    }
    Ok(())
}

fn first_missing_import(files: &[FileDescriptorProto]) -> Option<String> {
    let have = |name: &str| files.iter().any(|f| f.name() == name);
    files.iter().flat_map(|f| f.dependency.iter()).find(|d| !have(d)).cloned()
}

/// Fuzz entry point: a reflection answer as a node sends it, decoded and its files built into a
/// schema as `fetch` does.
#[doc(hidden)]
pub fn fuzz_reflection_answer(data: &[u8]) {
    let Ok(response) = <ServerReflectionResponse as prost::Message>::decode(data) else { return };
    let Some(MessageResponse::FileDescriptorResponse(answer)) = response.message_response else { return };
    let mut files = Vec::new();
    for bytes in answer.file_descriptor_proto.iter().take(REFLECTED_FILES_MAX) {
        match <FileDescriptorProto as prost::Message>::decode(bytes.as_slice()) {
            Ok(file) => files.push(file),
            Err(_) => return,
        }
    }
    let _ = first_missing_import(&files);
    let mut pool = DescriptorPool::new();
    if pool.add_file_descriptor_protos(files).is_ok() {
        let _ = pool.services().flat_map(|s| s.methods().collect::<Vec<_>>()).count();
    }
}

/// A valid reflection answer (the greeter's file), for the fuzz tests to mutate.
#[doc(hidden)]
pub fn sample_reflection_answer() -> Vec<u8> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(keel_proto::greeter::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let answer = tonic_reflection::pb::v1::FileDescriptorResponse {
        file_descriptor_proto: set.file.iter().map(Message::encode_to_vec).collect(),
    };
    let response = ServerReflectionResponse {
        message_response: Some(MessageResponse::FileDescriptorResponse(answer)),
        ..Default::default()
    };
    response.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_find_their_methods() {
        let pool = DescriptorPool::decode(keel_proto::greeter::FILE_DESCRIPTOR_SET).expect("the greeter's descriptors");
        let method = find_method(&pool, "greeter", "Say.Hello").expect("exact name");
        assert_eq!(method.full_name(), "greeter.Say.Hello");
        let method = find_method(&pool, "go.micro.srv.greeter", "Say.Hello").expect("by the service's last name");
        assert_eq!(method.full_name(), "greeter.Say.Hello");
        assert!(find_method(&pool, "greeter", "Say.Goodbye").is_none());
        assert!(find_method(&pool, "greeter", "Shout.Hello").is_none());
        assert!(find_method(&pool, "greeter", "SayHello").is_none());
    }
}
