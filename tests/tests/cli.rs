//! The `keel` command line: etcd's flags, one-line errors and a non-zero exit for bad flags,
//! an unusable data dir or a port in use, and a clean exit on SIGTERM.

use std::process::Command;
use std::time::Duration;

use keel_tests::{keel_binary, wait_for_some, Server, TestCluster};

/// Runs keel with `args` and returns (exit code, stderr). Every case here fails fast.
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(keel_binary()).args(args).output().expect("run keel");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A single member's flags on 127.0.0.1; port 0 lets the member take a port the kernel chooses
/// (and advertise it), for tests that never connect to it or learn its ports from
/// `--listen-addresses-file`.
fn loopback_flags(data_dir: &str, client: u16, peer: u16) -> Vec<String> {
    vec![
        "--data-dir".into(),
        data_dir.into(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{client}"),
        "--advertise-client-urls".into(),
        format!("http://127.0.0.1:{client}"),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{peer}"),
        "--initial-advertise-peer-urls".into(),
        format!("http://127.0.0.1:{peer}"),
        "--initial-cluster".into(),
        format!("default=http://127.0.0.1:{peer}"),
    ]
}

#[test]
fn bad_flags_fail_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--initial-cluster-state", "maybe"], "maybe"),
        (&["--listen-client-urls", "not a url"], "--listen-client-urls"),
        (&["--name", "x", "--initial-cluster", "y=http://127.0.0.1:1"], "couldn't find local name"),
        (&["--log-level", "loud"], "loud"),
        (&["--max-request-bytes", "lots"], "--max-request-bytes"),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run(args);
        assert!(code.is_some_and(|c| c != 0), "{args:?} exited {code:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn flags_come_from_keel_env_variables_and_the_flag_wins() {
    // The environment is read: a bad value there is reported like a bad flag.
    let output = Command::new(keel_binary()).env("KEEL_INITIAL_CLUSTER_STATE", "maybe").output().expect("run keel");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("maybe"));
    // A flag overrides it: the run gets past that check and fails on the next one instead
    // (no member named x), so no server starts.
    let output = Command::new(keel_binary())
        .env("KEEL_INITIAL_CLUSTER_STATE", "maybe")
        .args(["--initial-cluster-state", "new", "--name", "x"])
        .output()
        .expect("run keel");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("couldn't find local name") && !stderr.contains("maybe"),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let output = Command::new(keel_binary()).arg("--version").output().expect("run keel");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("keel "));
    let output = Command::new(keel_binary()).arg("--help").output().expect("run keel");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--name", "--data-dir", "--listen-client-urls", "--initial-cluster-state", "--max-request-bytes"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = loopback_flags(&dir.path().join("d").display().to_string(), port, 0);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (code, stderr) = run(&flags);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("in use"), "{stderr}");
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let flags = loopback_flags(&file.display().to_string(), 0, 0);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (code, stderr) = run(&flags);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("data directory") && stderr.lines().count() == 1, "{stderr}");
}

/// kill -9 on drop, so a failing assertion leaves no member behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn port_zero_is_bound_logged_advertised_and_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("listen-addresses");
    let log_path = dir.path().join("keel.log");
    let mut flags = loopback_flags(&dir.path().join("d").display().to_string(), 0, 0);
    flags.extend(["--listen-addresses-file".into(), report.display().to_string()]);
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(keel_binary())
        .args(&flags)
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start keel");
    let mut child = KillOnDrop(child);
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Phase 1: the report appears whole, naming one client and one peer address.
    let addresses = wait_for_some(keel_tests::READY_TIMEOUT, "the listen addresses file", || {
        let text = std::fs::read_to_string(&report).ok();
        let exited = child.0.try_wait().ok().flatten();
        async move {
            assert!(exited.is_none(), "keel exited: {exited:?}");
            keel_node::member::listen_report::parse(&text?)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    use keel_node::member::listen_report::Listener;
    let address = |kind| addresses.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a).expect("reported");
    let (client, peer) = (address(Listener::Client), address(Listener::Peer));
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    assert!(client.port() != 0 && peer.port() != 0 && client.ip().is_loopback(), "{addresses:?}");

    // Phase 2: the log says where it serves, and the member advertises the real URLs.
    let log_text = logs();
    assert!(log_text.contains(&format!("serving client requests on {client}")), "{log_text}");
    assert!(log_text.contains(&format!("serving peer traffic on {peer}")), "{log_text}");
    let client_url = format!("http://{client}");
    let mut etcd = keel_tests::connect(std::slice::from_ref(&client_url)).await;
    let member = wait_for_some(keel_tests::READY_TIMEOUT, "the member's published client URLs", || {
        let mut etcd = etcd.clone();
        async move {
            let list = etcd.member_list().await.ok()?;
            let member = list.members().first()?.clone();
            (!member.client_urls().is_empty()).then_some(member)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(member.client_urls(), std::slice::from_ref(&client_url));
    assert_eq!(member.peer_urls(), [format!("http://{peer}")]);
    etcd.put("on-port-zero", "yes", None).await.expect("a write through the reported port");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_a_restart_keeps_the_data() {
    let mut cluster = TestCluster::start(Server::Keel, 1).await;
    let mut client = cluster.client().await;
    client.put("kept", "yes", None).await.expect("put");
    let status = cluster.terminate(0);
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{}", cluster.all_logs());

    // A restart on the same data dir ignores --initial-cluster and serves the old data.
    cluster.start_member(0);
    cluster.wait_ready().await;
    let client = cluster.client().await;
    let value = wait_for_some(Duration::from_secs(10), "the key after restart", || {
        let mut client = client.clone();
        async move { client.get("kept", None).await.ok().and_then(|r| r.kvs().first().map(|kv| kv.value().to_vec())) }
    })
    .await
    .expect("key readable");
    assert_eq!(value, b"yes");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_every_member_of_a_busy_cluster_cleanly() {
    let mut cluster = TestCluster::start(Server::Keel, 3).await;
    let mut client = cluster.client().await;
    for i in 0..50 {
        client.put(format!("k{i}"), "v", None).await.expect("put");
    }
    for i in 0..3 {
        let status = cluster.terminate(i);
        assert!(status.success(), "member {i} exit after SIGTERM: {status:?}\n{}", cluster.all_logs());
    }
}
