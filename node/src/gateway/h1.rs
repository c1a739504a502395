//! The gateway's connections to `handler=http` services: HTTP/1.1 keep-alive connections per
//! node address and worker (`per_worker.rs`), taken by one request at a time and put back after.
//! Like `h2.rs`, nothing stands between a request and its connection: hyper-util's pooled client
//! added a connector service, a checkout future and an absolute URI to parse per request.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::directory::host_port;
use super::grpc::CONNECT_TIMEOUT;
use super::per_worker::PerWorker;

/// Idle connections kept per node and worker; more are closed when they come back.
const IDLE_PER_NODE_MAX: usize = 256;

type Idle = Arc<Mutex<Vec<SendRequest<Body>>>>;

#[derive(Default)]
pub struct Connections {
    idle: PerWorker<Idle>,
}

/// Why a request got no answer.
pub enum SendError {
    /// No connection could be made: nothing reached the node.
    Connect(String),
    /// The request was sent, or may have been.
    Exchange(hyper::Error),
}

impl Connections {
    /// Sends `request` (its URI in origin form) to `address` (`host:port`) on an idle connection,
    /// or on a new one. A kept connection the node closed meanwhile is not an error: hyper hands
    /// back a request it did not send, and it goes on a new connection.
    pub async fn send(
        &self,
        address: &str,
        mut request: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, SendError> {
        let idle = self.idle_for(address);
        while let Some(mut connection) = take_ready(&idle) {
            match connection.try_send_request(request).await {
                Ok(answer) => {
                    put_back(&idle, connection);
                    return Ok(answer);
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Exchange(failed.into_error())),
                },
            }
        }
        let mut connection = connect(address).await.map_err(SendError::Connect)?;
        let answer = connection.send_request(request).await.map_err(SendError::Exchange)?;
        put_back(&idle, connection);
        Ok(answer)
    }

    fn idle_for(&self, address: &str) -> Idle {
        if let Some(idle) = self.idle.get(address) {
            return idle;
        }
        let idle = Idle::default();
        self.idle.keep(address, idle.clone());
        idle
    }
}

/// The most recently used idle connection ready for a request; closed ones are dropped. One
/// still finishing its last answer stays for later.
fn take_ready(idle: &Idle) -> Option<SendRequest<Body>> {
    let mut idle = lock(idle);
    idle.retain(|connection| !connection.is_closed());
    let ready = idle.iter().rposition(SendRequest::is_ready)?;
    Some(idle.swap_remove(ready))
}

/// Keeps `connection` for the next request once it has passed its answer on.
fn put_back(idle: &Idle, connection: SendRequest<Body>) {
    let mut idle = lock(idle);
    if idle.len() < IDLE_PER_NODE_MAX {
        idle.push(connection);
    }
}

fn lock(idle: &Idle) -> std::sync::MutexGuard<'_, Vec<SendRequest<Body>>> {
    idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn connect(address: &str) -> Result<SendRequest<Body>, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(host_port(address)))
        .await
        .map_err(|_| format!("cannot connect within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (connection, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake failed: {e}"))?;
    let node = address.to_string();
    tokio::spawn(async move {
        if let Err(error) = driver.await {
            tracing::debug!(node, "connection to the node ended: {error}");
        }
    });
    Ok(connection)
}
