//! The native Config (`keel.v1.Config`) over a real cluster: one JSON leaf per etcd key under
//! `/micro/config/<namespace>/...`, objects merge leaf by leaf, a watch sees the value after
//! every change (natively and through `keelctl config watch`), secrets never reach a disk in
//! clear, history is readable by revision, and bad input changes nothing.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::GetOptions;
use keel_proto::v1::config_client::ConfigClient;
use keel_proto::v1::{DeleteConfigRequest, GetRequest, SetRequest, WatchConfigRequest, WatchConfigResponse};
use keel_tests::{
    etcdctl, grpc_channel, keelctl, keelctl_binary, retry_unavailable, wait_for, wait_for_some, Background, Server,
    TestCluster,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

/// Where every config leaf lives in the etcd keyspace.
const PREFIX: &str = "/micro/config/";

/// How long a config watch may take to report a change.
const WATCH_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a member may take to stop after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

async fn config(cluster: &TestCluster, i: usize) -> ConfigClient<Channel> {
    ConfigClient::new(grpc_channel(&cluster.members[i].client_url).await)
}

fn set_request(path: &str, value: &str) -> SetRequest {
    SetRequest { path: path.into(), value: value.into(), ..Default::default() }
}

async fn try_set(client: &ConfigClient<Channel>, request: SetRequest) -> Result<i64, tonic::Status> {
    let set = retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.set(request).await }
    });
    set.await.map(|response| response.revision)
}

/// Sets `path` (default namespace) to the JSON `value`; returns the revision.
async fn set(client: &ConfigClient<Channel>, path: &str, value: Value) -> i64 {
    try_set(client, set_request(path, &value.to_string()))
        .await
        .unwrap_or_else(|status| panic!("set {path}: {status:?}"))
}

async fn set_secret(client: &ConfigClient<Channel>, path: &str, value: Value) -> i64 {
    let request = SetRequest { secret: true, ..set_request(path, &value.to_string()) };
    try_set(client, request).await.unwrap_or_else(|status| panic!("set secret {path}: {status:?}"))
}

async fn try_get(client: &ConfigClient<Channel>, request: GetRequest) -> Result<(Value, i64), tonic::Status> {
    let got = retry_unavailable(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.get(request).await }
    });
    let response = got.await?;
    let value =
        serde_json::from_str(&response.value).unwrap_or_else(|e| panic!("Get answered non-JSON: {e}: {response:?}"));
    Ok((value, response.revision))
}

/// The JSON at `path` (default namespace), secrets masked; `None` when NOT_FOUND.
async fn get(client: &ConfigClient<Channel>, path: &str) -> Option<Value> {
    get_with(client, GetRequest { path: path.into(), ..Default::default() }).await
}

async fn get_with(client: &ConfigClient<Channel>, request: GetRequest) -> Option<Value> {
    match try_get(client, request.clone()).await {
        Ok((value, _)) => Some(value),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => panic!("get {request:?}: {status:?}"),
    }
}

/// Every (key, value) under the config prefix, as etcd sees them.
async fn etcd_leaves(cluster: &TestCluster) -> (BTreeMap<String, String>, i64) {
    let mut etcd = cluster.client().await;
    let response = etcd.get(PREFIX, Some(GetOptions::new().with_prefix())).await.expect("etcd get");
    let leaves = response
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap_or_default().to_string(), kv.value_str().unwrap_or_default().to_string()))
        .collect();
    (leaves, response.header().expect("header").revision())
}

/// A native config watch, with its responses collected as they arrive.
struct ConfigWatch {
    responses: Arc<Mutex<Vec<WatchConfigResponse>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConfigWatch {
    /// Watches `path` on member `i`; returns once the first response (the current value) has
    /// arrived, and that value.
    async fn start(cluster: &TestCluster, i: usize, path: &str, secrets: bool) -> (ConfigWatch, Value) {
        let mut client = config(cluster, i).await;
        let request = WatchConfigRequest { path: path.into(), secrets, ..Default::default() };
        let mut stream = client.watch(request).await.expect("config watch").into_inner();
        let first = tokio::time::timeout(WATCH_TIMEOUT, stream.message())
            .await
            .expect("the first watch response in time")
            .expect("watch stream")
            .expect("watch stream open");
        let current = serde_json::from_str(&first.value).unwrap_or_else(|e| panic!("{e}: {first:?}"));
        let responses = Arc::new(Mutex::new(Vec::new()));
        let sink = responses.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(response)) = stream.message().await {
                sink.lock().expect("lock").push(response);
            }
        });
        (ConfigWatch { responses, task }, current)
    }

    /// The values reported after the first, in order.
    fn values(&self) -> Vec<Value> {
        let responses = self.responses.lock().expect("lock");
        responses.iter().map(|r| serde_json::from_str(&r.value).unwrap_or_else(|e| panic!("{e}: {r:?}"))).collect()
    }

    fn revisions(&self) -> Vec<i64> {
        self.responses.lock().expect("lock").iter().map(|r| r.revision).collect()
    }

    /// Waits until `count` changes have been reported; returns their values.
    async fn wait_for_values(&self, count: usize) -> Vec<Value> {
        wait_for_some(WATCH_TIMEOUT, &format!("{count} watch responses"), || {
            let values = self.values();
            async move { (values.len() >= count).then_some(values) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", self.values()))
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_config_passes_the_conformance_suite() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let config = keel_client::config::GrpcConfig::connect(&cluster.endpoints()).await.expect("connect");
    keel_client::config::conformance::run(Arc::new(config)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_merges_leaf_by_leaf_and_a_watch_sees_each_change() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = config(&cluster, 0).await;
    let (watch, current) = ConfigWatch::start(&cluster, 2, "app.db", false).await;
    assert_eq!(current, Value::Null, "nothing is at app.db yet");

    // Phase 1: the scenario. A leaf, then an object merged beside it.
    let first = set(&client, "app.db.host", json!("db1")).await;
    let second = set(&client, "app.db", json!({"port": 5432})).await;
    assert!(second > first, "revisions {first} then {second}");
    let db = json!({"host": "db1", "port": 5432});
    assert_eq!(get(&client, "app.db").await, Some(db.clone()));
    assert_eq!(get(&client, "app.db.host").await, Some(json!("db1")));
    assert_eq!(get(&client, "app").await, Some(json!({"db": db})));
    assert_eq!(get(&client, "").await, Some(json!({"app": {"db": db}})), "the whole namespace");
    let values = watch.wait_for_values(2).await;
    assert_eq!(values, [json!({"host": "db1"}), db.clone()], "the watch on app.db");
    assert_eq!(watch.revisions(), [first, second]);

    // The tree in etcd is one JSON leaf per key, as go-micro's etcd source reads it.
    let (leaves, _) = etcd_leaves(&cluster).await;
    let expected: BTreeMap<String, String> = [
        ("/micro/config/micro/app/db/host".to_string(), "\"db1\"".to_string()),
        ("/micro/config/micro/app/db/port".to_string(), "5432".to_string()),
    ]
    .into();
    assert_eq!(leaves, expected);

    // Phase 2: a non-object replaces the subtree; a sibling outside app.db is untouched and
    // unseen by the watch.
    set(&client, "app.name", json!("shop")).await;
    set(&client, "app.db", json!("sqlite://memory")).await;
    assert_eq!(get(&client, "app").await, Some(json!({"db": "sqlite://memory", "name": "shop"})));
    assert_eq!(get(&client, "app.db.host").await, None, "replaced along with its parent");
    let values = watch.wait_for_values(3).await;
    assert_eq!(values[2], json!("sqlite://memory"), "{values:?}");

    // Phase 3: an object over it again, then a delete: the watch reports each, the delete as null.
    set(&client, "app.db", json!({"host": "db2", "pool": {"max": 10}})).await;
    assert_eq!(get(&client, "app.db.pool.max").await, Some(json!(10)));
    let deleted = retry_unavailable(|| {
        let mut client = client.clone();
        async move { client.delete(DeleteConfigRequest { path: "app.db".into(), ..Default::default() }).await }
    });
    deleted.await.expect("delete app.db");
    assert_eq!(get(&client, "app.db").await, None);
    assert_eq!(get(&client, "app").await, Some(json!({"name": "shop"})));
    let values = watch.wait_for_values(5).await;
    assert_eq!(values[3..], [json!({"host": "db2", "pool": {"max": 10}}), Value::Null], "{values:?}");
    let revisions = watch.revisions();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "watch revisions go up: {revisions:?}");

    // Phase 4: a leaf written straight into etcd (as go-micro's etcd source would) is part of
    // the document, and the watch sees it.
    let key = "/micro/config/micro/app/db/host";
    let put = tokio::task::block_in_place(|| etcdctl(&cluster.endpoints_csv(), &["put", key, "\"db3\""]));
    assert!(put.success, "{put:?}");
    assert_eq!(get(&client, "app.db").await, Some(json!({"host": "db3"})));
    let values = watch.wait_for_values(6).await;
    assert_eq!(values[5], json!({"host": "db3"}), "{values:?}");

    // Phase 5: every JSON type round-trips; an array is one leaf, replaced whole by a merge.
    let types = json!({"list": [1, "two", {"three": 3}], "flag": false, "ratio": 0.25, "text": "h\u{e9}llo \"q\"\n"});
    set(&client, "types", types.clone()).await;
    assert_eq!(get(&client, "types").await, Some(types));
    set(&client, "types", json!({"list": ["x"], "flag": true})).await;
    let merged = json!({"list": ["x"], "flag": true, "ratio": 0.25, "text": "h\u{e9}llo \"q\"\n"});
    assert_eq!(get(&client, "types").await, Some(merged));

    // Phase 6: namespaces are separate trees.
    let request = SetRequest { namespace: "billing".into(), ..set_request("app.db.host", "\"db9\"") };
    try_set(&client, request).await.expect("set in another namespace");
    let billing = GetRequest { namespace: "billing".into(), path: "app".into(), ..Default::default() };
    assert_eq!(get_with(&client, billing).await, Some(json!({"db": {"host": "db9"}})));
    assert_eq!(get(&client, "app").await, Some(json!({"db": {"host": "db3"}, "name": "shop"})));
    let (leaves, _) = etcd_leaves(&cluster).await;
    assert!(leaves.contains_key("/micro/config/billing/app/db/host"), "{leaves:?}");
}

/// The values `keelctl config watch` printed so far, one per line. A line is either the JSON
/// value itself or (with `-o json` style output) an object carrying it in "value".
fn printed_values(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) if fields.contains_key("value") && fields.contains_key("revision") => {
                match &fields["value"] {
                    Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
                    value => value.clone(),
                }
            }
            Ok(value) => value,
            Err(_) => Value::String(line.to_string()),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn keelctl_config_watch_prints_each_change() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = config(&cluster, 1).await;
    set(&client, "app.db.host", json!("db0")).await;
    let mut command = Command::new(keelctl_binary());
    command.arg("--endpoints").arg(cluster.endpoints_csv()).args(["config", "watch", "app.db"]);
    let watch = Background::spawn(command);

    // The first line is the current value: the watch is running once it is printed.
    let printed = watch.wait_for_stdout(WATCH_TIMEOUT, "the current value", |out| out.lines().count() >= 1).await;
    printed.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(printed_values(&watch.stdout()), [json!({"host": "db0"})], "{:?}", watch.stdout());

    // The scenario: each change prints the value at app.db.
    set(&client, "app.db.host", json!("db1")).await;
    set(&client, "app.db", json!({"port": 5432})).await;
    let printed = watch.wait_for_stdout(WATCH_TIMEOUT, "two more lines", |out| out.lines().count() >= 3).await;
    printed.unwrap_or_else(|e| panic!("{e}"));
    let output = watch.kill();
    assert_eq!(output.exited, None, "the watch runs until stopped: {output:?}");
    let expected = [json!({"host": "db0"}), json!({"host": "db1"}), json!({"host": "db1", "port": 5432})];
    assert_eq!(printed_values(&output.stdout), expected, "{output:?}");

    // The rest of `keelctl config`: set, get, secrets, and a refusal that changes nothing.
    let run = |args: &[&str]| {
        let output = keelctl(&cluster, args);
        (output.exited == Some(true), output.stdout, output.stderr)
    };
    let json_line =
        |stdout: &str| serde_json::from_str::<Value>(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"));
    let password = distinctive_secret("cli");
    let (ok, _, stderr) = tokio::task::block_in_place(|| {
        run(&["config", "set", "app.db.password", &json!(password).to_string(), "--secret"])
    });
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&["config", "get", "app.db"]));
    assert!(ok, "{stderr}");
    assert_eq!(json_line(&stdout), json!({"host": "db1", "port": 5432, "password": "[secret]"}));
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&["config", "get", "app.db.password", "--secret"]));
    assert!(ok, "{stderr}");
    assert_eq!(json_line(&stdout), json!(password));
    let (ok, _, stderr) = tokio::task::block_in_place(|| run(&["config", "set", "app.db", "{not json"]));
    assert!(!ok && stderr.starts_with("Error: "), "{stderr}");
    let (ok, _, stderr) = tokio::task::block_in_place(|| run(&["config", "get", "app..db"]));
    assert!(!ok && stderr.starts_with("Error: "), "{stderr}");
    assert_eq!(get(&client, "app.db").await, Some(json!({"host": "db1", "port": 5432, "password": "[secret]"})));
}

/// A string nobody else writes: the plaintext whose bytes must not reach any disk.
fn distinctive_secret(label: &str) -> String {
    // RandomState is seeded randomly per process: two hashes give 128 random bits.
    let random = std::collections::hash_map::RandomState::new();
    format!("keel-{label}-{:016x}{:016x}", random.hash_one(1u8), random.hash_one(2u8))
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        // A file may vanish between listing and reading (RocksDB compacting): skip it.
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Every file under `dir` whose name contains `part`.
fn files_named(dir: &Path, part: &str) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|f| f.file_name().is_some_and(|n| n.to_string_lossy().contains(part))).collect()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let files = files_under(dir);
    assert!(!files.is_empty(), "{} holds no files", dir.display());
    files
        .into_iter()
        .filter(|file| std::fs::read(file).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)))
        .map(|file| file.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_masked_and_their_plaintext_is_on_no_disk() {
    // Snapshots every 100 entries, so a snapshot of the state machine is taken below.
    let mut cluster = TestCluster::start_with(Server::Keel, 3, &["--snapshot-count", "100"]).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let via_follower = config(&cluster, follower).await;
    let via_leader = config(&cluster, leader).await;
    let password = distinctive_secret("password");
    let token = distinctive_secret("token");
    // Stored in clear: the search below must find it, or it proves nothing.
    let control = distinctive_secret("control");
    let (masked_watch, _) = ConfigWatch::start(&cluster, (leader + 2) % 3, "db", false).await;

    // Phase 1: a secret leaf through a follower, a secret object through the leader.
    set(&via_follower, "db.user", json!("admin")).await;
    set(&via_leader, "notes.control", json!(control)).await;
    set_secret(&via_follower, "db.password", json!(password)).await;
    set_secret(&via_leader, "api", json!({"token": token, "retries": 3})).await;
    let secret = "[secret]";
    assert_eq!(get(&via_leader, "db.password").await, Some(json!(secret)));
    assert_eq!(get(&via_leader, "db").await, Some(json!({"user": "admin", "password": secret})));
    assert_eq!(get(&via_follower, "api").await, Some(json!({"token": secret, "retries": secret})));
    let in_clear = |path: &str| GetRequest { path: path.into(), secrets: true, ..Default::default() };
    assert_eq!(get_with(&via_leader, in_clear("db")).await, Some(json!({"user": "admin", "password": password})));
    assert_eq!(get_with(&via_follower, in_clear("api")).await, Some(json!({"token": token, "retries": 3})));
    let (clear_watch, current) = ConfigWatch::start(&cluster, follower, "api", true).await;
    assert_eq!(current, json!({"token": token, "retries": 3}), "a watch asking for secrets");
    drop(clear_watch);
    let masked = masked_watch.wait_for_values(2).await;
    assert_eq!(masked, [json!({"user": "admin"}), json!({"user": "admin", "password": secret})]);
    let (leaves, _) = etcd_leaves(&cluster).await;
    for (key, value) in &leaves {
        assert!(!value.contains(&password) && !value.contains(&token), "{key} holds a plaintext: {value}");
    }

    // Phase 2: more than --snapshot-count writes, so the state is snapshotted, then a clean
    // stop of every member (SIGTERM) so everything is flushed.
    for i in 0..150 {
        set(&via_leader, &format!("filler.key{i}"), json!(i)).await;
    }
    // The check below means something only once a snapshot of the state is on disk.
    wait_for(Duration::from_secs(15), "a snapshot file on every member", || {
        let all = cluster.members.iter().all(|m| !files_named(&m.data_dir, "snap").is_empty());
        async move { all }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    // The watch ends first: a member with an open watch stopping is another test's subject.
    drop(masked_watch);
    for i in 0..3 {
        let status = cluster.terminate_within(i, SHUTDOWN_TIMEOUT).await;
        let status = status.unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
        assert!(status.success(), "member {i} exited {status:?} on SIGTERM\n{}", cluster.all_logs());
    }
    for member in &cluster.members {
        let found = files_containing(&member.data_dir, control.as_bytes());
        assert!(!found.is_empty(), "the search finds no trace of a value stored in clear in {}", member.name);
        for plaintext in [&password, &token] {
            let found = files_containing(&member.data_dir, plaintext.as_bytes());
            assert!(found.is_empty(), "the plaintext {plaintext} is on disk in {found:?}");
        }
        let logs = member.logs();
        assert!(!logs.contains(&password) && !logs.contains(&token), "{} logged a plaintext", member.name);
    }

    // Phase 3: after a restart the secrets still open (the cluster's key is kept).
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_ready().await;
    let client = config(&cluster, 0).await;
    assert_eq!(get_with(&client, in_clear("db.password")).await, Some(json!(password)));
    assert_eq!(get_with(&client, in_clear("api.token")).await, Some(json!(token)));
    assert_eq!(get(&client, "filler.key149").await, Some(json!(149)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_serving_a_config_watch_stops_on_sigterm() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let client = config(&cluster, 0).await;
    let (watch, _) = ConfigWatch::start(&cluster, 1, "app", false).await;
    set(&client, "app.name", json!("shop")).await;
    assert_eq!(watch.wait_for_values(1).await, [json!({"name": "shop"})]);

    // The watched member stops within the deadline although its watcher never hangs up; the
    // watch then ends instead of hanging.
    let status = cluster.terminate_within(1, SHUTDOWN_TIMEOUT).await;
    let status =
        status.unwrap_or_else(|e| panic!("{e}: an open config watch holds up the shutdown\n{}", cluster.all_logs()));
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{}", cluster.all_logs());
    wait_for_some(WATCH_TIMEOUT, "the watch task to end", || {
        let finished = watch.task.is_finished();
        async move { finished.then_some(()) }
    })
    .await
    .expect("the watch stream ends when its member stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_and_its_watch_carry_on_across_kill9_of_the_leader() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let leader = cluster.leader().await;
    let survivor = (leader + 1) % 3;
    let client = config(&cluster, survivor).await;
    let (watch, _) = ConfigWatch::start(&cluster, survivor, "feature", false).await;
    let key = distinctive_secret("failover");

    // Phase 1: acknowledged sets, a secret among them, then the leader dies.
    set(&client, "feature.flag", json!(true)).await;
    set_secret(&client, "feature.key", json!(key)).await;
    cluster.kill9(leader);

    // Phase 2: the survivors take a set (the secret key outlived the leader too) and the watch,
    // on a survivor, reports it.
    set(&client, "feature.flag", json!(false)).await;
    set_secret(&client, "feature.other", json!("second secret")).await;
    let values = watch.wait_for_values(4).await;
    let masked = "[secret]";
    assert_eq!(
        values,
        [
            json!({"flag": true}),
            json!({"flag": true, "key": masked}),
            json!({"flag": false, "key": masked}),
            json!({"flag": false, "key": masked, "other": masked}),
        ]
    );

    // Phase 3: the killed member restarts with everything, secrets included.
    cluster.start_member(leader);
    cluster.wait_ready().await;
    let restarted = config(&cluster, leader).await;
    let request = GetRequest { path: "feature".into(), secrets: true, ..Default::default() };
    let expected = json!({"flag": false, "key": key, "other": "second secret"});
    assert_eq!(get_with(&restarted, request).await, Some(expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn get_at_an_earlier_revision_returns_the_value_then() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = config(&cluster, 1).await;
    let before = set(&client, "other", json!(true)).await;
    let first = set(&client, "app.mode", json!("blue")).await;
    set(&client, "app.limits", json!({"rps": 100})).await;
    let second = set(&client, "app.mode", json!("green")).await;
    let deleted = retry_unavailable(|| {
        let mut client = client.clone();
        async move { client.delete(DeleteConfigRequest { path: "app".into(), ..Default::default() }).await }
    });
    let deleted = deleted.await.expect("delete app").revision;

    let at = |path: &str, revision: i64| GetRequest { path: path.into(), revision, ..Default::default() };
    let cases: Vec<(&str, GetRequest, Option<Value>)> = vec![
        ("the first value", at("app.mode", first), Some(json!("blue"))),
        ("the document then", at("app", first), Some(json!({"mode": "blue"}))),
        ("the second value", at("app.mode", second), Some(json!("green"))),
        ("the document later", at("app", second), Some(json!({"mode": "green", "limits": {"rps": 100}}))),
        ("before it existed", at("app.mode", before), None),
        ("after the delete", at("app", deleted), None),
        ("now", at("app", 0), None),
    ];
    for (what, request, expected) in cases {
        assert_eq!(get_with(&client, request.clone()).await, expected, "{what}: {request:?}");
    }
    let (value, revision) = try_get(&client, at("app.mode", first)).await.expect("get at first");
    assert_eq!(value, json!("blue"));
    assert!(revision >= first, "a historical read reports revision {revision} for {first}");
    let future = try_get(&client, at("app.mode", deleted + 1000)).await;
    assert!(future.is_err(), "a future revision is refused: {future:?}");

    // History goes with compaction: a revision before it is refused, one after still reads.
    let mut etcd = cluster.client().await;
    etcd.compact(second, None).await.expect("compact");
    let compacted = try_get(&client, at("app.mode", first)).await.expect_err("a compacted revision");
    assert!(compacted.message().contains("compacted"), "{compacted:?}");
    assert_eq!(get_with(&client, at("app.mode", second)).await, Some(json!("green")));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let cluster = TestCluster::start(Server::Keel, 3).await;
    let client = config(&cluster, 2).await;
    set(&client, "app", json!({"name": "keel", "port": 80})).await;
    let app = json!({"name": "keel", "port": 80});
    let (leaves_before, revision_before) = etcd_leaves(&cluster).await;

    // A leaf far above any sensible configuration value, still well inside one request.
    let huge = json!("x".repeat(256 * 1024)).to_string();
    let huge_object = json!({"blob": "x".repeat(256 * 1024)}).to_string();
    // (what, path, value, words one of which the message must hold)
    let cases: Vec<(&str, &str, &str, &[&str])> = vec![
        ("invalid JSON", "app.name", "{not json", &["json"]),
        ("empty value", "app.name", "", &["json"]),
        ("trailing garbage", "app.name", "\"a\" b", &["json"]),
        ("empty middle segment", "app..name", "\"x\"", &["path", "segment"]),
        ("leading dot", ".app", "\"x\"", &["path", "segment"]),
        ("trailing dot", "app.", "\"x\"", &["path", "segment"]),
        ("oversized leaf", "app.name", &huge, &["large", "bytes", "size", "big"]),
        ("oversized leaf in an object", "app", &huge_object, &["large", "bytes", "size", "big"]),
    ];
    for (what, path, value, words) in cases {
        for secret in [false, true] {
            let request = SetRequest { secret, ..set_request(path, value) };
            let status = try_set(&client, request).await.expect_err(what);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what} (secret {secret}): {status:?}");
            let message = status.message().to_lowercase();
            assert!(
                words.iter().any(|w| message.contains(w)),
                "{what}: the message {message:?} names none of {words:?}"
            );
        }
        assert_eq!(get(&client, "app").await, Some(app.clone()), "after {what}");
    }
    // A bad path is refused by Get, Delete and Watch too; the Delete above all must not
    // touch "app".
    for path in ["app..name", ".app", "app."] {
        let got = try_get(&client, GetRequest { path: path.into(), ..Default::default() }).await;
        assert_eq!(got.map_err(|s| s.code()), Err(tonic::Code::InvalidArgument), "get {path}");
        let deleted = retry_unavailable(|| {
            let mut client = client.clone();
            async move { client.delete(DeleteConfigRequest { path: path.into(), ..Default::default() }).await }
        });
        assert_eq!(deleted.await.map_err(|s| s.code()), Err(tonic::Code::InvalidArgument), "delete {path}");
        let mut watcher = client.clone();
        let watched = watcher.watch(WatchConfigRequest { path: path.into(), ..Default::default() }).await;
        let code = match watched {
            Err(status) => status.code(),
            // A server may refuse in the first stream message instead.
            Ok(stream) => match stream.into_inner().message().await {
                Err(status) => status.code(),
                Ok(first) => panic!("watch {path} was accepted: {first:?}"),
            },
        };
        assert_eq!(code, tonic::Code::InvalidArgument, "watch {path}");
    }

    // Nothing reached the keyspace.
    let (leaves_after, revision_after) = etcd_leaves(&cluster).await;
    assert_eq!(leaves_after, leaves_before);
    assert_eq!(revision_after, revision_before, "a refused request changed the keyspace");
    assert_eq!(get(&client, "app").await, Some(app));
}
