//! `keelctl snapshot save|status|restore`: backups, as etcdctl's `snapshot` commands. `save`
//! streams Maintenance.Snapshot from a member into a file (through `FILE.part`, synced, then
//! renamed) and verifies its checksum; `status` and `restore` work on the file alone, offline.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use keel_client::ConnectOptions;
use keel_node::member::restore::{self, RestoreOptions};

use crate::output::{line, table};
use crate::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream a consistent backup of the cluster's state from the first member that answers.
    Save {
        /// Where to write it.
        file: PathBuf,
    },
    /// Verify a backup file and show what it holds.
    Status { file: PathBuf },
    /// Make the data dir of one member of a new cluster from a backup file (every member of
    /// the new cluster restores the same file with its own --name and peer URLs).
    Restore {
        file: PathBuf,
        /// This member's name in --initial-cluster.
        #[arg(long, default_value = "default")]
        name: String,
        /// The new cluster: name=peer-url,...
        #[arg(long, default_value = "default=http://localhost:2380")]
        initial_cluster: String,
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// This member's peer URLs, as in --initial-cluster.
        #[arg(long, default_value = "http://localhost:2380")]
        initial_advertise_peer_urls: String,
        /// The data dir to create [default: NAME.keel]; it must not exist.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub async fn run(
    command: Command,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        Command::Save { file } => save(&file, endpoints, options).await,
        Command::Status { file } => status(&file, format),
        Command::Restore {
            file,
            name,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls,
            data_dir,
        } => {
            let options =
                RestoreOptions { name, initial_cluster, initial_cluster_token, initial_advertise_peer_urls, data_dir };
            let restored = restore::restore(&file, &options).map_err(anyhow::Error::msg)?;
            line(&format!(
                "Restored revision {} into {} (member {:x}, cluster {:x}): start it with --initial-cluster-state new",
                restored.revision,
                restored.data_dir.display(),
                restored.member_id,
                restored.cluster_id
            ))
        }
    }
}

async fn save(file: &Path, endpoints: &[String], options: &ConnectOptions) -> anyhow::Result<()> {
    let mut connect = etcd_client::ConnectOptions::new();
    if let Some(tls) = options.tls_config() {
        connect = connect.with_tls(tls);
    }
    let mut client = etcd_client::Client::connect(endpoints, Some(connect)).await.context("connecting")?;
    let mut stream = client.snapshot().await.context("asking for a snapshot")?;
    let part = file.with_extension("part");
    let mut out = std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    let written = async {
        while let Some(chunk) = stream.message().await.context("receiving the snapshot")? {
            out.write_all(chunk.blob()).with_context(|| format!("writing {}", part.display()))?;
        }
        out.sync_all().with_context(|| format!("syncing {}", part.display()))?;
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = written {
        let _ = std::fs::remove_file(&part);
        return Err(error);
    }
    // A stream cut short or damaged never gets the final name.
    if let Err(error) = restore::status(&part) {
        let _ = std::fs::remove_file(&part);
        anyhow::bail!("the snapshot received is not whole: {error}");
    }
    std::fs::rename(&part, file).with_context(|| format!("renaming {} to {}", part.display(), file.display()))?;
    line(&format!("Snapshot saved at {}", file.display()))
}

fn status(file: &Path, format: Format) -> anyhow::Result<()> {
    let status = restore::status(file).map_err(anyhow::Error::msg)?;
    match format {
        Format::Json => line(&serde_json::to_string(&status)?),
        Format::Table => table(
            ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            &[[status.hash, status.revision.to_string(), status.total_keys.to_string(), size(status.total_size)]],
        ),
    }
}

/// Bytes as etcdctl prints them (humanize.Bytes: SI units, one decimal under 10).
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}
