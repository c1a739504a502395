//! Backup and restore, as etcd's operators do it: `etcdctl snapshot save` against a Keel member
//! while clients write, `keelctl snapshot status`, then `keelctl snapshot restore` into the data
//! dirs of a new 3-member cluster, which starts with every key, lease and hash of the file. A
//! damaged or truncated file is refused, and nothing is restored from it.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaseTimeToLiveOptions, PutOptions};
use keel_tests::acked::{spawn_writers, Acked};
use keel_tests::{etcdctl, keelctl_binary, wait_for, Server, TestCluster};

/// `keelctl ARGS` with no endpoints needed (the offline snapshot commands): success, stdout, stderr.
fn keelctl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(keelctl_binary()).args(args).output().expect("run keelctl");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// Every key at `revision` (0: the current one), with its metadata.
async fn all_keys(client: &mut Client, revision: i64) -> Vec<(String, String, i64, i64, i64, i64)> {
    let options = GetOptions::new().with_from_key().with_revision(revision);
    let response = client.get("", Some(options)).await.expect("get every key");
    response
        .kvs()
        .iter()
        .map(|kv| {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (text(kv.key()), text(kv.value()), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease())
        })
        .collect()
}

/// Restores `file` into the data dir of every member of `cluster` (not started yet).
fn restore_into(cluster: &TestCluster, file: &Path) {
    for member in &cluster.members {
        let flag = |name| member.flag(name).unwrap_or_else(|| panic!("{name} of {}", member.name)).to_string();
        let (data_dir, initial_cluster) = (member.data_dir.display().to_string(), flag("--initial-cluster"));
        let (peer_urls, token) = (flag("--initial-advertise-peer-urls"), flag("--initial-cluster-token"));
        let (ok, stdout, stderr) = keelctl(&[
            "snapshot",
            "restore",
            &file.display().to_string(),
            "--name",
            &member.name,
            "--initial-cluster",
            &initial_cluster,
            "--initial-cluster-token",
            &token,
            "--initial-advertise-peer-urls",
            &peer_urls,
            "--data-dir",
            &data_dir,
        ]);
        assert!(ok, "restore of {}: {stdout}{stderr}", member.name);
        assert!(stdout.contains("Restored revision"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_saved_under_load_restores_into_a_new_cluster_with_every_key_lease_and_hash() {
    let source = TestCluster::start(Server::Keel, 3).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = source.client().await;
    let lease = client.lease_grant(600, None).await.expect("lease").id();
    client.put("leased", "v", Some(PutOptions::new().with_lease(lease))).await.expect("leased put");

    // Phase 1: writers run while the backup is taken.
    let (acked, stop) = (Arc::new(Mutex::new(Acked::default())), Arc::new(AtomicBool::new(false)));
    let writers = spawn_writers(&client, &acked, &stop);
    let some_acked = wait_for(Duration::from_secs(20), "writes to be acknowledged", || {
        let acked = acked.clone();
        async move { acked.lock().expect("lock").values.len() >= 100 }
    })
    .await;
    some_acked.unwrap_or_else(|e| panic!("{e}\n{}", source.all_logs()));
    let acked_before_save = acked.lock().expect("lock").values.clone();
    let file = dir.path().join("backup.db");
    let file_arg = file.display().to_string();
    let saved =
        tokio::task::block_in_place(|| etcdctl(&source.members[1].client_url, &["snapshot", "save", &file_arg]));
    assert!(saved.success, "etcdctl snapshot save: {saved:?}");
    assert!(saved.stdout.contains(&format!("Snapshot saved at {file_arg}")), "{saved:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    futures::future::join_all(writers).await;

    // Phase 2: what the file holds.
    let (ok, stdout, stderr) = keelctl(&["snapshot", "status", &file_arg, "-o", "json"]);
    assert!(ok, "{stdout}{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status is JSON");
    let revision = status["revision"].as_i64().expect("a revision");
    let (ok, table, _) = keelctl(&["snapshot", "status", &file_arg]);
    assert!(ok && table.contains("REVISION") && table.contains(&revision.to_string()), "{table}");

    // Phase 3: a new cluster from the file.
    let restored = TestCluster::prepare(Server::Keel, 3, &[]);
    restore_into(&restored, &file);
    let mut restored = restored;
    for i in 0..3 {
        restored.start_member(i);
    }
    restored.wait_ready().await;
    let mut restored_client = restored.client().await;
    let expected = all_keys(&mut client, revision).await;
    assert_eq!(all_keys(&mut restored_client, 0).await, expected, "every key as the file holds it");
    let restored_keys: Vec<&String> = expected.iter().map(|(key, ..)| key).collect();
    let lost: Vec<&String> = acked_before_save.keys().filter(|key| !restored_keys.contains(key)).collect();
    assert!(lost.is_empty(), "writes acknowledged before the save are missing: {lost:?}");
    let source_hash = client.hash_kv(revision).await.expect("source hash").hash();
    for i in 0..3 {
        let mut member = restored.member_client(i).await;
        assert_eq!(member.hash_kv(revision).await.expect("hash").hash(), source_hash, "member {i}'s HashKV");
    }
    let ttl = restored_client.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await;
    let ttl = ttl.expect("the lease came back");
    assert!(ttl.ttl() > 0, "the lease lives");
    assert_eq!(ttl.keys(), [b"leased".to_vec()], "with its key");

    // The new cluster takes writes, says it is a new one, and its members restart as any.
    restored_client.put("after-restore", "v", None).await.expect("writes");
    assert!(restored.all_logs().contains("started a new cluster from a restored backup"));
    restored.kill9(2);
    restored.start_member(2);
    restored.wait_ready().await;
    let mut member = restored.member_client(2).await;
    let after = member.get("after-restore", None).await.expect("read after a restart");
    assert_eq!(after.kvs().len(), 1, "{}", restored.all_logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_truncated_and_misplaced_backups_are_refused_and_restore_nothing() {
    let source = TestCluster::start(Server::Keel, 1).await;
    let mut client = source.client().await;
    client.put("k", "v", None).await.expect("put");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("good.db");
    let saved = tokio::task::block_in_place(|| {
        etcdctl(&source.members[0].client_url, &["snapshot", "save", &file.display().to_string()])
    });
    assert!(saved.success, "{saved:?}");
    let good = std::fs::read(&file).expect("read the backup");

    let damaged = dir.path().join("damaged.db");
    let mut bytes = good.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&damaged, &bytes).expect("write");
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &good[..good.len() - 100]).expect("write");
    let not_a_backup = dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, b"hello, this is not a backup at all, just text").expect("write");

    for (file, says) in [
        (&damaged, "damaged or incomplete"),
        (&truncated, "damaged or incomplete"),
        (&not_a_backup, "not a Keel snapshot file"),
    ] {
        let path = file.display().to_string();
        let (ok, stdout, stderr) = keelctl(&["snapshot", "status", &path]);
        assert!(!ok && stderr.contains(says), "status of {path}: {stdout}{stderr}");
        let data_dir = dir.path().join("restored").display().to_string();
        let (ok, stdout, stderr) = keelctl(&["snapshot", "restore", &path, "--data-dir", &data_dir]);
        assert!(!ok && stderr.contains(says), "restore of {path}: {stdout}{stderr}");
        assert!(!Path::new(&data_dir).exists(), "a refused restore leaves no data dir");
    }

    // A data dir that exists is never overwritten (etcd's message).
    let existing = source.members[0].data_dir.display().to_string();
    let (ok, _, stderr) = keelctl(&["snapshot", "restore", &file.display().to_string(), "--data-dir", &existing]);
    assert!(!ok && stderr.contains(&format!("data-dir {existing:?} exists")), "{stderr}");
    // A name missing from --initial-cluster.
    let (ok, _, stderr) = keelctl(&["snapshot", "restore", &file.display().to_string(), "--name", "nobody"]);
    assert!(!ok && stderr.contains("couldn't find local name \"nobody\""), "{stderr}");
}
