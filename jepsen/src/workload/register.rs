//! The register workload: concurrent etcd clients doing linearizable reads, unique writes and
//! compare-and-set transactions on a few keys, recorded as [`Operation`]s, and one more read
//! of every key after healing. [`check`] hands the history to the linearizability checker
//! ([`crate::checker`]) and names what it found.
//!
//! The clients record what they saw and classify errors; they never judge the history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{classify, client_rng, connect, joined, Workload, WorkloadConfig, CONNECT_RETRY_INTERVAL, ERROR_BACKOFF};
use crate::checker::{CheckBudget, Verdict, Violation};
use crate::clock::RunClock;
use crate::history::{OpKind, Operation, Outcome};
use crate::tls::Endpoints;
use crate::verdict::{CheckReport, Findings};

/// Keys `r0..r7`: few enough that clients contend, many enough that each key's sub-history
/// stays small for the checker.
pub const KEYS: usize = 8;
/// Operations recorded by all clients together; a client stops at its share. Bounds the
/// history's memory and the checker's work.
pub const OPERATIONS_MAX: usize = 1_000_000;
/// Process id of the final reads, apart from every worker's.
pub const FINAL_READ_PROCESS: u64 = u64::MAX;
/// The checker's bounds: past them the verdict is Unknown (exit 2), never a guess.
pub const CHECK_BUDGET: CheckBudget = CheckBudget { time: Duration::from_secs(60), states_max: 5_000_000 };

/// The register's clients, running.
pub struct Running {
    workers: JoinSet<Vec<Operation>>,
}

/// Spawns `config.concurrency` clients until `deadline`.
pub fn start(config: &WorkloadConfig, clock: RunClock, deadline: Instant) -> Running {
    let config = Arc::new(config.clone());
    let mut workers = JoinSet::new();
    for worker in 0..config.concurrency {
        workers.spawn(worker_loop(worker, Arc::clone(&config), clock, deadline));
    }
    Running { workers }
}

impl Running {
    /// The clients' operations by call time, then (if the cluster recovered) one more read of
    /// every key.
    pub async fn finish(
        mut self,
        client_urls: &Endpoints,
        clock: RunClock,
        recovered: bool,
    ) -> anyhow::Result<Vec<Operation>> {
        let mut history = joined(&mut self.workers).await?;
        history.sort_by_key(|operation| operation.call_ns);
        if recovered {
            history.extend(final_reads(client_urls, clock).await);
        }
        Ok(history)
    }
}

/// Linearizability of every key, within [`CHECK_BUDGET`].
pub fn check(history: &[Operation]) -> CheckReport {
    let mut findings = Findings::new(Workload::Register, history.len());
    findings.stat(
        "keys",
        history.iter().map(|operation| operation.key.as_str()).collect::<std::collections::HashSet<_>>().len() as u64,
    );
    match crate::checker::check(history, CHECK_BUDGET) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(counterexample) => {
            let name = match counterexample.violation {
                Violation::ValueNeverWritten => "read-of-unwritten-value",
                Violation::NoLinearization { .. } => "not-linearizable",
            };
            findings.anomaly(name, || counterexample.to_string());
        }
        Verdict::Unknown { reason } => findings.unknown(reason),
    }
    findings.report()
}

/// One linearizable read of every key, after the faults are healed: a write that was
/// acknowledged and then lost shows up here even if no client read the key later.
pub async fn final_reads(client_urls: &Endpoints, clock: RunClock) -> Vec<Operation> {
    let mut history = Vec::with_capacity(KEYS);
    let Ok(mut client) = connect(client_urls).await else {
        return history;
    };
    for key in 0..KEYS {
        let key = format!("r{key}");
        let call_ns = clock.now_ns();
        let (kind, outcome) = read(&mut client, &key).await;
        history.push(Operation {
            process: FINAL_READ_PROCESS,
            key,
            call_ns,
            return_ns: Some(clock.now_ns()),
            kind,
            outcome,
        });
    }
    history
}

async fn worker_loop(worker: usize, config: Arc<WorkloadConfig>, clock: RunClock, deadline: Instant) -> Vec<Operation> {
    let worker_id = worker as u64;
    let concurrency = config.concurrency as u64;
    let operations_max = OPERATIONS_MAX / config.concurrency.max(1);
    let mut rng = client_rng(config.seed, Workload::Register, worker);
    // A process has at most one call in flight: after an indeterminate call (which may still
    // take effect) the worker continues as a new process, as Jepsen does.
    let mut process = worker_id;
    let mut sequence: u64 = 0;
    // The last value this worker saw for each key: what its CAS expects.
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut history = Vec::new();
    let mut client: Option<Client> = None;
    while Instant::now() < deadline && history.len() < operations_max {
        let client = match &mut client {
            Some(client) => client,
            None => match connect(&config.client_urls).await {
                Ok(connected) => client.insert(connected),
                Err(error) => {
                    tracing::debug!(%error, "client connect failed");
                    tokio::time::sleep(CONNECT_RETRY_INTERVAL).await;
                    continue;
                }
            },
        };
        let key = format!("r{}", rng.random_range(0..KEYS));
        let roll = rng.random_range(0..4);
        let call_ns = clock.now_ns();
        let (kind, outcome) = match (roll, seen.get(&key).cloned()) {
            (0 | 1, _) => read(client, &key).await,
            (3, Some(expected)) => {
                let new = format!("{process}-{sequence}");
                sequence += 1;
                let (kind, outcome, current) = cas(client, &key, expected, new).await;
                if let Some(current) = current {
                    seen.insert(key.clone(), current);
                }
                (kind, outcome)
            }
            _ => {
                let value = format!("{process}-{sequence}");
                sequence += 1;
                write(client, &key, value).await
            }
        };
        let return_ns = clock.now_ns();
        remember(&mut seen, &key, &kind, outcome);
        history.push(Operation { process, key, call_ns, return_ns: Some(return_ns), kind, outcome });
        if outcome == Outcome::Indeterminate {
            process += concurrency;
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    history
}

/// What a CAS should expect next: the value the register was last seen to hold.
fn remember(seen: &mut HashMap<String, String>, key: &str, kind: &OpKind, outcome: Outcome) {
    if outcome != Outcome::Ok {
        return;
    }
    let value = match kind {
        OpKind::Read { value } => value.clone(),
        OpKind::Write { value } => Some(value.clone()),
        OpKind::Cas { new, .. } => Some(new.clone()),
    };
    if let Some(value) = value {
        seen.insert(key.to_string(), value);
    }
}

async fn read(client: &mut Client, key: &str) -> (OpKind, Outcome) {
    // A plain `get` is linearizable in etcd's API (serializable is opt-in).
    match client.get(key, None).await {
        Ok(response) => {
            let value = response.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
            (OpKind::Read { value }, Outcome::Ok)
        }
        Err(error) => {
            tracing::debug!(key, %error, "read failed");
            (OpKind::Read { value: None }, classify(&error))
        }
    }
}

async fn write(client: &mut Client, key: &str, value: String) -> (OpKind, Outcome) {
    let outcome = match client.put(key, value.as_str(), None).await {
        Ok(_) => Outcome::Ok,
        Err(error) => {
            tracing::debug!(key, %error, "write failed");
            classify(&error)
        }
    };
    (OpKind::Write { value }, outcome)
}

/// A CAS whose comparison fails is `Fail`: it took no effect. Its `else` branch reads the key,
/// so the worker learns what to expect next time; that read is not recorded (it is not an
/// operation of the history, only a hint).
async fn cas(client: &mut Client, key: &str, expected: String, new: String) -> (OpKind, Outcome, Option<String>) {
    let txn = Txn::new()
        .when([Compare::value(key, CompareOp::Equal, expected.as_str())])
        .and_then([TxnOp::put(key, new.as_str(), None)])
        .or_else([TxnOp::get(key, None)]);
    let (outcome, current) = match client.txn(txn).await {
        Ok(response) if response.succeeded() => (Outcome::Ok, None),
        Ok(response) => {
            let current = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            });
            (Outcome::Fail, current)
        }
        Err(error) => {
            tracing::debug!(key, %error, "cas failed");
            (classify(&error), None)
        }
    };
    (OpKind::Cas { expected, new }, outcome, current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_expects_the_last_value_seen() {
        let mut seen = HashMap::new();
        remember(&mut seen, "r0", &OpKind::Write { value: "0-0".into() }, Outcome::Ok);
        remember(&mut seen, "r0", &OpKind::Write { value: "1-0".into() }, Outcome::Indeterminate);
        assert_eq!(seen["r0"], "0-0");
        remember(&mut seen, "r0", &OpKind::Read { value: None }, Outcome::Ok);
        assert_eq!(seen["r0"], "0-0", "an absent key gives nothing to expect");
        remember(&mut seen, "r0", &OpKind::Cas { expected: "0-0".into(), new: "0-1".into() }, Outcome::Ok);
        assert_eq!(seen["r0"], "0-1");
    }
}
