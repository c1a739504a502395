//! The set workload: clients add unique elements (each a Put of its own key under
//! [`PREFIX`]), one reader reads the whole prefix every [`READ_INTERVAL`], and a final read
//! after healing must hold every acknowledged element. See [`check`] for what is checked.

pub mod check;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::check::{SetHistory, SetOp, SetOperation};
use super::{classify, ensure_client, joined, read_until_done, WorkloadConfig, ERROR_BACKOFF};
use crate::clock::RunClock;
use crate::history::Outcome;
use crate::tls::Endpoints;

/// Every element's key starts with this; no other workload writes under it.
pub const PREFIX: &str = "s/";
/// Between two reads of the reader. A read returns the whole set, so reads are kept rare: the
/// history holds reads × elements numbers.
pub const READ_INTERVAL: Duration = Duration::from_secs(1);
/// Elements added by all clients together, at most: bounds the size of every read (each key
/// is about 20 bytes, so a read stays under 2 MB, below the gRPC message limit).
pub const ELEMENTS_MAX: usize = 100_000;
/// The process id of the reader, apart from every adder's.
const READER_PROCESS: u64 = u64::MAX - 1;

pub struct Running {
    adders: JoinSet<Vec<SetOperation>>,
    reader: JoinSet<Vec<SetOperation>>,
}

/// Spawns `config.concurrency` adders and one reader until `deadline`.
pub fn start(config: &WorkloadConfig, clock: RunClock, deadline: Instant) -> Running {
    let config = Arc::new(config.clone());
    let mut adders = JoinSet::new();
    for adder in 0..config.concurrency {
        adders.spawn(add_loop(adder, Arc::clone(&config), clock, deadline));
    }
    let mut reader = JoinSet::new();
    reader.spawn(read_loop(Arc::clone(&config), clock, deadline));
    Running { adders, reader }
}

impl Running {
    pub async fn finish(
        mut self,
        client_urls: &Endpoints,
        clock: RunClock,
        recovered: bool,
    ) -> anyhow::Result<SetHistory> {
        let mut operations = joined(&mut self.adders).await?;
        operations.extend(joined(&mut self.reader).await?);
        if recovered {
            operations.extend(final_read(client_urls, clock).await);
        }
        operations.sort_by_key(|operation| operation.call_ns);
        Ok(SetHistory { operations })
    }
}

/// Element of client `adder`'s `sequence`-th add: unique across clients and processes.
fn element(adder: usize, sequence: u64) -> u64 {
    ((adder as u64) << 32) | sequence
}

fn key(element: u64) -> String {
    format!("{PREFIX}{element:016x}")
}

async fn add_loop(adder: usize, config: Arc<WorkloadConfig>, clock: RunClock, deadline: Instant) -> Vec<SetOperation> {
    let elements_max = (ELEMENTS_MAX / config.concurrency.max(1)) as u64;
    // As in the register workload: after an indeterminate add the client is a new process.
    let mut process = adder as u64;
    let mut operations = Vec::new();
    let mut client: Option<Client> = None;
    let mut sequence = 0;
    while Instant::now() < deadline && sequence < elements_max {
        let Some(connected) = ensure_client(&mut client, &config.client_urls).await else { continue };
        let element = element(adder, sequence);
        sequence += 1;
        let call_ns = clock.now_ns();
        let outcome = match connected.put(key(element), "", None).await {
            Ok(_) => Outcome::Ok,
            Err(error) => {
                tracing::debug!(%error, "set add failed");
                classify(&error)
            }
        };
        let return_ns = clock.now_ns();
        operations.push(SetOperation {
            process,
            call_ns,
            return_ns: Some(return_ns),
            op: SetOp::Add { element },
            outcome,
        });
        if outcome != Outcome::Ok {
            if outcome == Outcome::Indeterminate {
                process += config.concurrency as u64;
            }
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    operations
}

async fn read_loop(config: Arc<WorkloadConfig>, clock: RunClock, deadline: Instant) -> Vec<SetOperation> {
    let mut operations = Vec::new();
    let mut client: Option<Client> = None;
    let mut next = Instant::now() + READ_INTERVAL;
    while next < deadline {
        tokio::time::sleep_until(next).await;
        // After a slow call, the next one comes at once, not a burst of missed ones.
        next = (next + READ_INTERVAL).max(Instant::now());
        let Some(connected) = ensure_client(&mut client, &config.client_urls).await else { continue };
        operations.push(read(connected, clock, false).await);
    }
    operations
}

/// The read every acknowledged element must be in; retried until one succeeds.
async fn final_read(client_urls: &Endpoints, clock: RunClock) -> Vec<SetOperation> {
    read_until_done(client_urls, |client| Box::pin(read(client, clock, true)), |read| read.outcome == Outcome::Ok).await
}

async fn read(client: &mut Client, clock: RunClock, final_read: bool) -> SetOperation {
    let call_ns = clock.now_ns();
    let result = client.get(PREFIX, Some(GetOptions::new().with_prefix().with_keys_only())).await;
    let return_ns = clock.now_ns();
    let (elements, outcome) = match result {
        Ok(response) => {
            let mut elements: Vec<u64> = response
                .kvs()
                .iter()
                .filter_map(|kv| {
                    kv.key_str().ok()?.strip_prefix(PREFIX).and_then(|hex| u64::from_str_radix(hex, 16).ok())
                })
                .collect();
            elements.sort_unstable();
            (elements, Outcome::Ok)
        }
        Err(error) => {
            tracing::debug!(%error, "set read failed");
            // A read changes nothing: whatever went wrong, it is as if it never happened.
            (Vec::new(), Outcome::Fail)
        }
    };
    SetOperation {
        process: READER_PROCESS,
        call_ns,
        return_ns: Some(return_ns),
        op: SetOp::Read { elements, final_read },
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_unique_and_keys_sort_like_elements() {
        assert_ne!(element(1, 0), element(0, 1));
        assert_eq!(element(3, 5) >> 32, 3);
        assert!(key(element(0, 9)) < key(element(1, 0)));
        assert_eq!(key(element(0, 255)), "s/00000000000000ff");
    }
}
