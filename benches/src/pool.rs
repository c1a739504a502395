//! The gRPC connections of one run. Connection `i` goes to endpoint `i mod endpoints`, and
//! client `c` uses connection `c mod connections`: clients share connections round-robin, and
//! connections spread over the members the way etcd clients in a fleet of services do.

use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{Client, ConnectOptions};

/// A call that takes longer than this fails and counts as an error: long enough for a leader
/// election, short enough that a stuck cluster ends a run.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening one connection may take on loopback.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Pool {
    connections: Vec<Client>,
}

impl Pool {
    /// Opens `count` connections over `endpoints`.
    pub async fn connect(endpoints: &[String], count: usize) -> anyhow::Result<Pool> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints to connect to");
        anyhow::ensure!(count > 0, "a pool needs at least one connection");
        let mut connections = Vec::with_capacity(count);
        for i in 0..count {
            connections.push(connect_one(&endpoints[i % endpoints.len()]).await?);
        }
        Ok(Pool { connections })
    }

    /// The connection client `index` uses (a cheap handle on the shared channel).
    pub fn client(&self, index: usize) -> Client {
        self.connections[index % self.connections.len()].clone()
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }
}

/// One connection to one endpoint, with keel-bench's timeouts.
pub async fn connect_one(endpoint: &str) -> anyhow::Result<Client> {
    let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(CALL_TIMEOUT);
    Client::connect([endpoint], Some(options)).await.with_context(|| format!("connecting to {endpoint}"))
}
