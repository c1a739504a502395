//! Calling a service's gRPC method with a message known only at run time: a tonic codec for
//! `DynamicMessage`, one lazily connected channel per node address and worker, and grpc-gateway's table
//! from gRPC status codes to HTTP status codes.

use std::time::Duration;

use http::StatusCode;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::per_worker::PerWorker;

/// How long connecting to a node may take before the node counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest answer a service may send through the gateway.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One channel per node address and worker.
#[derive(Default)]
pub struct Channels {
    cache: PerWorker<Channel>,
}

impl Channels {
    /// This worker's channel to `address` (`host:port`, or a URL); it connects on its first call.
    pub fn get(&self, address: &str) -> Result<Channel, String> {
        if let Some(channel) = self.cache.get(address) {
            return Ok(channel);
        }
        let channel = endpoint(address)?.connect_lazy();
        self.cache.keep(address, channel.clone());
        Ok(channel)
    }
}

fn endpoint(address: &str) -> Result<Endpoint, String> {
    let url = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
    let endpoint =
        Endpoint::from_shared(url).map_err(|e| format!("the node address {address:?} is not usable: {e}"))?;
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

/// Calls `method` with `request` over `channel`, passing `metadata` on, within `timeout`.
pub async fn call_unary(
    channel: Channel,
    method: &MethodDescriptor,
    request: DynamicMessage,
    metadata: tonic::metadata::MetadataMap,
    timeout: Duration,
) -> Result<DynamicMessage, Status> {
    let (mut grpc, path) = ready(channel, method).await?;
    let mut request = tonic::Request::from_parts(metadata, tonic::Extensions::default(), request);
    request.set_timeout(timeout);
    let codec = DynamicCodec { output: method.output() };
    let response = tokio::time::timeout(timeout, grpc.unary(request, path, codec))
        .await
        .map_err(|_| Status::deadline_exceeded(format!("the service did not answer within {timeout:?}")))??;
    Ok(response.into_inner())
}

/// Calls the streaming `method` with `requests`, passing `metadata` on: the answers once the
/// service has answered the call's headers, within `timeout`. The stream itself lasts as long as
/// the service sends (no deadline goes with it).
pub async fn call_streaming(
    channel: Channel,
    method: &MethodDescriptor,
    requests: Vec<DynamicMessage>,
    metadata: tonic::metadata::MetadataMap,
    timeout: Duration,
) -> Result<tonic::Streaming<DynamicMessage>, Status> {
    let (mut grpc, path) = ready(channel, method).await?;
    let requests = futures::stream::iter(requests);
    let request = tonic::Request::from_parts(metadata, tonic::Extensions::default(), requests);
    let codec = DynamicCodec { output: method.output() };
    let response = tokio::time::timeout(timeout, grpc.streaming(request, path, codec))
        .await
        .map_err(|_| Status::deadline_exceeded(format!("the service did not answer within {timeout:?}")))??;
    Ok(response.into_inner())
}

/// A client on `channel`, connected, and `method`'s path.
async fn ready(
    channel: Channel,
    method: &MethodDescriptor,
) -> Result<(tonic::client::Grpc<Channel>, http::uri::PathAndQuery), Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("tcp connect error: {e}")))?;
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = http::uri::PathAndQuery::try_from(path).map_err(|e| Status::internal(e.to_string()))?;
    Ok((grpc, path))
}

/// Whether a failed call certainly never reached the service (the connection was refused or
/// could not be made), so that trying another node cannot apply the request twice.
pub fn never_reached(status: &Status) -> bool {
    if status.code() != Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::AddrNotAvailable
            );
        }
        source = error.source();
    }
    status.message().contains("tcp connect error")
}

/// grpc-gateway's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // 499: nginx's "client closed request", as grpc-gateway answers.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Encodes any `DynamicMessage`; decodes answers as `output`.
#[derive(Clone)]
struct DynamicCodec {
    output: MessageDescriptor,
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder { output: self.output.clone() }
    }
}

struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(format!("cannot encode the request: {e}")))
    }
}

struct DynamicDecoder {
    output: MessageDescriptor,
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        let message = DynamicMessage::decode(self.output.clone(), src)
            .map_err(|e| Status::internal(format!("the service's answer is not a {}: {e}", self.output.full_name())))?;
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_gateway_status_table() {
        for (code, http) in [
            (Code::NotFound, 404),
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Cancelled, 499),
            (Code::Internal, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn only_connection_failures_count_as_never_reached() {
        assert!(never_reached(&Status::unavailable("tcp connect error: Connection refused")));
        assert!(!never_reached(&Status::unavailable("the service is draining")));
        assert!(!never_reached(&Status::internal("tcp connect error")));
    }
}
