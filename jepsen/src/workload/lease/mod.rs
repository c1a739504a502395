//! The lease workload, over etcd's Lease API: [`KEEPERS`] clients each grant a lease, put a
//! key on it and keep it alive (a new lease when the old one is gone); one client grants a
//! lease with a key every [`ABANDON_INTERVAL`] and never keeps it alive; one reader reads the
//! prefix every [`READ_INTERVAL`]. After healing, a final read once every abandoned lease has
//! had time to expire. See [`check`] for what is checked.

pub mod check;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::check::{LeaseHistory, LeaseOp, LeaseOperation, ELECTION_ALLOWANCE_NS};
use super::{classify, ensure_client, joined, read_until_done, WorkloadConfig, ERROR_BACKOFF, REQUEST_TIMEOUT};
use crate::clock::RunClock;
use crate::history::Outcome;
use crate::tls::Endpoints;

/// Every key of the workload starts with this.
pub const PREFIX: &str = "l/";
/// Keys on leases kept alive.
pub const KEPT_PREFIX: &str = "l/k/";
/// Keys on leases nobody keeps alive.
pub const ABANDONED_PREFIX: &str = "l/a/";
/// Every lease's TTL: the shortest Keel grants with the harness's 500 ms election timeout is
/// 1 s (`ceil(1.5 × election timeout)`); 2 s leaves keep-alives room for a slow request.
pub const TTL_SECS: i64 = 2;
/// Between two keep-alives of a keeper: four per TTL, so one lost keep-alive is harmless.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(500);
pub const KEEPERS: usize = 2;
pub const ABANDON_INTERVAL: Duration = Duration::from_millis(500);
pub const READ_INTERVAL: Duration = Duration::from_millis(250);
/// Process ids of the abandoning client and the reader, apart from the keepers'.
const ABANDON_PROCESS: u64 = u64::MAX - 2;
const READER_PROCESS: u64 = u64::MAX - 1;

pub struct Running {
    clients: JoinSet<Vec<LeaseOperation>>,
}

/// Spawns the keepers, the abandoning client and the reader until `deadline`.
pub fn start(config: &WorkloadConfig, clock: RunClock, deadline: Instant) -> Running {
    let urls = Arc::new(config.client_urls.clone());
    let mut clients = JoinSet::new();
    for keeper in 0..KEEPERS {
        clients.spawn(keep_loop(keeper as u64, Arc::clone(&urls), clock, deadline));
    }
    clients.spawn(abandon_loop(Arc::clone(&urls), clock, deadline));
    clients.spawn(read_loop(urls, clock, deadline));
    Running { clients }
}

impl Running {
    /// Waits for the clients, then, if the cluster recovered, for every abandoned lease to
    /// have had time to expire, and reads the prefix once more.
    pub async fn finish(
        mut self,
        client_urls: &Endpoints,
        clock: RunClock,
        recovered: bool,
    ) -> anyhow::Result<LeaseHistory> {
        let recovered_ns = clock.now_ns();
        let mut operations = joined(&mut self.clients).await?;
        if recovered {
            let ttl_ns = u64::try_from(TTL_SECS).unwrap_or(0) * 1_000_000_000;
            let wait_ns = (recovered_ns + ttl_ns + ELECTION_ALLOWANCE_NS).saturating_sub(clock.now_ns());
            tokio::time::sleep(Duration::from_nanos(wait_ns)).await;
            let final_reads = read_until_done(
                client_urls,
                |client| Box::pin(read(client, clock, true)),
                |read| read.outcome == Outcome::Ok,
            );
            operations.extend(final_reads.await);
        }
        operations.sort_by_key(|operation| operation.call_ns);
        Ok(LeaseHistory { ttl_secs: TTL_SECS, operations })
    }
}

/// Records one call: `call` runs between the two clock readings.
async fn record<T>(
    operations: &mut Vec<LeaseOperation>,
    process: u64,
    clock: RunClock,
    call: impl std::future::Future<Output = (LeaseOp, Outcome, T)>,
) -> (Outcome, T) {
    let call_ns = clock.now_ns();
    let (op, outcome, value) = call.await;
    operations.push(LeaseOperation { process, call_ns, return_ns: Some(clock.now_ns()), op, outcome });
    (outcome, value)
}

async fn grant(client: &mut Client) -> (LeaseOp, Outcome, Option<i64>) {
    match client.lease_grant(TTL_SECS, None).await {
        Ok(response) => {
            (LeaseOp::Grant { lease: Some(response.id()), ttl_secs: response.ttl() }, Outcome::Ok, Some(response.id()))
        }
        Err(error) => {
            tracing::debug!(%error, "lease grant failed");
            (LeaseOp::Grant { lease: None, ttl_secs: TTL_SECS }, classify(&error), None)
        }
    }
}

async fn put(client: &mut Client, lease: i64, key: String) -> (LeaseOp, Outcome, ()) {
    let outcome = match client.put(key.as_str(), "", Some(PutOptions::new().with_lease(lease))).await {
        Ok(_) => Outcome::Ok,
        Err(error) => {
            tracing::debug!(%error, "lease put failed");
            classify(&error)
        }
    };
    (LeaseOp::Put { lease, key }, outcome, ())
}

/// One keeper: a lease with a key, kept alive until the deadline; a new one when it is gone.
async fn keep_loop(keeper: u64, urls: Arc<Endpoints>, clock: RunClock, deadline: Instant) -> Vec<LeaseOperation> {
    let mut operations = Vec::new();
    let mut client: Option<Client> = None;
    'leases: while Instant::now() < deadline {
        let Some(connected) = ensure_client(&mut client, &urls).await else { continue };
        let (_, lease) = record(&mut operations, keeper, clock, grant(connected)).await;
        let Some(lease) = lease else {
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        };
        let (outcome, ()) =
            record(&mut operations, keeper, clock, put(connected, lease, format!("{KEPT_PREFIX}{lease:x}"))).await;
        if outcome != Outcome::Ok {
            // The key may exist or not; the lease is left to expire and a new one started.
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        }
        let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut next = Instant::now() + KEEP_ALIVE_INTERVAL;
        while next < deadline {
            tokio::time::sleep_until(next).await;
            // After a slow call, the next one comes at once, not a burst of missed ones.
            next = (next + KEEP_ALIVE_INTERVAL).max(Instant::now());
            if stream.is_none() {
                // A new client too: the old one's connection may lead to a dead member.
                client = None;
                let Some(connected) = ensure_client(&mut client, &urls).await else { continue };
                match tokio::time::timeout(REQUEST_TIMEOUT, connected.lease_keep_alive(lease)).await {
                    Ok(Ok(opened)) => stream = Some(opened),
                    _ => continue,
                }
            }
            let Some((lease_keeper, responses)) = &mut stream else { continue };
            let (outcome, ttl_secs) =
                record(&mut operations, keeper, clock, keep_alive(lease_keeper, responses, lease)).await;
            match (outcome, ttl_secs) {
                (Outcome::Ok, 0) => continue 'leases,
                (Outcome::Ok, _) => {}
                _ => stream = None,
            }
        }
        // The deadline passed while this lease was kept.
        break;
    }
    operations
}

async fn keep_alive(
    keeper: &mut LeaseKeeper,
    responses: &mut LeaseKeepAliveStream,
    lease: i64,
) -> (LeaseOp, Outcome, i64) {
    let exchange = async {
        keeper.keep_alive().await?;
        responses.message().await
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(Some(response))) => (LeaseOp::KeepAlive { lease, ttl_secs: response.ttl() }, Outcome::Ok, response.ttl()),
        // A keep-alive that got no answer may still have renewed the lease.
        _ => (LeaseOp::KeepAlive { lease, ttl_secs: 0 }, Outcome::Indeterminate, 0),
    }
}

/// Grants a lease with a key every [`ABANDON_INTERVAL`] and never renews it.
async fn abandon_loop(urls: Arc<Endpoints>, clock: RunClock, deadline: Instant) -> Vec<LeaseOperation> {
    let mut operations = Vec::new();
    let mut client: Option<Client> = None;
    let mut next = Instant::now();
    while next < deadline {
        tokio::time::sleep_until(next).await;
        // After a slow call, the next one comes at once, not a burst of missed ones.
        next = (next + ABANDON_INTERVAL).max(Instant::now());
        let Some(connected) = ensure_client(&mut client, &urls).await else { continue };
        let (_, lease) = record(&mut operations, ABANDON_PROCESS, clock, grant(connected)).await;
        if let Some(lease) = lease {
            record(
                &mut operations,
                ABANDON_PROCESS,
                clock,
                put(connected, lease, format!("{ABANDONED_PREFIX}{lease:x}")),
            )
            .await;
        }
    }
    operations
}

async fn read_loop(urls: Arc<Endpoints>, clock: RunClock, deadline: Instant) -> Vec<LeaseOperation> {
    let mut operations = Vec::new();
    let mut client: Option<Client> = None;
    let mut next = Instant::now() + READ_INTERVAL;
    while next < deadline {
        tokio::time::sleep_until(next).await;
        // After a slow call, the next one comes at once, not a burst of missed ones.
        next = (next + READ_INTERVAL).max(Instant::now());
        let Some(connected) = ensure_client(&mut client, &urls).await else { continue };
        operations.push(read(connected, clock, false).await);
    }
    operations
}

async fn read(client: &mut Client, clock: RunClock, final_read: bool) -> LeaseOperation {
    let call_ns = clock.now_ns();
    let result = client.get(PREFIX, Some(GetOptions::new().with_prefix().with_keys_only())).await;
    let return_ns = clock.now_ns();
    let (keys, outcome) = match result {
        Ok(response) => {
            let mut keys: Vec<String> =
                response.kvs().iter().filter_map(|kv| kv.key_str().ok().map(str::to_string)).collect();
            keys.sort_unstable();
            (keys, Outcome::Ok)
        }
        // A read changes nothing: whatever went wrong, it is as if it never happened.
        Err(_) => (Vec::new(), Outcome::Fail),
    };
    LeaseOperation {
        process: READER_PROCESS,
        call_ns,
        return_ns: Some(return_ns),
        op: LeaseOp::Read { keys, final_read },
        outcome,
    }
}
