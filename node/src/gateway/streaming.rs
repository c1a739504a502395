//! Streaming methods over plain HTTP, in grpc-gateway's shapes: a client stream is the request
//! body as a sequence of JSON messages (newline-delimited, or only whitespace between them), and a
//! server stream is the answer as one line per message, `{"result":{…}}`, ending with
//! `{"error":{"code","message"}}` if the service ends the stream with an error. A method that
//! streams only requests answers one JSON message, as a unary one does.
//!
//! The request body is read whole, within the gateway's body limit, before the call: HTTP/1.1
//! clients send it that way anyway, and a node that refuses the connection can then be skipped.

use std::convert::Infallible;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::StatusCode;
use prost_reflect::{DeserializeOptions, DynamicMessage, MethodDescriptor};
use serde_json::value::RawValue;

use super::http::Failure;

/// Messages one request body may carry to a client-streaming method.
pub const REQUEST_MESSAGES_MAX: usize = 10_000;

/// The request messages in `body`: one (or the empty message for an empty body) for a method
/// that takes one, the sequence for a client-streaming method.
pub fn requests_from_json(method: &MethodDescriptor, body: &[u8]) -> Result<Vec<DynamicMessage>, Failure> {
    if !method.is_client_streaming() {
        return super::http::from_json(method, body).map(|message| vec![message]);
    }
    let bad = |e: &dyn std::fmt::Display| {
        let input = method.input();
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a sequence of {} in JSON: {e}", input.full_name()),
        )
    };
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut messages = Vec::new();
    for raw in serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>() {
        let raw = raw.map_err(|e| bad(&e))?;
        if messages.len() >= REQUEST_MESSAGES_MAX {
            return Err(bad(&format!("more than {REQUEST_MESSAGES_MAX} messages")));
        }
        let mut json = serde_json::Deserializer::from_str(raw.get());
        let message =
            DynamicMessage::deserialize_with_options(method.input(), &mut json, &options).map_err(|e| bad(&e))?;
        messages.push(message);
    }
    Ok(messages)
}

/// The answer to a streaming call: newline-delimited results for a server stream, else the one
/// message the service answered.
pub async fn answer(
    method: &MethodDescriptor,
    mut answers: tonic::Streaming<DynamicMessage>,
) -> Result<Response, Failure> {
    if method.is_server_streaming() {
        let headers = [(http::header::CONTENT_TYPE, "application/json")];
        return Ok((StatusCode::OK, headers, Body::from_stream(lines(answers))).into_response());
    }
    match answers.message().await {
        Ok(Some(message)) => super::http::to_json(&message),
        Ok(None) => Err(Failure::new(StatusCode::BAD_GATEWAY, "the service ended the call without an answer")),
        Err(status) => Err(super::http::service_failure(&status)),
    }
}

/// One line per answer, and a last one for an error that ends the stream.
fn lines(answers: tonic::Streaming<DynamicMessage>) -> impl futures::Stream<Item = Result<Vec<u8>, Infallible>> {
    futures::stream::unfold(Some(answers), |answers| async move {
        let mut answers = answers?;
        match answers.message().await {
            Ok(Some(message)) => Some((result_line(&message), Some(answers))),
            Ok(None) => None,
            Err(status) => Some((error_line(status.code() as i32, status.message()), None)),
        }
    })
    .map(Ok)
}

fn result_line(message: &DynamicMessage) -> Vec<u8> {
    match super::http::json_bytes(message) {
        Ok(json) => {
            let mut line = Vec::with_capacity(json.len() + 12);
            line.extend_from_slice(b"{\"result\":");
            line.extend_from_slice(&json);
            line.extend_from_slice(b"}\n");
            line
        }
        Err(failure) => error_line(tonic::Code::Internal as i32, &failure.detail),
    }
}

/// grpc-gateway's stream error.
fn error_line(code: i32, message: &str) -> Vec<u8> {
    let error = serde_json::json!({ "error": { "code": code, "message": message, "details": [] } });
    let mut line = error.to_string().into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_method() -> MethodDescriptor {
        let pool = prost_reflect::DescriptorPool::decode(keel_proto::greeter::FILE_DESCRIPTOR_SET).expect("pool");
        super::super::schema::find_method(&pool, "greeter", "Say.Stream").expect("Say.Stream")
    }

    #[test]
    fn a_client_stream_is_a_sequence_of_json_messages() {
        let method = stream_method();
        let messages = requests_from_json(&method, b"{\"name\":\"Ada\"}\n{\"name\":\"Bob\"} {}").expect("three");
        assert_eq!(messages.len(), 3);
        assert!(requests_from_json(&method, b"").expect("none").is_empty(), "an empty body sends no message");
        for bad in [&b"{\"name\":\"Ada\"} {\"nom\":1}"[..], b"{\"name\":", b"[1]"] {
            let failure = requests_from_json(&method, bad).expect_err("refused");
            assert_eq!(failure.status, StatusCode::BAD_REQUEST, "{}", failure.detail);
            assert!(failure.detail.contains("sequence of greeter.Request"), "{}", failure.detail);
        }
        let too_many = "{}".repeat(REQUEST_MESSAGES_MAX + 1);
        assert!(requests_from_json(&method, too_many.as_bytes()).is_err());
    }

    #[test]
    fn errors_end_a_stream_as_grpc_gateway_writes_them() {
        let line = error_line(3, "bad \"name\"");
        assert_eq!(line.last(), Some(&b'\n'), "one line");
        let parsed: serde_json::Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(parsed, serde_json::json!({"error": {"code": 3, "message": "bad \"name\"", "details": []}}));
    }
}
