//! Faults: a damaged data dir, a data dir of a format this binary does not read, a full disk, a
//! dead Raft core, too few file descriptors.
//!
//! A member whose data dir lost acknowledged writes must refuse to start and say which file
//! and how to recover, never serve what is left; a crash that only tore the last write must
//! still start with everything; a data dir written by another version of Keel is refused before
//! it is opened; and a member whose disk fails must exit, not linger with a stopped Raft core.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_node::storage::{Direction, Durability, Engine, KeyRange, RocksEngine, Table, WriteBatch};
use keel_tests::{wait_for, wait_for_some, Server, TestCluster, READY_TIMEOUT};

/// How long a member may take to find damage and exit (a debug build opening RocksDB on a
/// loaded 2-core machine).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a member whose disk filled may take to notice its Raft core stopped and exit
/// (it stops its servers first, within the binary's own 10 s bound).
const FATAL_EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every refusal tells the operator to do.
const RECOVERY_ADVICE: &str = "--initial-cluster-state existing";

/// Puts `count` keys `<prefix>-NNNN` with `value_bytes`-byte values through member `i`, one
/// after the other; returns them, every one acknowledged.
async fn put_acknowledged(
    cluster: &TestCluster,
    i: usize,
    prefix: &str,
    count: usize,
    value_bytes: usize,
) -> BTreeMap<String, String> {
    let mut client = cluster.member_client(i).await;
    let mut acked = BTreeMap::new();
    for n in 0..count {
        let key = format!("{prefix}-{n:04}");
        let value = value_of(&key, value_bytes);
        client.put(key.clone(), value.clone(), None).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
        acked.insert(key, value);
    }
    acked
}

/// A value that says which key it belongs to, `bytes` long.
fn value_of(key: &str, bytes: usize) -> String {
    let mut value = format!("{key}:");
    while value.len() < bytes {
        value.push_str(key);
    }
    value.truncate(bytes.max(key.len() + 1));
    value
}

/// Every key of `expected` is readable through member `i` with its value. One linearizable
/// read per key: values of up to 1 MiB would not fit one response together, and a member still
/// catching up answers only once it has (each read is retried until `READY_TIMEOUT`).
async fn assert_all_present(cluster: &TestCluster, i: usize, expected: &BTreeMap<String, String>) {
    let client = cluster.member_client(i).await;
    let mut missing = Vec::new();
    for (key, value) in expected {
        let found = wait_for_some(READY_TIMEOUT, "a read", || {
            let mut client = client.clone();
            async move {
                let response = client.get(key.as_str(), None).await.ok()?;
                Some(response.kvs().first().map(|kv| kv.value().to_vec()))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
        if found.as_deref() != Some(value.as_bytes()) {
            missing.push(key);
        }
    }
    assert!(
        missing.is_empty(),
        "member {i} lost {} of {} acknowledged writes, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The newest write-ahead log file of a member's RocksDB: the one it was writing when stopped.
fn live_wal(data_dir: &Path) -> PathBuf {
    keel_node::storage::newest_write_ahead_log(&data_dir.join("db")).expect("a write-ahead log in the data dir")
}

fn truncate_to(file: &Path, percent: u64) {
    let length = std::fs::metadata(file).expect("stat").len();
    let handle = std::fs::OpenOptions::new().write(true).open(file).expect("open");
    handle.set_len(length * percent / 100).expect("truncate");
}

fn flip_16_bytes_at(file: &Path, percent: usize) {
    let mut bytes = std::fs::read(file).expect("read");
    let at = bytes.len() * percent / 100;
    for byte in &mut bytes[at..at + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(file, bytes).expect("write");
}

/// Appends the beginning of a write-ahead log record, as a crash in the middle of writing it
/// leaves: a header announcing more bytes than follow. (RocksDB's log format: 32 KiB blocks,
/// each record a 7-byte header of checksum, length and type, then the payload.)
fn append_torn_record(wal: &Path) {
    use std::io::Write;
    const BLOCK_BYTES: u64 = 32 * 1024;
    let length = std::fs::metadata(wal).expect("stat").len();
    let mut file = std::fs::OpenOptions::new().append(true).open(wal).expect("open");
    // A writer never starts a record in a block's last bytes: it pads them with zeros.
    let left_in_block = BLOCK_BYTES - length % BLOCK_BYTES;
    if left_in_block < 1024 {
        file.write_all(&vec![0; usize::try_from(left_in_block).expect("fits")]).expect("pad");
    }
    let full_record_type = 1u8;
    let mut torn = vec![0xab, 0xcd, 0xef, 0x01];
    torn.extend_from_slice(&4000u16.to_le_bytes());
    torn.push(full_record_type);
    torn.extend_from_slice(&[b'x'; 100]);
    file.write_all(&torn).expect("append");
}

/// Deletes one record of Keel's Raft state, as a damaged disk or a careless tool could.
fn delete_raft_record(data_dir: &Path, key: &[u8]) {
    let engine = RocksEngine::open(&data_dir.join("db")).expect("open the member's RocksDB");
    let mut batch = WriteBatch::new();
    batch.delete(Table::RaftMeta, key);
    engine.write(batch, Durability::Sync).expect("delete");
    engine.close().expect("close");
}

/// Rewrites every Raft log entry of a stopped member as Keel wrote them before entries named
/// their format version: the bare postcard of the entry.
fn strip_log_entry_headers(data_dir: &Path) {
    let engine = RocksEngine::open(&data_dir.join("db")).expect("open the member's RocksDB");
    let mut batch = WriteBatch::new();
    let mut entries = 0;
    engine
        .scan(Table::Log, KeyRange::all(), Direction::Forward, &mut |key, value| {
            let entry = keel_node::raft::decode_entry(value).expect("a log entry");
            batch.put(Table::Log, key.to_vec(), keel_node::raft::encode(&entry).expect("encode"));
            entries += 1;
            true
        })
        .expect("scan the log");
    assert!(entries > 0, "the log holds entries");
    engine.write(batch, Durability::Sync).expect("rewrite");
    engine.close().expect("close");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn restore(pristine: &Path, data_dir: &Path) {
    std::fs::remove_dir_all(data_dir).expect("remove data dir");
    copy_dir(pristine, data_dir);
}

/// Starts member `i` on its (damaged) data dir and returns what it printed, asserting that it
/// exited non-zero by itself.
async fn refusal(cluster: &mut TestCluster, i: usize, damage: &str) -> String {
    let before = cluster.members[i].logs().len();
    cluster.start_member(i);
    let status = cluster.wait_exit(i, REFUSAL_TIMEOUT).await.unwrap_or_else(|e| {
        panic!("{damage}: the member kept running on a damaged data dir ({e})\n{}", cluster.all_logs())
    });
    let printed = cluster.members[i].logs()[before..].to_string();
    assert!(!status.success(), "{damage}: the member exited with {status}\n{printed}");
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_dir_refuses_to_start_and_names_the_file() {
    // Phase 1: acknowledged writes on one member, then a crash: they are all in the live
    // write-ahead log (far below a memtable's size), none in a table file yet.
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let acked = put_acknowledged(&cluster, 0, "damage", 300, 1024).await;
    cluster.kill9(0);
    let data_dir = cluster.members[0].data_dir.clone();
    let saved = tempfile::tempdir().expect("tempdir");
    let pristine = saved.path().join("pristine");
    copy_dir(&data_dir, &pristine);
    let wal = live_wal(&data_dir);
    let database = data_dir.join("db");
    let watermark = data_dir.join("raft-watermark");

    // Phase 2: each damage, applied to a fresh copy of the crashed data dir, is refused with a
    // message naming the damaged file and saying how to recover. The log cut at 95 % or more
    // is the case RocksDB alone accepts silently (it looks like a torn last write).
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &Path); 11] = [
        ("write-ahead log cut to 10 %", |dir| truncate_to(&live_wal(dir), 10), &wal),
        ("write-ahead log cut to 50 %", |dir| truncate_to(&live_wal(dir), 50), &wal),
        ("write-ahead log cut to 70 %", |dir| truncate_to(&live_wal(dir), 70), &wal),
        ("write-ahead log cut to 95 %", |dir| truncate_to(&live_wal(dir), 95), &wal),
        ("write-ahead log cut to 99 %", |dir| truncate_to(&live_wal(dir), 99), &wal),
        ("16 bytes flipped at 20 % of the write-ahead log", |dir| flip_16_bytes_at(&live_wal(dir), 20), &wal),
        ("16 bytes flipped at 50 % of the write-ahead log", |dir| flip_16_bytes_at(&live_wal(dir), 50), &wal),
        ("16 bytes flipped at 80 % of the write-ahead log", |dir| flip_16_bytes_at(&live_wal(dir), 80), &wal),
        ("vote deleted", |dir| delete_raft_record(dir, b"vote"), &database),
        ("identity deleted", |dir| delete_raft_record(dir, b"identity"), &database),
        ("watermark damaged", |dir| flip_16_bytes_at(&dir.join("raft-watermark"), 0), &watermark),
    ];
    for (damage, apply, named) in &cases {
        restore(&pristine, &data_dir);
        apply(&data_dir);
        let printed = refusal(&mut cluster, 0, damage).await;
        assert!(
            printed.contains(&named.display().to_string()),
            "{damage}: the message names {}:\n{printed}",
            named.display()
        );
        assert!(printed.contains(RECOVERY_ADVICE), "{damage}: the message says how to recover:\n{printed}");
        eprintln!("{damage}: refused");
    }

    // Phase 3: the crashed data dir itself, undamaged but for an incomplete record after its
    // last one (a write torn by the crash, never acknowledged), starts with every
    // acknowledged write.
    restore(&pristine, &data_dir);
    append_torn_record(&live_wal(&data_dir));
    cluster.start_member(0);
    cluster.wait_ready().await;
    assert_all_present(&cluster, 0, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_refused_for_damage_recovers_from_the_others_as_its_message_says() {
    // Phase 1: acknowledged writes on three members; a follower crashes and its write-ahead
    // log loses its last 30 %.
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let acked = put_acknowledged(&cluster, leader, "rejoin", 200, 512).await;
    cluster.kill9(follower);
    let data_dir = cluster.members[follower].data_dir.clone();
    truncate_to(&live_wal(&data_dir), 70);

    // Phase 2: it refuses to start.
    let printed = refusal(&mut cluster, follower, "follower's write-ahead log cut to 70 %").await;
    assert!(printed.contains(RECOVERY_ADVICE), "{printed}");

    // Phase 3: doing what the message says (remove the data dir, start again with
    // --initial-cluster-state existing) brings it back with every acknowledged write.
    std::fs::remove_dir_all(&data_dir).expect("remove data dir");
    cluster.set_member_flag(follower, "--initial-cluster-state", "existing");
    cluster.start_member(follower);
    cluster.wait_ready().await;
    let more = put_acknowledged(&cluster, leader, "rejoin-after", 20, 512).await;
    assert_all_present(&cluster, follower, &acked).await;
    assert_all_present(&cluster, follower, &more).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_an_unknown_format_refuses_to_start_and_says_which_formats_it_reads() {
    // Phase 1: a member writes and is killed (a clean stop is not this test's subject); its
    // data dir records format 1.
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let acked = put_acknowledged(&cluster, 0, "format", 20, 100).await;
    cluster.kill9(0);
    let data_dir = cluster.members[0].data_dir.clone();
    let format_file = data_dir.join("keel-format");
    assert_eq!(std::fs::read_to_string(&format_file).expect("the format file"), "1\n");

    // Phase 2: a format only a newer Keel writes: refused with one line naming the file, the
    // version found and the one this binary reads; the data dir is left as it was.
    std::fs::write(&format_file, "2\n").expect("write");
    let printed = refusal(&mut cluster, 0, "format version 2").await;
    let line = printed.lines().find(|line| line.contains("keel-format")).unwrap_or_default();
    for expected in [format_file.display().to_string(), "format version 2".into(), "reads format version 1 only".into()]
    {
        assert!(line.contains(&expected), "the refusal says {expected:?}:\n{printed}");
    }
    assert_eq!(std::fs::read_to_string(&format_file).expect("the format file"), "2\n");

    // Phase 3: as every data dir written before the file existed (no file, and log entries
    // without a version header), the member starts with everything, as format 1, and records it.
    std::fs::remove_file(&format_file).expect("remove");
    strip_log_entry_headers(&data_dir);
    cluster.start_member(0);
    cluster.wait_ready().await;
    assert_all_present(&cluster, 0, &acked).await;
    assert_eq!(std::fs::read_to_string(&format_file).expect("the format file"), "1\n");
}

/// Writers of small and large values against one member until told to stop; the acknowledged
/// ones are recorded.
fn spawn_writers(
    client: &etcd_client::Client,
    round: usize,
    acked: &Arc<Mutex<BTreeMap<String, String>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    // Two writers of values up to 1 MiB (below the default --max-request-bytes of 1.5 MiB),
    // whose write-ahead log records take many write() calls: a kill lands inside one often.
    let sizes = [1 << 20, 700 << 10, 100, 100, 100, 100];
    sizes
        .into_iter()
        .enumerate()
        .map(|(writer, value_bytes)| {
            let (mut client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("crash-{round}-{writer}-{n:05}");
                    let value = value_of(&key, value_bytes);
                    let put = client.put(key.clone(), value.clone(), None);
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), put).await {
                        acked.lock().expect("lock").insert(key, value);
                    }
                    n += 1;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_large_writes_restarts_with_every_acknowledged_write() {
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..3 {
        // Phase 1: small and large writes flow, then the member dies mid-stream (kill -9).
        let client = cluster.member_client(0).await;
        let stop = Arc::new(AtomicBool::new(false));
        let before = acked.lock().expect("lock").len();
        let writers = spawn_writers(&client, round, &acked, &stop);
        wait_for(Duration::from_secs(60), "writes acknowledged", || {
            let large =
                acked.lock().expect("lock").keys().filter(|k| k.starts_with(&format!("crash-{round}-0-"))).count();
            let n = acked.lock().expect("lock").len();
            async move { large >= 3 && n >= before + 100 }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
        cluster.kill9(0);
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.await.expect("writer task");
        }

        // Phase 2: it starts again (a torn last write is no damage) with everything acknowledged.
        cluster.start_member(0);
        cluster.wait_ready().await;
        let expected = acked.lock().expect("lock").clone();
        assert_all_present(&cluster, 0, &expected).await;
        eprintln!("round {round}: {} acknowledged writes kept across kill -9", expected.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_member_and_a_restart_keeps_every_acknowledged_write() {
    // Phase 1: a member that cannot write any file past 4 MiB, as if its disk were full: its
    // write-ahead log reaches that after ~30 puts of 64 KiB (each is written twice: in the log
    // entry and in the applied batch).
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    cluster.kill9(0);
    cluster.start_member_with_file_size_limit(0, 4 << 20);
    cluster.wait_ready().await;

    // Phase 2: writes until one fails; every acknowledged one is recorded.
    let mut client = cluster.member_client(0).await;
    let mut acked = BTreeMap::new();
    let mut failed = None;
    for n in 0..1000 {
        let key = format!("full-{n:04}");
        let value = value_of(&key, 64 << 10);
        match tokio::time::timeout(Duration::from_secs(10), client.put(key.clone(), value.clone(), None)).await {
            Ok(Ok(_)) => {
                acked.insert(key, value);
            }
            Ok(Err(e)) => {
                failed = Some(e.to_string());
                break;
            }
            Err(_) => {
                failed = Some("timed out".into());
                break;
            }
        }
    }
    let failed = failed.unwrap_or_else(|| panic!("1000 puts of 64 KiB fit under 4 MiB?\n{}", cluster.all_logs()));
    eprintln!("{} writes acknowledged, then: {failed}", acked.len());
    assert!(!acked.is_empty(), "some writes fit before the disk filled\n{}", cluster.all_logs());

    // Phase 3: the member does not linger with a stopped Raft core: it exits non-zero and says why.
    let status = cluster
        .wait_exit(0, FATAL_EXIT_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("a member with a full disk stayed up: {e}\n{}", cluster.all_logs()));
    assert!(!status.success(), "exited with {status}");
    let printed = cluster.members[0].logs();
    assert!(printed.contains("fatal: raft stopped"), "the fatal line says what stopped:\n{printed}");

    // Phase 4: with space back, it starts again with every acknowledged write.
    cluster.start_member(0);
    cluster.wait_ready().await;
    assert_all_present(&cluster, 0, &acked).await;
}
