//! TLS with etcd's flags: etcdctl over https with a client certificate whose CN is the user
//! prints what it prints against etcd 3.4; a three-member cluster speaking TLS on both ports
//! loses no acknowledged write when its leader is killed; and whoever lacks a certificate
//! signed by the right CA cannot speak to a port that asks for one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, TlsOptions};
use keel_client::events::{Events, GrpcEvents, ReadOptions};
use keel_tests::acked::{assert_all_present, spawn_writers, Acked};
use keel_tests::tls::{CertFiles, TestCerts};
use keel_tests::transcript::{assert_same_transcripts, step, Step};
use keel_tests::{etcdctl, keelctl, wait_for, EtcdctlOutput, Server, TestCluster, TlsSetup, READY_TIMEOUT};

const ROOT: &str = "@cert=root";
const ALICE: &str = "@cert=alice";
const STRANGER: &str = "@cert=mallory";

const CLIENT_CERT_AUTH: TlsSetup =
    TlsSetup { client: true, client_cert_auth: true, peer: false, peer_client_cert_auth: false };
const EVERY_PORT: TlsSetup = TlsSetup { client: true, client_cert_auth: true, peer: true, peer_client_cert_auth: true };

/// With `--client-cert-auth` the certificate's CN is the user once auth is on; a token from
/// `--user` wins over it; a CN that names nobody may do nothing.
const CN_SCRIPT: &[Step] = &[
    step(&[ROOT, "user", "add", "root:rootpw"]),
    step(&[ROOT, "role", "add", "reader"]),
    step(&[ROOT, "role", "grant-permission", "reader", "--prefix", "read", "pub/"]),
    step(&[ROOT, "user", "add", "alice:alicepw"]),
    step(&[ROOT, "user", "grant-role", "alice", "reader"]),
    step(&[ROOT, "put", "pub/a", "1"]),
    step(&[ROOT, "put", "secret", "s"]),
    step(&[ALICE, "put", "pub/b", "before"]),
    step(&[ROOT, "auth", "enable"]),
    step(&[ROOT, "put", "pub/c", "3"]),
    step(&[ROOT, "get", "", "--prefix"]),
    step(&[ROOT, "user", "list"]),
    step(&[ROOT, "role", "get", "reader"]),
    step(&[ALICE, "get", "pub/", "--prefix"]),
    step(&[ALICE, "get", "secret"]),
    step(&[ALICE, "put", "pub/d", "4"]),
    step(&[ALICE, "del", "pub/a"]),
    step(&[ALICE, "user", "list"]),
    step(&[ALICE, "user", "get", "alice"]),
    step(&[ALICE, "auth", "disable"]),
    Step { args: &[ALICE, "txn"], stdin: "value(\"pub/a\") = \"1\"\n\nget pub/a\n\nget secret\n\n" },
    step(&[STRANGER, "get", "pub/a"]),
    step(&[STRANGER, "put", "pub/x", "1"]),
    step(&[STRANGER, "user", "list"]),
    step(&[ALICE, "--user=root:rootpw", "put", "secret", "t"]),
    step(&[ROOT, "--user=alice:alicepw", "put", "secret", "u"]),
    step(&[ROOT, "--user=alice:wrong", "get", "secret"]),
    step(&[ROOT, "user", "revoke-role", "alice", "reader"]),
    step(&[ALICE, "get", "pub/a"]),
    step(&[ROOT, "get", "secret"]),
    step(&[ROOT, "auth", "disable"]),
    step(&[ALICE, "put", "secret", "free"]),
    step(&[STRANGER, "get", "secret"]),
];

/// Without `--client-cert-auth` a certificate names nobody (the trusted CA still makes it
/// required): with auth on, a caller with only a certificate is anonymous.
const NO_CN_SCRIPT: &[Step] = &[
    step(&[ROOT, "put", "k", "v"]),
    step(&[ROOT, "user", "add", "root:rootpw"]),
    step(&[ROOT, "auth", "enable"]),
    step(&[ROOT, "get", "k"]),
    step(&[ROOT, "user", "list"]),
    step(&[ROOT, "--user=root:rootpw", "get", "k"]),
    step(&[ROOT, "--user=root:rootpw", "auth", "disable"]),
    step(&[ROOT, "get", "k"]),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificates_cn_is_the_user_as_in_etcd() {
    let keel = TestCluster::start_tls(Server::Keel, 1, CLIENT_CERT_AUTH, &[]).await;
    let etcd = TestCluster::start_tls(Server::Etcd, 1, CLIENT_CERT_AUTH, &[]).await;
    let outputs = assert_same_transcripts(&keel, &etcd, CN_SCRIPT);
    assert_eq!(
        stdout_of(CN_SCRIPT, &outputs, &[ALICE, "get", "pub/", "--prefix"]),
        "pub/a\n1\npub/b\nbefore\npub/c\n3\n"
    );
    assert_eq!(stdout_of(CN_SCRIPT, &outputs, &[ALICE, "put", "secret", "free"]), "OK\n");
    assert!(
        outputs.iter().filter(|output| output.stderr.contains("permission denied")).count() >= 4,
        "alice and the stranger are refused: {outputs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_client_cert_auth_a_certificate_names_nobody_as_in_etcd() {
    let setup = TlsSetup { client: true, ..TlsSetup::default() };
    let keel = TestCluster::start_tls(Server::Keel, 1, setup, &[]).await;
    let etcd = TestCluster::start_tls(Server::Etcd, 1, setup, &[]).await;
    let outputs = assert_same_transcripts(&keel, &etcd, NO_CN_SCRIPT);
    assert_eq!(stdout_of(NO_CN_SCRIPT, &outputs, &[ROOT, "--user=root:rootpw", "get", "k"]), "k\nv\n");
    assert!(stderr_of(NO_CN_SCRIPT, &outputs, &[ROOT, "get", "k"]).contains("user name is empty"), "{outputs:?}");
    let tls = keel.tls.as_ref().expect("TLS cluster");
    let ca_only = TlsOptions::new().ca_certificate(Certificate::from_pem(tls.certs.ca_pem()));
    let refused = call(&keel.members[0].client_url, Some(ca_only)).await;
    assert!(refused.is_err(), "--trusted-ca-file alone requires a client certificate, as in etcd: {refused:?}");
}

/// Three members with TLS and certificate checks on both ports and auth on, the harness
/// acting as root by its certificate: writers keep writing while the leader is killed; every
/// acknowledged write is readable from every member afterwards, the restarted one included.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_with_auth_loses_nothing_when_its_leader_is_killed() {
    let mut cluster = TestCluster::start_tls(Server::Keel, 3, EVERY_PORT, &[]).await;
    let tls = cluster.tls.as_mut().expect("TLS cluster");
    tls.harness = tls.certs.issue("root-client", "root");
    let mut client = cluster.client().await;
    client.user_add("root", "rootpw", None).await.expect("add root");
    client.user_grant_role("root", "root").await.expect("grant root");
    client.auth_enable().await.expect("auth enable");
    let before = cluster.member_client(0).await.get("any", None).await;
    assert!(before.is_ok(), "root's certificate must be enough once auth is on: {before:?}");

    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = spawn_writers(&client, &acked, &stop);
    wait_for(READY_TIMEOUT, "writes before the kill", || async { acked.lock().expect("lock").values.len() >= 50 })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    let leader = cluster.leader().await;
    cluster.kill9(leader);
    let at_kill = acked.lock().expect("lock").values.len();
    wait_for(READY_TIMEOUT, "writes after the kill", || async {
        acked.lock().expect("lock").values.len() >= at_kill + 50
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    cluster.start_member(leader);
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("writer");
    }
    let acked = std::mem::take(&mut acked.lock().expect("lock").values);
    for i in 0..3 {
        assert_all_present(&cluster, i, &acked).await;
    }
    let out = etcdctl(
        &cluster.endpoints_csv(),
        &cluster_etcdctl_args(&cluster, "root-client")
            .iter()
            .map(String::as_str)
            .chain(["get", "w0-000000", "--print-value-only"])
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.stdout.trim(), acked.get("w0-000000").map_or("", String::as_str), "etcdctl over https: {out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_that_asks_for_a_certificate_refuses_whoever_has_none() {
    let cluster = TestCluster::start_tls(Server::Keel, 3, EVERY_PORT, &[]).await;
    let tls = cluster.tls.as_ref().expect("TLS cluster");
    let stranger = TestCerts::generate(&tls.certs.ca.with_file_name("stranger"), "stranger");
    let client_url = cluster.members[0].client_url.clone();
    let peer_url = cluster.members[0].peer_url.clone();

    let ca_only = TlsOptions::new().ca_certificate(Certificate::from_pem(tls.certs.ca_pem()));
    let stranger_cert = ca_only.clone().identity(stranger.member.identity());
    for url in [&client_url, &peer_url] {
        let refused = call(url, Some(ca_only.clone())).await;
        assert!(refused.is_err(), "{url} without a certificate: {refused:?}");
        let refused = call(url, Some(stranger_cert.clone())).await;
        assert!(refused.is_err(), "{url} with a stranger CA's certificate: {refused:?}");
        let refused = call(&url.replace("https://", "http://"), None).await;
        assert!(refused.is_err(), "{url} in plain HTTP/2: {refused:?}");
        raw_garbage(url).await;
    }
    // The cluster's own CA: the client port serves; the peer port answers (it serves no KV).
    let with_cert = ca_only.identity(tls.harness.identity());
    let served = call(&client_url, Some(with_cert.clone())).await;
    assert!(served.is_ok(), "the client port with the cluster's certificate: {served:?}");
    let answered = call(&peer_url, Some(with_cert)).await;
    assert!(
        matches!(&answered, Err(etcd_client::Error::GRpcStatus(status)) if status.code() == tonic::Code::Unimplemented),
        "the peer port completes the handshake with the cluster's certificate and answers in gRPC: {answered:?}"
    );
    let logs = cluster.members[0].logs();
    assert!(logs.contains("rejected connection from 127.0.0.1"), "refusals are logged:\n{logs}");
    let mut client = cluster.client().await;
    client.put("still", "serving", None).await.expect("the cluster still serves after the strangers");
}

fn stdout_of<'a>(script: &[Step], outputs: &'a [EtcdctlOutput], args: &[&str]) -> &'a str {
    &output_of(script, outputs, args).stdout
}

fn stderr_of<'a>(script: &[Step], outputs: &'a [EtcdctlOutput], args: &[&str]) -> &'a str {
    &output_of(script, outputs, args).stderr
}

/// The output of the first step of `script` with `args`.
fn output_of<'a>(script: &[Step], outputs: &'a [EtcdctlOutput], args: &[&str]) -> &'a EtcdctlOutput {
    let index = script.iter().position(|step| step.args == args).expect("the step is in the script");
    &outputs[index]
}

/// keelctl and keel-client take etcdctl's flags: a CA, and a client certificate when the
/// members ask for one; an https:// endpoint without a CA is refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn keelctl_and_keel_client_speak_tls() {
    let cluster = TestCluster::start_tls(Server::Keel, 1, CLIENT_CERT_AUTH, &[]).await;
    let tls = cluster.tls.as_ref().expect("TLS cluster");
    let cacert = format!("--cacert={}", tls.certs.ca.display());
    let cert = format!("--cert={}", tls.harness.cert.display());
    let key = format!("--key={}", tls.harness.key.display());
    let published = keelctl(&cluster, &[&cacert, &cert, &key, "events", "publish", "tls", "over https"]);
    assert_eq!(published.exited, Some(true), "{published:?}");
    let read = keelctl(&cluster, &[&cacert, &cert, &key, "-o", "json", "events", "read", "tls"]);
    assert!(read.stdout.contains("over https"), "{read:?}");

    let no_ca = keelctl(&cluster, &["events", "read", "tls"]);
    assert_eq!(no_ca.exited, Some(false));
    assert!(no_ca.stderr.contains("--cacert"), "the error names the missing flag: {no_ca:?}");
    let no_cert = keelctl(&cluster, &[&cacert, "events", "read", "tls"]);
    assert_eq!(no_cert.exited, Some(false), "the member asks for a client certificate: {no_cert:?}");

    let client_tls = keel_client::Tls::from_files(&tls.certs.ca, Some(&tls.harness.cert), Some(&tls.harness.key))
        .expect("the harness's files");
    let options = keel_client::ConnectOptions::new().with_tls(client_tls);
    let events = GrpcEvents::connect_with(&cluster.endpoints(), &options).await.expect("valid endpoints");
    let read = events.read("tls", ReadOptions::from_offset(0)).await.expect("read over TLS");
    assert_eq!(read.first().map(|event| event.payload.as_slice()), Some(b"over https".as_slice()));
    let refused = GrpcEvents::connect(&cluster.endpoints()).await.err();
    assert!(matches!(refused, Some(keel_client::Error::InvalidArgument(_))), "{refused:?}");
}

/// One connection and one get on `url`, with `tls` options if given.
async fn call(url: &str, tls: Option<TlsOptions>) -> Result<(), etcd_client::Error> {
    let mut options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(3)).with_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    let mut client = Client::connect([url], Some(options)).await?;
    client.get("probe", None).await.map(|_| ())
}

/// Bytes that are not a TLS ClientHello: the member closes the connection.
async fn raw_garbage(url: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("https://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n garbage garbage garbage\r\n").await;
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{url} kept a connection that sent no TLS open");
}

fn cluster_etcdctl_args(cluster: &TestCluster, stem: &str) -> Vec<String> {
    let tls = cluster.tls.as_ref().expect("TLS cluster");
    let files: CertFiles = tls.certs.existing(stem).expect("certificate issued");
    tls.etcdctl_args(&files)
}
