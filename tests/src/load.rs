//! Writers that route each request to one of a set of members the test chooses (as a load
//! balancer drains a member before its restart, or adds a new one), recording every
//! acknowledged write and every failure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::Client;

use crate::TestCluster;

/// The load and what it saw.
pub struct Load {
    /// (member index, its client): where requests may go now.
    targets: Arc<Mutex<Vec<(usize, Client)>>>,
    pub acked: Arc<Mutex<BTreeMap<String, String>>>,
    pub failures: Arc<Mutex<Vec<String>>>,
    /// Requests in flight, by member.
    in_flight: Arc<Mutex<BTreeMap<usize, usize>>>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `writers` writers of unique keys, spread over every member of `cluster`.
    pub async fn start(cluster: &TestCluster, writers: usize) -> Load {
        let mut targets = Vec::new();
        for i in 0..cluster.members.len() {
            targets.push((i, cluster.member_client(i).await));
        }
        let mut load = Load {
            targets: Arc::new(Mutex::new(targets)),
            acked: Arc::default(),
            failures: Arc::default(),
            in_flight: Arc::default(),
            stop: Arc::default(),
            writers: Vec::new(),
        };
        load.writers = (0..writers).map(|writer| load.spawn_writer(writer)).collect();
        load
    }

    /// No new request goes to member `i` (requests in flight there finish).
    pub fn avoid(&self, i: usize) {
        self.targets.lock().expect("lock").retain(|(member, _)| *member != i);
    }

    /// No new request goes to member `i`, and those in flight there have finished: it can be
    /// killed without failing one.
    pub async fn drain(&self, i: usize, cluster: &TestCluster) {
        self.avoid(i);
        crate::wait_for(Duration::from_secs(30), "requests in flight to finish", || async move {
            self.in_flight.lock().expect("lock").get(&i).copied().unwrap_or(0) == 0
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    }

    /// Requests go to member `i` too, through `client`.
    pub fn include(&self, i: usize, client: Client) {
        let mut targets = self.targets.lock().expect("lock");
        targets.retain(|(member, _)| *member != i);
        targets.push((i, client));
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    /// Waits until `more` writes past the ones acknowledged so far are acknowledged.
    pub async fn wait_for_more_acks(&self, more: usize, cluster: &TestCluster) {
        let target = self.acked_count() + more;
        crate::wait_for(Duration::from_secs(30), "writes to be acknowledged", || async move {
            self.acked_count() >= target
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    }

    /// Stops the writers and answers what was acknowledged and what failed.
    pub async fn stop(self) -> (BTreeMap<String, String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for writer in self.writers {
            let _ = writer.await;
        }
        let acked = self.acked.lock().expect("lock").clone();
        let failures = self.failures.lock().expect("lock").clone();
        (acked, failures)
    }

    fn spawn_writer(&self, writer: usize) -> tokio::task::JoinHandle<()> {
        let targets = self.targets.clone();
        let (acked, failures, stop) = (self.acked.clone(), self.failures.clone(), self.stop.clone());
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let mut seq = 0usize;
            while !stop.load(Ordering::SeqCst) {
                // Chosen and counted under one lock: `drain` never misses a request on its way.
                let target = {
                    let targets = targets.lock().expect("lock");
                    let target = targets.get((writer + seq) % targets.len().max(1)).cloned();
                    if let Some((member, _)) = &target {
                        *in_flight.lock().expect("lock").entry(*member).or_default() += 1;
                    }
                    target
                };
                let Some((member, mut client)) = target else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (key, value) = (format!("w{writer}-{seq:06}"), format!("v{seq}"));
                let result =
                    tokio::time::timeout(Duration::from_secs(10), client.put(key.clone(), value.clone(), None)).await;
                *in_flight.lock().expect("lock").entry(member).or_default() -= 1;
                match result {
                    Ok(Ok(_)) => {
                        acked.lock().expect("lock").insert(key, value);
                    }
                    Ok(Err(error)) => failures.lock().expect("lock").push(format!("member {member}: {error}")),
                    Err(_) => failures.lock().expect("lock").push(format!("member {member}: timed out")),
                }
                seq += 1;
            }
        })
    }
}
