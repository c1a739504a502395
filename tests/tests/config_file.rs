//! `keel --config-file`: a member started from etcd's YAML file alone, with a `KEEL_*`
//! variable winning over the file (flag > env > file > default).

use std::process::{Command, Stdio};
use std::time::Duration;

use keel_tests::{keel_binary, try_connect, wait_for_some, ReservedPort};

#[tokio::test(flavor = "multi_thread")]
async fn a_member_starts_from_a_config_file_and_the_environment_wins_over_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, peer) = (ReservedPort::new(), ReservedPort::new());
    let client_url = format!("http://127.0.0.1:{}", client.port());
    let peer_url = format!("http://127.0.0.1:{}", peer.port());
    let yaml = format!(
        "# etcd's sample keys, Keel's values\n\
         name: from-file\n\
         data-dir: {data}\n\
         listen-client-urls: {client_url}\n\
         advertise-client-urls: {client_url}\n\
         listen-peer-urls: {peer_url}\n\
         initial-advertise-peer-urls: {peer_url}\n\
         initial-cluster: from-env={peer_url}\n\
         initial-cluster-state: new\n\
         experimental-corrupt-check-time: 0\n",
        data = dir.path().join("data").display()
    );
    let path = dir.path().join("keel.yml");
    std::fs::write(&path, yaml).expect("write the file");
    let mut command = Command::new(keel_binary());
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KEEL_")) {
        command.env_remove(name);
    }
    let log = std::fs::File::create(dir.path().join("keel.log")).expect("log file");
    let mut child = command
        .arg("--config-file")
        .arg(&path)
        .env("KEEL_NAME", "from-env")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start keel");

    let endpoints = [client_url.clone()];
    let names = wait_for_some(Duration::from_secs(30), "the member to serve", || async {
        let mut client = try_connect(&endpoints).await.ok()?;
        let members = client.member_list().await.ok()?;
        let names: Vec<String> = members.members().iter().map(|m| m.name().to_string()).collect();
        // The name is known once the member has published its attributes.
        (!names.is_empty() && names.iter().all(|name| !name.is_empty())).then_some(names)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let logs = std::fs::read_to_string(dir.path().join("keel.log")).unwrap_or_default();
    let names = names.unwrap_or_else(|e| panic!("{e}\n{logs}"));
    assert_eq!(names, ["from-env"], "KEEL_NAME wins over the file's name");
    assert!(
        logs.contains("\"experimental-corrupt-check-time\" is not a keel setting"),
        "unknown keys are reported:\n{logs}"
    );
}
