//! keel proxy's connections to nodes: one HTTP/2 client connection per node address and worker
//! (`per_worker.rs`), shared by every call of that worker to it (HTTP/2 multiplexes them), with
//! nothing between a call and its connection. tonic's `Channel` puts a buffer task there, one
//! more hand-off each way for every call.

use axum::body::Body;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::directory::host_port;
use super::grpc::CONNECT_TIMEOUT;
use super::per_worker::PerWorker;

#[derive(Default)]
pub struct Connections {
    cache: PerWorker<SendRequest<Body>>,
}

impl Connections {
    /// A live connection to `address` (`host:port`), made now if there is none: an error means
    /// the node could not be reached, so nothing was sent to it.
    pub async fn connected(&self, address: &str) -> Result<SendRequest<Body>, String> {
        if let Some(connection) = self.cache.get(address).filter(|c| !c.is_closed()) {
            return Ok(connection);
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(host_port(address)))
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
        self.cache.keep(address, connection.clone());
        Ok(connection)
    }
}
