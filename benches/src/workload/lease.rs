//! The lease keep-alive workload: `--leases` leases, each with its own LeaseKeepAlive stream (as
//! the etcd-client crate keeps a lease alive), shared out over the clients. A client renews its
//! leases in turn, one request and its answer at a time; one operation is one keep-alive answer.
//! The leases are granted before the window and revoked after it.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};

use super::{LoadSpec, Step};
use crate::pool::Pool;
use crate::progress::Progress;

/// Long enough that no lease expires during a run, whatever the client count.
pub const LEASE_TTL_SECS: i64 = 60;
/// A renewal that takes this long fails the operation instead of blocking the client forever.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KeepAliveStep {
    streams: Vec<(LeaseKeeper, LeaseKeepAliveStream)>,
    next: usize,
}

impl Step for KeepAliveStep {
    async fn step(&mut self) -> anyhow::Result<()> {
        let index = self.next;
        self.next = (index + 1) % self.streams.len();
        let (keeper, stream) = &mut self.streams[index];
        keeper.keep_alive().await?;
        let answer = tokio::time::timeout(KEEP_ALIVE_TIMEOUT, stream.message()).await;
        let answer = answer.map_err(|_| anyhow::anyhow!("no keep-alive answer within {KEEP_ALIVE_TIMEOUT:?}"))??;
        match answer {
            Some(response) if response.ttl() > 0 => Ok(()),
            Some(response) => anyhow::bail!("lease {:x} expired (keep-alive answered TTL 0)", response.id()),
            None => anyhow::bail!("a keep-alive stream ended"),
        }
    }
}

/// How many of `leases` leases client `client` of `clients` holds: every client at least one.
pub fn leases_of(client: usize, clients: usize, leases: usize) -> usize {
    let total = leases.max(clients);
    total / clients + usize::from(client < total % clients)
}

/// Grants the leases and opens their streams, each client's on its connection. Returns the
/// steps and every lease id (to revoke afterwards).
pub async fn grant(pool: &Pool, spec: &LoadSpec, label: &str) -> anyhow::Result<(Vec<KeepAliveStep>, Vec<i64>)> {
    let total: usize = (0..spec.clients).map(|c| leases_of(c, spec.clients, spec.leases)).sum();
    let progress = Progress::start({
        let label = label.to_string();
        move |_| format!("{label}: granting {total} leases")
    });
    let tasks: Vec<_> = (0..spec.clients)
        .map(|c| {
            let (client, count) = (pool.client(c), leases_of(c, spec.clients, spec.leases));
            tokio::spawn(grant_for_client(client, count))
        })
        .collect();
    let (mut steps, mut ids, mut failure) = (Vec::new(), Vec::new(), None);
    for task in tasks {
        match task.await.map_err(anyhow::Error::from).and_then(|granted| granted) {
            Ok((streams, granted_ids)) => {
                ids.extend(granted_ids);
                steps.push(KeepAliveStep { streams, next: 0 });
            }
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    progress.finish();
    if let Some(error) = failure {
        revoke(pool, ids).await;
        return Err(error.context("granting leases"));
    }
    Ok((steps, ids))
}

async fn grant_for_client(
    mut client: Client,
    count: usize,
) -> anyhow::Result<(Vec<(LeaseKeeper, LeaseKeepAliveStream)>, Vec<i64>)> {
    let mut streams = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let id = client.lease_grant(LEASE_TTL_SECS, None).await?.id();
        ids.push(id);
        streams.push(client.lease_keep_alive(id).await?);
    }
    Ok((streams, ids))
}

/// Revokes `ids`, best effort: a lease left behind expires by itself after its TTL.
pub async fn revoke(pool: &Pool, ids: Vec<i64>) {
    let workers = pool.len().clamp(1, 64);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let mut client = pool.client(worker);
        let mine: Vec<i64> = ids.iter().skip(worker).step_by(workers).copied().collect();
        tasks.push(tokio::spawn(async move {
            for id in mine {
                let _ = client.lease_revoke(id).await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_shared_out_evenly_and_every_client_has_one() {
        let shares: Vec<usize> = (0..3).map(|c| leases_of(c, 3, 10)).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!((0..64).map(|c| leases_of(c, 64, 1_000)).sum::<usize>(), 1_000);
        assert!((0..16).all(|c| leases_of(c, 16, 4) == 1));
    }
}
