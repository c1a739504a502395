//! Keeping a lease alive with etcd's LeaseKeepAlive stream, shared by registrations and
//! coordination sessions (locks, elections).

use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::{self, Cluster};
use crate::registry::ttl_seconds;

/// Why keeping a lease alive stopped.
pub(crate) enum LeaseLost {
    /// The cluster says the lease is gone.
    Expired(String),
    /// The keep-alive stream failed; the lease may still live.
    Broken(String),
}

impl LeaseLost {
    pub(crate) fn message(&self) -> &str {
        match self {
            LeaseLost::Expired(message) | LeaseLost::Broken(message) => message,
        }
    }
}

/// Keeps `lease_id` alive through member `member` until that fails; says how it ended.
pub(crate) async fn keep_alive(cluster: &Cluster, member: usize, lease_id: i64, ttl: Duration) -> LeaseLost {
    let client = match cluster.etcd(member).await {
        Ok(client) => client,
        Err(error) => return LeaseLost::Broken(error.to_string()),
    };
    let opened = tokio::time::timeout(cluster::REQUEST_TIMEOUT, client.lease_client().keep_alive(lease_id)).await;
    let (mut keeper, mut stream) = match opened {
        Ok(Ok(opened)) => opened,
        // etcd-client's word for a first keep-alive answered with TTL 0.
        Ok(Err(etcd_client::Error::LeaseKeepAliveError(message))) => {
            return LeaseLost::Expired(format!("lease {lease_id}: {message}"))
        }
        Ok(Err(error)) => return LeaseLost::Broken(format!("cannot open the keep-alive stream: {error}")),
        Err(_) => return LeaseLost::Broken("no answer to the first keep-alive".into()),
    };
    // A third of the TTL, as etcd's clients do: two keep-alives can be lost before it expires.
    let ttl = Duration::from_secs(u64::try_from(ttl_seconds(ttl)).unwrap_or(u64::MAX));
    let interval = ttl / 3;
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    let mut answered_at = Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if answered_at.elapsed() >= ttl {
                    return LeaseLost::Broken(format!("no keep-alive answer for {ttl:?}"));
                }
                if let Err(error) = keeper.keep_alive().await {
                    return LeaseLost::Broken(format!("keep-alive stream closed: {error}"));
                }
            }
            message = stream.message() => match message {
                Ok(Some(response)) if response.ttl() > 0 => answered_at = Instant::now(),
                Ok(Some(_)) => return LeaseLost::Expired(format!("lease {lease_id} expired (keep-alive answered TTL 0)")),
                Ok(None) => return LeaseLost::Broken("the member ended the keep-alive stream".into()),
                Err(error) => return LeaseLost::Broken(format!("keep-alive stream failed: {error}")),
            },
        }
    }
}
