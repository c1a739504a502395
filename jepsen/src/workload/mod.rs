//! The workloads: concurrent clients that drive a cluster and record what they saw, one module
//! per workload, each with the same verbs: `start` spawns its clients until the deadline,
//! `Running::finish` runs its final reads once the faults are healed and returns its history,
//! and its `check` module judges that history (pure: no I/O, no clock).
//!
//! | workload | clients | what its checker proves |
//! |---|---|---|
//! | [`register`] | etcd Get / Put / Txn compare-and-set on a few keys | linearizability (see [`crate::checker`]) |
//! | [`set`] | unique Puts under a prefix, periodic prefix reads | acknowledged elements never lost, none invented |
//! | [`lease`] | kept-alive and abandoned etcd leases with a key each | kept keys stay, abandoned keys go within TTL plus one election |
//! | [`watch`] | writers and several reconnecting watchers of one prefix | every watcher sees the same revisions, without gaps |
//! | [`events`] | Keel's native `Events/Publish` with ids, a tailing reader | offsets dense, acknowledged events kept, no duplicates |
//! | [`lock`] | etcd's Lock on kept-alive leases, fenced writes while holding it | fenced writes never out of order, none acknowledged lost |
//!
//! This module holds what they share: the configuration, error classification and the
//! [`Sample`]s the plots are drawn from. No workload judges its own history or touches the
//! cluster's processes.

pub mod events;
pub mod lease;
pub mod lock;
pub mod register;
pub mod set;
pub mod watch;

use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, Error};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::time::Instant;
use tonic::Code;

use crate::clock::RunClock;
use crate::history::Outcome;
use crate::nemesis::FaultRecord;
use crate::tls::Endpoints;
use crate::verdict::CheckReport;

/// Which workload; `--workload` takes several, and they run at the same time against one
/// cluster, each on its own keys (or, for events, its own topic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Register,
    Set,
    Lease,
    Watch,
    Events,
    Lock,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Set => "set",
            Workload::Lease => "lease",
            Workload::Watch => "watch",
            Workload::Events => "events",
            Workload::Lock => "lock",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    pub client_urls: Endpoints,
    /// Concurrent writers of each workload (the register's clients, the set's adders, the
    /// event publishers...). Readers, watchers and lease keepers come on top, a few each.
    pub concurrency: usize,
    pub seed: u64,
}

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Per request. A request that times out is indeterminate, so this also bounds how long after
/// the deadline the workload can run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before retrying a client that could not be built.
pub(crate) const CONNECT_RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// Pause of a client after a failed call: against a killed member a call fails in
/// microseconds, and without it a client would fill the history with refused connections.
pub(crate) const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Attempts of a final read before it is given up (recorded as not done).
pub(crate) const FINAL_READ_ATTEMPTS: usize = 10;

/// A workload's final read: `read` retried (reconnecting when needed) until an attempt
/// `succeeded` or `FINAL_READ_ATTEMPTS` are spent. Every attempt belongs to the history.
pub(crate) async fn read_until_done<Op>(
    client_urls: &Endpoints,
    mut read: impl for<'c> FnMut(&'c mut Client) -> futures::future::BoxFuture<'c, Op>,
    succeeded: impl Fn(&Op) -> bool,
) -> Vec<Op> {
    let mut operations = Vec::new();
    let mut client = None;
    for _ in 0..FINAL_READ_ATTEMPTS {
        let Some(connected) = ensure_client(&mut client, client_urls).await else { continue };
        let operation = read(connected).await;
        let done = succeeded(&operation);
        operations.push(operation);
        if done {
            break;
        }
        tokio::time::sleep(ERROR_BACKOFF).await;
    }
    operations
}

/// Everything the tasks of `tasks` recorded, task by task as they finish.
pub(crate) async fn joined<T: 'static>(tasks: &mut tokio::task::JoinSet<Vec<T>>) -> anyhow::Result<Vec<T>> {
    let mut recorded = Vec::new();
    while let Some(records) = tasks.join_next().await {
        recorded.extend(records?);
    }
    Ok(recorded)
}

/// One client call of any workload, for the plots: when, how long, and what it learned.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub workload: Workload,
    pub call_ns: u64,
    pub return_ns: u64,
    pub outcome: Outcome,
}

/// A workload's clients, running.
pub enum Running {
    Register(register::Running),
    Set(set::Running),
    Lease(lease::Running),
    Watch(watch::Running),
    Events(events::Running),
    Lock(lock::Running),
}

/// A workload's finished history, ready to check and write.
pub enum Recorded {
    Register(Vec<crate::history::Operation>),
    Set(set::check::SetHistory),
    Lease(lease::check::LeaseHistory),
    Watch(watch::check::WatchHistory),
    Events(events::check::EventsHistory),
    Lock(lock::check::LockHistory),
}

/// What a checker needs to know about the run besides the history.
#[derive(Clone, Debug)]
pub struct RunFacts {
    pub faults: Vec<FaultRecord>,
    /// When the cluster, healed, answered on every member again (`None`: it never did).
    pub recovered_ns: Option<u64>,
}

/// Spawns `workload`'s clients; they stop by themselves at `deadline`.
pub async fn start(workload: Workload, config: &WorkloadConfig, clock: RunClock, deadline: Instant) -> Running {
    match workload {
        Workload::Register => Running::Register(register::start(config, clock, deadline)),
        Workload::Set => Running::Set(set::start(config, clock, deadline)),
        Workload::Lease => Running::Lease(lease::start(config, clock, deadline)),
        Workload::Watch => Running::Watch(watch::start(config, clock, deadline).await),
        Workload::Events => Running::Events(events::start(config, clock, deadline).await),
        Workload::Lock => Running::Lock(lock::start(config, clock, deadline)),
    }
}

impl Running {
    /// Waits for the clients to stop, then (when the healed cluster recovered) runs the
    /// workload's final reads. An `Err` is a harness failure.
    pub async fn finish(self, client_urls: &Endpoints, clock: RunClock, recovered: bool) -> anyhow::Result<Recorded> {
        Ok(match self {
            Running::Register(running) => Recorded::Register(running.finish(client_urls, clock, recovered).await?),
            Running::Set(running) => Recorded::Set(running.finish(client_urls, clock, recovered).await?),
            Running::Lease(running) => Recorded::Lease(running.finish(client_urls, clock, recovered).await?),
            Running::Watch(running) => Recorded::Watch(running.finish(client_urls, clock, recovered).await?),
            Running::Events(running) => Recorded::Events(running.finish(client_urls, clock, recovered).await?),
            Running::Lock(running) => Recorded::Lock(running.finish(client_urls, clock, recovered).await?),
        })
    }
}

impl Recorded {
    pub fn workload(&self) -> Workload {
        match self {
            Recorded::Register(_) => Workload::Register,
            Recorded::Set(_) => Workload::Set,
            Recorded::Lease(_) => Workload::Lease,
            Recorded::Watch(_) => Workload::Watch,
            Recorded::Events(_) => Workload::Events,
            Recorded::Lock(_) => Workload::Lock,
        }
    }

    /// Every client call with a return, for the plots.
    pub fn samples(&self) -> Vec<Sample> {
        let workload = self.workload();
        let sample = |call_ns, return_ns: Option<u64>, outcome| {
            return_ns.map(|return_ns| Sample { workload, call_ns, return_ns, outcome })
        };
        match self {
            Recorded::Register(history) => history
                .iter()
                .filter_map(|operation| sample(operation.call_ns, operation.return_ns, operation.outcome))
                .collect(),
            Recorded::Set(history) => {
                history.calls().filter_map(|(call, ret, outcome)| sample(call, ret, outcome)).collect()
            }
            Recorded::Lease(history) => {
                history.calls().filter_map(|(call, ret, outcome)| sample(call, ret, outcome)).collect()
            }
            Recorded::Watch(history) => {
                history.calls().filter_map(|(call, ret, outcome)| sample(call, ret, outcome)).collect()
            }
            Recorded::Events(history) => {
                history.calls().filter_map(|(call, ret, outcome)| sample(call, ret, outcome)).collect()
            }
            Recorded::Lock(history) => {
                history.calls().filter_map(|(call, ret, outcome)| sample(call, ret, outcome)).collect()
            }
        }
    }

    /// Runs the workload's checker; CPU-bound, so call it off the async threads.
    pub fn check(&self, facts: &RunFacts) -> CheckReport {
        match self {
            Recorded::Register(history) => register::check(history),
            Recorded::Set(history) => set::check::check(history),
            Recorded::Lease(history) => lease::check::check(history, facts),
            Recorded::Watch(history) => watch::check::check(history, facts),
            Recorded::Events(history) => events::check::check(history),
            Recorded::Lock(history) => lock::check::check(history),
        }
    }

    /// Writes the history into the run directory: `history.jsonl` for the register (the
    /// format [`crate::history::read_json_lines`] reads back), `<workload>.json` otherwise.
    pub fn write(&self, out_dir: &Path) -> anyhow::Result<()> {
        use std::fs::File;
        use std::io::BufWriter;
        let create = |name: &str| -> anyhow::Result<BufWriter<File>> {
            let path = out_dir.join(name);
            Ok(BufWriter::new(
                File::create(&path).map_err(|error| anyhow::anyhow!("creating {}: {error}", path.display()))?,
            ))
        };
        match self {
            Recorded::Register(history) => crate::history::write_json_lines(create("history.jsonl")?, history)?,
            Recorded::Set(history) => serde_json::to_writer(create("set.json")?, history)?,
            Recorded::Lease(history) => serde_json::to_writer(create("lease.json")?, history)?,
            Recorded::Watch(history) => serde_json::to_writer(create("watch.json")?, history)?,
            Recorded::Events(history) => serde_json::to_writer(create("events.json")?, history)?,
            Recorded::Lock(history) => serde_json::to_writer(create("lock.json")?, history)?,
        }
        Ok(())
    }
}

/// Whether a failed etcd call may have taken effect. Only errors etcd raises before proposing
/// anything are definite; a timeout, a broken connection, "no leader" or "request timed out"
/// (Unavailable) may have been applied. Calling a definite error indeterminate can only hide
/// an anomaly; the reverse could invent one, so the list is short.
pub fn classify(error: &Error) -> Outcome {
    match error {
        // Rejected by the client library before sending anything.
        Error::InvalidArgs(_) | Error::InvalidUri(_) => Outcome::Fail,
        Error::GRpcStatus(status) => match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::NotFound => Outcome::Fail,
            _ => Outcome::Indeterminate,
        },
        _ => Outcome::Indeterminate,
    }
}

/// An etcd client over every member, with per-request timeouts.
pub(crate) async fn connect(client_urls: &Endpoints) -> Result<Client, Error> {
    let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(REQUEST_TIMEOUT);
    Client::connect(client_urls.urls(), Some(client_urls.etcd_options(options))).await
}

/// The client, connecting first if needed; `None` after a failed connect (and a pause).
pub(crate) async fn ensure_client<'a>(
    client: &'a mut Option<Client>,
    client_urls: &Endpoints,
) -> Option<&'a mut Client> {
    if client.is_none() {
        match connect(client_urls).await {
            Ok(connected) => *client = Some(connected),
            Err(error) => {
                tracing::debug!(%error, "client connect failed");
                tokio::time::sleep(CONNECT_RETRY_INTERVAL).await;
                return None;
            }
        }
    }
    client.as_mut()
}

/// The random source of one client of one workload: a function of the seed, so a run's
/// choices repeat with it.
pub(crate) fn client_rng(seed: u64, workload: Workload, client: usize) -> StdRng {
    let salt = (workload as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    StdRng::seed_from_u64(seed ^ salt ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_separates_definite_from_maybe_applied() {
        let status = |code, message: &str| Error::GRpcStatus(tonic::Status::new(code, message));
        assert_eq!(classify(&status(Code::InvalidArgument, "etcdserver: key is not provided")), Outcome::Fail);
        assert_eq!(classify(&status(Code::Unavailable, "etcdserver: request timed out")), Outcome::Indeterminate);
        assert_eq!(classify(&status(Code::Unavailable, "etcdserver: no leader")), Outcome::Indeterminate);
        assert_eq!(classify(&status(Code::DeadlineExceeded, "timeout")), Outcome::Indeterminate);
        assert_eq!(classify(&status(Code::Unknown, "transport")), Outcome::Indeterminate);
        assert_eq!(classify(&Error::InvalidArgs("empty key".into())), Outcome::Fail);
    }
}
