//! The lock workload, over etcd's Lock API (what `etcdctl lock` uses): `config.concurrency`
//! clients each, in a loop, grant a lease of [`TTL_SECS`] and keep it alive, lock
//! [`LOCK_NAME`] on it, read the lock key's create revision (the fencing token), make
//! [`WRITES_PER_HOLD`] fenced writes — a txn that puts `k/<client>-<sequence>` = token only while
//! the lock key still exists with that create revision — then unlock and revoke the lease. A
//! final read of every fenced write after healing. See [`check`] for what is checked: that
//! fenced writes are never out of order (a lock that two clients hold at once would interleave
//! their tokens), and that none acknowledged is lost.

pub mod check;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, LockOptions, Txn, TxnOp};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::check::{FencedWrite, LockHistory, LockOp, LockOperation};
use super::{classify, ensure_client, joined, read_until_done, WorkloadConfig, ERROR_BACKOFF};
use crate::clock::RunClock;
use crate::history::Outcome;
use crate::tls::Endpoints;

/// The lock every client contends for.
pub const LOCK_NAME: &str = "k-lock";
/// Every fenced write's key starts with this; no other workload writes under it.
pub const PREFIX: &str = "k/";
/// The sessions' lease TTL: a holder cut off longer than this loses the lock.
pub const TTL_SECS: i64 = 2;
/// Keep-alives per TTL: four, so one lost is harmless.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(500);
pub const WRITES_PER_HOLD: usize = 3;
/// How long a client waits for the lock before it gives up and starts over.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Running {
    clients: JoinSet<Vec<LockOperation>>,
}

/// Spawns `config.concurrency` lock clients until `deadline`.
pub fn start(config: &WorkloadConfig, clock: RunClock, deadline: Instant) -> Running {
    let urls = Arc::new(config.client_urls.clone());
    let mut clients = JoinSet::new();
    for client in 0..config.concurrency {
        clients.spawn(hold_loop(client as u64, Arc::clone(&urls), clock, deadline));
    }
    Running { clients }
}

impl Running {
    pub async fn finish(
        mut self,
        client_urls: &Endpoints,
        clock: RunClock,
        recovered: bool,
    ) -> anyhow::Result<LockHistory> {
        let mut operations = joined(&mut self.clients).await?;
        if recovered {
            operations.extend(final_read(client_urls, clock).await);
        }
        operations.sort_by_key(|operation| operation.call_ns);
        Ok(LockHistory { operations })
    }
}

async fn hold_loop(process: u64, urls: Arc<Endpoints>, clock: RunClock, deadline: Instant) -> Vec<LockOperation> {
    let mut operations = Vec::new();
    let mut client: Option<Client> = None;
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        let Some(connected) = ensure_client(&mut client, &urls).await else { continue };
        let held = hold_once(connected, process, &mut sequence, clock, &mut operations).await;
        if !held {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    operations
}

/// One session: lease, lock, fenced writes, unlock. Answers whether it got as far as writing.
async fn hold_once(
    client: &mut Client,
    process: u64,
    sequence: &mut u64,
    clock: RunClock,
    operations: &mut Vec<LockOperation>,
) -> bool {
    let Ok(lease) = client.lease_grant(TTL_SECS, None).await.map(|granted| granted.id()) else { return false };
    let keeper = tokio::spawn(keep_alive(client.clone(), lease));
    let held = match lock(client, lease).await {
        Some((key, token)) => {
            fenced_writes(client, process, sequence, &key, token, clock, operations).await;
            let _ = client.unlock(key).await;
            true
        }
        None => false,
    };
    keeper.abort();
    let _ = client.lease_revoke(lease).await;
    held
}

/// The lock's key and fencing token, or `None` if locking failed or took too long.
async fn lock(client: &mut Client, lease: i64) -> Option<(Vec<u8>, i64)> {
    let options = LockOptions::new().with_lease(lease);
    let locked = tokio::time::timeout(LOCK_TIMEOUT, client.lock(LOCK_NAME, Some(options))).await.ok()?.ok()?;
    let key = locked.key().to_vec();
    let found = client.get(key.clone(), None).await.ok()?;
    let token = found.kvs().first()?.create_revision();
    Some((key, token))
}

async fn fenced_writes(
    client: &mut Client,
    process: u64,
    sequence: &mut u64,
    lock_key: &[u8],
    token: i64,
    clock: RunClock,
    operations: &mut Vec<LockOperation>,
) {
    for _ in 0..WRITES_PER_HOLD {
        let key = format!("{PREFIX}{process:04}-{sequence:08}");
        *sequence += 1;
        let still_held = Compare::create_revision(lock_key.to_vec(), CompareOp::Equal, token);
        let txn = Txn::new().when([still_held]).and_then([TxnOp::put(key.clone(), token.to_string(), None)]);
        let call_ns = clock.now_ns();
        let result = client.txn(txn).await;
        let return_ns = clock.now_ns();
        let outcome = match &result {
            Ok(response) if response.succeeded() => Outcome::Ok,
            // The compare failed: the lock was lost; nothing was written.
            Ok(_) => Outcome::Fail,
            Err(error) => classify(error),
        };
        operations.push(LockOperation {
            process,
            call_ns,
            return_ns: Some(return_ns),
            op: LockOp::Write(FencedWrite { key, token }),
            outcome,
        });
        if outcome != Outcome::Ok {
            return;
        }
    }
}

async fn keep_alive(mut client: Client, lease: i64) {
    let Ok((mut keeper, mut stream)) = client.lease_keep_alive(lease).await else { return };
    loop {
        tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
        if keeper.keep_alive().await.is_err() || !matches!(stream.message().await, Ok(Some(_))) {
            return;
        }
    }
}

async fn final_read(client_urls: &Endpoints, clock: RunClock) -> Vec<LockOperation> {
    read_until_done(client_urls, |client| Box::pin(read(client, clock)), |read| read.outcome == Outcome::Ok).await
}

async fn read(client: &mut Client, clock: RunClock) -> LockOperation {
    let call_ns = clock.now_ns();
    let result = client.get(PREFIX, Some(GetOptions::new().with_prefix())).await;
    let return_ns = clock.now_ns();
    let (writes, outcome) = match result {
        Ok(response) => {
            let writes = response
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let token = kv.value_str().ok()?.parse().ok()?;
                    Some((kv.mod_revision(), FencedWrite { key: kv.key_str().ok()?.to_string(), token }))
                })
                .collect();
            (writes, Outcome::Ok)
        }
        Err(error) => {
            tracing::debug!(%error, "lock final read failed");
            (Vec::new(), Outcome::Fail)
        }
    };
    LockOperation { process: u64::MAX, call_ns, return_ns: Some(return_ns), op: LockOp::FinalRead { writes }, outcome }
}
