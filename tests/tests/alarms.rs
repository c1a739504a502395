//! etcd's space quota and alarms, against etcd 3.4 with the same flags: a member whose database
//! reaches `--quota-backend-bytes` raises NOSPACE, every member then refuses writes that add data
//! (reads and deletes go on), and compaction, defragmentation and `alarm disarm` bring writes
//! back. CORRUPT, raised by hand, refuses every change. Alarms are replicated and survive restarts.

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client};
use keel_tests::transcript::normalise;
use keel_tests::{etcdctl, EtcdctlOutput, Server, TestCluster};

/// 16 MiB: RocksDB's memtables count in 2 MiB arena blocks, so the quota is a few of them.
const QUOTA: &str = "--quota-backend-bytes=16777216";
const VALUE_BYTES: usize = 1 << 20;

/// Puts 1 MiB values through member 0 until the quota refuses one; answers how many it took.
async fn fill(cluster: &TestCluster) -> usize {
    let mut client = cluster.member_client(0).await;
    let value = vec![b'x'; VALUE_BYTES];
    for i in 0..64 {
        match client.put(format!("fill/{i:02}"), value.clone(), None).await {
            Ok(_) => {}
            Err(error) if error.to_string().contains("database space exceeded") => return i,
            Err(error) => panic!("put {i}: {error}\n{}", cluster.all_logs()),
        }
    }
    panic!("64 MiB of puts never reached the 16 MiB quota\n{}", cluster.all_logs());
}

/// Runs `script` with etcdctl against member 0 only (the member that raised the alarm), its
/// output normalised, alarm member IDs included. Which other members raise their own alarm
/// depends on their sizes to the byte (in etcd as in Keel), so repeated lines count once.
fn run(cluster: &TestCluster, script: &[&[&str]]) -> Vec<EtcdctlOutput> {
    let endpoint = &cluster.members[0].client_url;
    script
        .iter()
        .map(|args| {
            let mut output = normalise(cluster, &etcdctl(endpoint, args));
            output.stdout = distinct_lines(&scrub_member_ids(&output.stdout));
            output
        })
        .collect()
}

/// `memberID:1234 alarm:NOSPACE` → `memberID:ID alarm:NOSPACE`.
fn scrub_member_ids(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| match word.strip_prefix("memberID:") {
            Some(rest) if rest.trim_end().chars().all(|c| c.is_ascii_digit()) => {
                format!("memberID:ID{}", &rest[rest.trim_end().len()..])
            }
            _ => word.to_string(),
        })
        .collect()
}

fn distinct_lines(text: &str) -> String {
    let mut seen = std::collections::BTreeSet::new();
    text.split_inclusive('\n').filter(|line| seen.insert(*line)).collect()
}

fn assert_same(script: &[&[&str]], keel: &[EtcdctlOutput], etcd: &[EtcdctlOutput], logs: impl Fn() -> String) {
    let differing: Vec<String> = script
        .iter()
        .zip(keel.iter().zip(etcd))
        .filter(|(_, (k, e))| k != e)
        .map(|(args, (k, e))| format!("etcdctl {args:?}\n  etcd: {e:?}\n  keel: {k:?}"))
        .collect();
    assert!(differing.is_empty(), "{} steps differ:\n{}\n{}", differing.len(), differing.join("\n"), logs());
}

fn for_member(member: u64) -> Option<AlarmOptions> {
    let mut options = AlarmOptions::new();
    options.with_member(member);
    Some(options)
}

/// Deletes what `fill` wrote and compacts to the current revision, through member 0.
async fn make_room(client: &mut Client) {
    let deleted = client.delete("fill/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    let revision = deleted.header().expect("header").revision();
    client.compact(revision, None).await.expect("compact");
}

const FULL: &[&[&str]] = &[
    &["alarm", "list"],
    &["put", "foo", "bar"],
    &["lease", "grant", "60"],
    &["get", "fill/00", "--keys-only"],
    &["del", "fill/00"],
    &["put", "foo", "bar"],
];

const RECOVERED: &[&[&str]] = &[
    &["defrag"],
    &["alarm", "disarm"],
    &["alarm", "list"],
    &["put", "foo", "bar"],
    &["get", "foo", "--print-value-only"],
];

#[tokio::test(flavor = "multi_thread")]
async fn a_full_database_refuses_writes_until_room_is_made_and_the_alarm_disarmed_as_in_etcd() {
    let (keel, etcd) = tokio::join!(
        TestCluster::start_with(Server::Keel, 3, &[QUOTA]),
        TestCluster::start_with(Server::Etcd, 3, &[QUOTA])
    );
    let (keel_puts, etcd_puts) = tokio::join!(fill(&keel), fill(&etcd));
    eprintln!("puts of 1 MiB before the 16 MiB quota: keel {keel_puts}, etcd {etcd_puts}");

    let (keel_full, etcd_full) = tokio::task::block_in_place(|| (run(&keel, FULL), run(&etcd, FULL)));
    assert_same(FULL, &keel_full, &etcd_full, || keel.all_logs());
    assert_eq!(keel_full[0].stdout, "memberID:ID alarm:NOSPACE \n", "{keel_full:?}");
    assert!(keel_full[1].stderr.contains("etcdserver: mvcc: database space exceeded"), "{keel_full:?}");
    assert_eq!(keel_full[4].stdout.trim(), "1", "deletes go on under NOSPACE: {keel_full:?}");

    // Every member refuses, not only the one that raised the alarm; Status lists it.
    for i in 0..3 {
        let mut client = keel.member_client(i).await;
        let error = client.put("elsewhere", "v", None).await.expect_err("refused on every member");
        assert!(error.to_string().contains("database space exceeded"), "member {i}: {error}");
        let status = client.status().await.expect("status");
        assert!(status.errors().iter().any(|e| e.ends_with("alarm:NOSPACE ")), "member {i}: {:?}", status.errors());
    }

    let mut keel_client = keel.member_client(0).await;
    let mut etcd_client = etcd.member_client(0).await;
    tokio::join!(make_room(&mut keel_client), make_room(&mut etcd_client));
    let (keel_after, etcd_after) = tokio::task::block_in_place(|| (run(&keel, RECOVERED), run(&etcd, RECOVERED)));
    assert_same(RECOVERED, &keel_after, &etcd_after, || keel.all_logs());
    assert_eq!(keel_after[1].stdout, "memberID:ID alarm:NOSPACE \n", "{keel_after:?}");
    assert_eq!(keel_after[4].stdout, "bar\n", "{keel_after:?}");
    let status = keel_client.status().await.expect("status");
    assert!(status.db_size() < 16 << 20, "defragmented: {} bytes", status.db_size());
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_refuses_every_change_on_every_member_until_deactivated_and_survives_a_restart() {
    let (mut keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    let mut answers = Vec::new();
    for cluster in [&keel, &etcd] {
        let mut client = cluster.member_client(0).await;
        client.put("k", "v", None).await.expect("put");
        let member = client.status().await.expect("status").header().expect("header").member_id();
        let options = || for_member(member);
        let raised = client.alarm(AlarmAction::Activate, AlarmType::Corrupt, options()).await.expect("activate");
        assert_eq!(raised.alarms().len(), 1);
        let again = client.alarm(AlarmAction::Activate, AlarmType::Corrupt, options()).await.expect("again");
        let refusals = [
            client.put("k", "w", None).await.map(|_| ()),
            client.delete("k", None).await.map(|_| ()),
            client.lease_grant(60, None).await.map(|_| ()),
        ];
        let read = client.get("k", None).await.expect("reads go on").kvs().len();
        let listed = client.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("list").alarms().len();
        answers.push((again.alarms().len(), refusals.map(|r| r.map_err(|e| e.to_string())), read, listed));
    }
    assert_eq!(answers[0], answers[1], "keel (left) and etcd (right) differ");
    let (_, refusals, _, _) = &answers[0];
    for refusal in refusals {
        assert!(refusal.as_ref().is_err_and(|e| e.contains("etcdserver: corrupt cluster")), "{refusals:?}");
    }

    // Replicated and durable: a restarted member still refuses, until the alarm is deactivated.
    keel.kill9(1);
    keel.start_member(1);
    keel.wait_ready().await;
    let mut client = keel.member_client(1).await;
    let error = client.put("k", "w", None).await.expect_err("still corrupt after a restart");
    assert!(error.to_string().contains("corrupt cluster"), "{error}");
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("list");
    let member = alarms.alarms()[0].member_id();
    let cleared =
        client.alarm(AlarmAction::Deactivate, AlarmType::Corrupt, for_member(member)).await.expect("deactivate");
    assert_eq!(cleared.alarms().len(), 1);
    client.put("k", "w", None).await.expect("writes are back");

    // Bad requests: a member that does not exist, an action etcd does not have.
    let error =
        client.alarm(AlarmAction::Activate, AlarmType::Nospace, for_member(12345)).await.expect_err("unknown member");
    assert!(error.to_string().contains("etcdserver: member not found"), "{error}");
    let listed = client.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("list");
    assert!(listed.alarms().is_empty(), "nothing raised: {} alarms", listed.alarms().len());
}

/// A tmpfs mounted for one test, unmounted (lazily: a member may still hold files) when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` where this machine does not let the test mount one (not root, no tmpfs).
    fn mount(at: &std::path::Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())
            .and_then(
                |out| if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into()) },
            );
        match mounted {
            Ok(()) => Some(Tmpfs(at.to_path_buf())),
            Err(why) => {
                eprintln!("SKIPPED: a real full disk needs a small tmpfs, and mounting one failed here: {why}");
                None
            }
        }
    }

    /// Space comes back: the filesystem grows to `bytes`.
    fn grow(&self, bytes: u64) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `bytes` that do not compress (RocksDB compresses its tables with LZ4).
fn incompressible(seed: u64, bytes: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filling_disk_stops_writes_with_nospace_and_the_member_serves_on_until_room_is_made() {
    // A member whose data dir is on a 128 MiB filesystem and keeps 64 MiB of it free.
    let mut keel = TestCluster::prepare(Server::Keel, 1, &["--min-free-disk-bytes", "67108864"]);
    let Some(disk) = Tmpfs::mount(&keel.members[0].data_dir, 128 << 20) else { return };
    keel.start_member(0);
    keel.wait_ready().await;

    // Writes of 256 KiB until one is refused; every acknowledged one is kept.
    let mut client = keel.member_client(0).await;
    let mut acked = std::collections::BTreeMap::new();
    let mut refusal = None;
    for i in 0..400u64 {
        let (key, value) = (format!("disk/{i:03}"), incompressible(i, 256 << 10));
        match client.put(key.clone(), value.clone(), None).await {
            Ok(_) => {
                acked.insert(key, value);
            }
            Err(error) => {
                refusal = Some(error.to_string());
                break;
            }
        }
    }
    let refusal = refusal.unwrap_or_else(|| panic!("100 MiB of writes fit in 64 MiB?\n{}", keel.all_logs()));
    eprintln!("{} writes of 256 KiB acknowledged, then: {refusal}", acked.len());
    assert!(refusal.contains("etcdserver: mvcc: database space exceeded"), "{refusal}\n{}", keel.all_logs());

    // The member stays up: it lists its alarm, serves reads and deletes, refuses writes.
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("alarm list");
    let member = alarms.alarms().first().map(|alarm| (alarm.alarm(), alarm.member_id()));
    assert!(matches!(member, Some((AlarmType::Nospace, _))), "{member:?}");
    let (first, value) = acked.iter().next().expect("one write fit");
    let got = client.get(first.as_str(), None).await.expect("reads go on");
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(value.as_slice()));
    client.delete(first.as_str(), None).await.expect("deletes go on");
    acked.remove(&first.clone());
    let again = client.put("disk/again", "v", None).await.expect_err("still refused").to_string();
    assert!(again.contains("database space exceeded"), "{again}");

    // Room is made: the filesystem grows; the operator disarms; writes come back, no restart.
    disk.grow(512 << 20);
    let member_id = member.map(|(_, id)| id).unwrap_or_default();
    client.alarm(AlarmAction::Deactivate, AlarmType::Nospace, for_member(member_id)).await.expect("disarm");
    client.put("disk/after", "v", None).await.expect("writes come back once room is made");
    for (key, value) in &acked {
        let got = client.get(key.as_str(), None).await.expect("get");
        assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(value.as_slice()), "{key} lost");
    }
    let logs = keel.all_logs();
    assert!(logs.contains("nearly full") && !logs.contains("fatal"), "{logs}");
    drop(keel);
    drop(disk);
}
