//! Talking to members from outside, as a client would: etcd clients and gRPC channels that
//! wait for a member to accept connections, condition waits with deadlines instead of sleeps,
//! retries while the cluster is unavailable, and plain HTTP to `/health` and `/metrics`.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use crate::{CALL_TIMEOUT, READY_TIMEOUT};

/// The client options every harness connection uses: a short connect timeout, a call timeout.
pub(crate) fn connect_options() -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(10))
}

pub async fn try_connect(endpoints: &[String]) -> Result<Client, etcd_client::Error> {
    Client::connect(endpoints, Some(connect_options())).await
}

pub async fn connect(endpoints: &[String]) -> Client {
    wait_for_some(READY_TIMEOUT, "a client connection", || async { try_connect(endpoints).await.ok() })
        .await
        .unwrap_or_else(|e| panic!("{e}: {endpoints:?}"))
}

/// Polls `condition` until it holds or `timeout` passes; returns how long it took.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut condition: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    wait_for_some(timeout, what, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await?;
    Ok(start.elapsed())
}

/// Polls `probe` until it yields a value or `timeout` passes.
pub async fn wait_for_some<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gRPC channel to a member's client URL, once it accepts connections (for Keel's native
/// services, whose generated clients wrap a channel).
pub async fn grpc_channel(url: &str) -> tonic::transport::Channel {
    wait_for_some(READY_TIMEOUT, "a gRPC connection", || async move {
        tonic::transport::Endpoint::from_shared(url.to_string()).ok()?.connect().await.ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {url}"))
}

/// Retries `call` while the cluster answers Unavailable (an election, a member catching up or
/// still starting, the cluster's secret key not there yet), as a client library does; any
/// other answer is returned. Each attempt must answer within `CALL_TIMEOUT`.
pub async fn retry_unavailable<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let answer = tokio::time::timeout(CALL_TIMEOUT, call()).await.expect("a gRPC call answers in time");
        match answer {
            Err(status) if status.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answer => return answer.map(tonic::Response::into_inner),
        }
    }
}

/// A minimal HTTP/1.1 GET against a member's client URL: (status code, body).
pub fn http_get(client_url: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let address = client_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// One gauge from a member's `/metrics`, or `None` if the member does not answer or lacks it.
pub fn metric(client_url: &str, name: &str) -> Option<f64> {
    let (_, body) = http_get(client_url, "/metrics").ok()?;
    body.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
