//! Writers that record what the cluster acknowledged, and the check that every acknowledged
//! write is still there: the durability tests' tools, shared by every test that kills members.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};

use crate::{wait_for_some, TestCluster, READY_TIMEOUT};

/// Concurrent writers during the fault.
pub const WRITERS: usize = 8;

/// Acknowledged writes: key -> value, and when each was acknowledged.
#[derive(Default)]
pub struct Acked {
    pub values: BTreeMap<String, String>,
    /// (sent, acknowledged) for every acknowledged write.
    pub ack_times: Vec<(Instant, Instant)>,
}

/// Runs `WRITERS` writers until `stop` is set; each writes unique keys and records the ones
/// the cluster acknowledged.
pub fn spawn_writers(
    client: &Client,
    acked: &Arc<Mutex<Acked>>,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|writer| {
            let mut client = client.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let key = format!("w{writer}-{seq:06}");
                    let value = format!("value-{writer}-{seq}");
                    let sent = Instant::now();
                    let result =
                        tokio::time::timeout(Duration::from_secs(10), client.put(key.clone(), value.clone(), None))
                            .await;
                    if let Ok(Ok(_)) = result {
                        let mut acked = acked.lock().expect("lock");
                        acked.values.insert(key, value);
                        acked.ack_times.push((sent, Instant::now()));
                    }
                    seq += 1;
                }
            })
        })
        .collect()
}

/// Every acknowledged write is readable, with its value, through member `i` (linearizably, so
/// a member that is still catching up answers only once it has).
pub async fn assert_all_present(cluster: &TestCluster, i: usize, acked: &BTreeMap<String, String>) {
    let client = cluster.member_client(i).await;
    let found: BTreeMap<String, String> = wait_for_some(READY_TIMEOUT, "a linearizable read of every key", || {
        let mut client = client.clone();
        async move {
            let response = client.get("w", Some(GetOptions::new().with_prefix())).await.ok()?;
            Some(
                response
                    .kvs()
                    .iter()
                    .map(|kv| {
                        (kv.key_str().unwrap_or_default().to_string(), kv.value_str().unwrap_or_default().to_string())
                    })
                    .collect(),
            )
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    let missing: Vec<&String> = acked.iter().filter(|(k, v)| found.get(*k) != Some(v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty(),
        "member {i} lost {} acknowledged writes, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
