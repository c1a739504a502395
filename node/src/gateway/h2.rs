//! keel proxy's connections to nodes: one HTTP/2 client connection per node address and worker,
//! shared by every call of that worker to it (HTTP/2 multiplexes them), with nothing between a
//! call and its connection. tonic's `Channel` puts a buffer task there, one more hand-off each
//! way for every call. Per worker, as nginx's workers keep their own upstream connections: a
//! connection's task runs on the worker that made it, and a call from another worker would wake
//! that thread twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::ThreadId;

use axum::body::Body;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::grpc::CONNECT_TIMEOUT;

/// Connections kept at most per worker; past this the cache starts again (nodes come and go).
const CONNECTIONS_MAX: usize = 4096;

#[derive(Default)]
pub struct Connections {
    // std Mutex: held to look up or insert, never across an await.
    by_worker: Mutex<HashMap<ThreadId, HashMap<String, SendRequest<Body>>>>,
}

impl Connections {
    /// A live connection to `address` (`host:port`), made now if there is none: an error means
    /// the node could not be reached, so nothing was sent to it.
    pub async fn connected(&self, address: &str) -> Result<SendRequest<Body>, String> {
        let worker = std::thread::current().id();
        let cached = self.lock().get(&worker).and_then(|connections| connections.get(address).cloned());
        if let Some(connection) = cached.filter(|c| !c.is_closed()) {
            return Ok(connection);
        }
        let host_port = address.strip_prefix("http://").unwrap_or(address);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(host_port))
            .await
            .map_err(|_| format!("cannot connect to {address} within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(stream));
        let (connection, driver) = handshake.await.map_err(|e| format!("HTTP/2 with {address} failed: {e}"))?;
        let node = address.to_string();
        tokio::spawn(async move {
            if let Err(error) = driver.await {
                tracing::debug!(node, "connection to the node ended: {error}");
            }
        });
        let mut by_worker = self.lock();
        let connections = by_worker.entry(worker).or_default();
        if connections.len() >= CONNECTIONS_MAX {
            connections.clear();
        }
        connections.insert(address.to_string(), connection.clone());
        Ok(connection)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, HashMap<String, SendRequest<Body>>>> {
        self.by_worker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
