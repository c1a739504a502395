//! Resource figures of a cluster: resident memory per member (VmRSS from /proc) when idle and
//! after loading keys, the data dir's size on disk, and the time from restarting every member
//! to a cluster that serves linearizable gets again.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, System};
use crate::pool::Pool;
use crate::workload::kv;

/// The keys loaded for the memory figures; apart from the workloads' key spaces.
pub const LOAD_PREFIX: &str = "keel-bench/load/";
const MIB: f64 = 1_048_576.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberResources {
    pub name: String,
    pub rss_idle_mib: f64,
    pub rss_loaded_mib: f64,
    pub data_dir_mib: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceRow {
    pub system: System,
    pub keys: u64,
    pub value_size: usize,
    pub load_s: f64,
    pub members: Vec<MemberResources>,
    /// From starting every member again (after SIGTERM to all) to every member serving a
    /// linearizable get with the same leader.
    pub restart_to_healthy_ms: f64,
}

impl ResourceRow {
    pub fn mean(&self, field: fn(&MemberResources) -> f64) -> f64 {
        if self.members.is_empty() {
            return 0.0;
        }
        self.members.iter().map(field).sum::<f64>() / self.members.len() as f64
    }
}

/// The `VmRSS` of a /proc/<pid>/status text, in bytes.
pub fn parse_vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let amount: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => amount.checked_mul(1_024),
        _ => None,
    }
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_vm_rss_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Bytes allocated on disk under `path` (what `du` counts), following no symlinks.
pub fn disk_usage_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return 0 };
    // st_blocks is in 512-byte units whatever the filesystem's block size.
    let own = metadata.blocks() * 512;
    if !metadata.is_dir() {
        return own;
    }
    let children = std::fs::read_dir(path).into_iter().flatten().flatten();
    own + children.map(|entry| disk_usage_bytes(&entry.path())).sum::<u64>()
}

fn rss_mib(cluster: &Cluster) -> Vec<f64> {
    cluster.members.iter().map(|m| m.pid().and_then(rss_bytes).map_or(0.0, |b| b as f64 / MIB)).collect()
}

/// Loads `keys` keys into `cluster`, takes the figures, then restarts every member and times it.
pub async fn measure(cluster: &mut Cluster, keys: u64, value_size: usize, label: &str) -> anyhow::Result<ResourceRow> {
    let idle = rss_mib(cluster);
    let pool = Pool::connect(&cluster.endpoints(), &cluster.access(), kv::LOAD_CONCURRENCY).await?;
    let load = kv::load(&pool, LOAD_PREFIX, keys, value_size, label).await?;
    drop(pool);
    let loaded = rss_mib(cluster);
    let members = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| MemberResources {
            name: m.name.clone(),
            rss_idle_mib: idle[i],
            rss_loaded_mib: loaded[i],
            data_dir_mib: disk_usage_bytes(&m.data_dir) as f64 / MIB,
        })
        .collect();
    eprintln!("{label}: restarting every member");
    cluster.stop_all().await?;
    let restarted = Instant::now();
    cluster.start_all()?;
    cluster.wait_ready().await?;
    Ok(ResourceRow {
        system: cluster.spec.system,
        keys,
        value_size,
        load_s: load.as_secs_f64(),
        members,
        restart_to_healthy_ms: restarted.elapsed().as_secs_f64() * 1_000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\tetcd\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss_bytes(status), Some(51_234 * 1_024));
        assert_eq!(parse_vm_rss_bytes("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss_bytes("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_bytes(std::process::id()).is_some_and(|bytes| bytes > 0));
    }

    #[test]
    fn disk_usage_counts_nested_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("sub")).expect("sub dir");
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 100_000]).expect("write");
        let usage = disk_usage_bytes(dir.path());
        assert!(usage >= 100_000, "{usage}");
        assert_eq!(disk_usage_bytes(&dir.path().join("missing")), 0);
    }

    #[test]
    fn means_over_members() {
        let member =
            |rss: f64| MemberResources { name: "m".into(), rss_idle_mib: 0.0, rss_loaded_mib: rss, data_dir_mib: 1.0 };
        let row = ResourceRow {
            system: System::Keel,
            keys: 1,
            value_size: 1,
            load_s: 0.0,
            members: vec![member(10.0), member(20.0)],
            restart_to_healthy_ms: 0.0,
        };
        assert_eq!(row.mean(|m| m.rss_loaded_mib), 15.0);
    }
}
