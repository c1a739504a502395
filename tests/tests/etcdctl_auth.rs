//! etcdctl 3.4's auth commands against Keel print what they print against etcd 3.4: users,
//! roles and permissions, enabling and disabling auth, reads and writes as a limited user, and
//! every refusal (no user, wrong password, permission denied), with simple and JWT tokens.

use keel_tests::transcript::{assert_same_transcripts, step, Step};
use keel_tests::{Server, TestCluster};

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

const SCRIPT: &[Step] = &[
    // Before `auth enable`: the accounts and what they may do.
    step(&["auth", "enable"]),
    step(&["user", "add", "root:rootpw"]),
    step(&["user", "add", "root:again"]),
    step(&["role", "add", "reader"]),
    step(&["role", "add", "reader"]),
    step(&["role", "grant-permission", "reader", "read", "foo"]),
    step(&["role", "grant-permission", "reader", "--prefix", "readwrite", "pre/"]),
    step(&["role", "grant-permission", "reader", "write", "w1", "w3"]),
    step(&["role", "grant-permission", "reader", "readwrite", "--from-key", "z"]),
    step(&["role", "grant-permission", "nobody", "read", "foo"]),
    step(&["user", "add", "alice:alicepw"]),
    step(&["user", "grant-role", "alice", "reader"]),
    step(&["user", "grant-role", "alice", "missing"]),
    step(&["user", "grant-role", "carol", "reader"]),
    step(&["user", "get", "alice"]),
    step(&["user", "get", "alice", "--detail"]),
    step(&["user", "get", "carol"]),
    step(&["role", "get", "reader"]),
    step(&["role", "get", "reader", "-w", "json"]),
    step(&["role", "get", "nobody"]),
    step(&["user", "list"]),
    step(&["role", "list"]),
    step(&["put", "foo", "before"]),
    step(&["auth", "enable"]),
    // With auth on: who may do what.
    step(&["put", "foo", "anonymous"]),
    step(&["get", "foo"]),
    step(&["user", "list"]),
    step(&[ROOT, "put", "foo", "bar"]),
    step(&[ROOT, "user", "list"]),
    step(&[ROOT, "role", "list"]),
    step(&[ROOT, "role", "get", "root"]),
    step(&[ROOT, "user", "get", "root"]),
    step(&[ALICE, "get", "foo"]),
    step(&[ALICE, "get", "foo", "--prefix"]),
    step(&[ALICE, "put", "foo", "mine"]),
    step(&[ALICE, "put", "pre/a", "1"]),
    step(&[ALICE, "put", "pre/b", "2"]),
    step(&[ALICE, "get", "pre/", "--prefix"]),
    step(&[ALICE, "del", "pre/", "--prefix"]),
    step(&[ALICE, "put", "w2", "x"]),
    step(&[ALICE, "get", "w2"]),
    step(&[ALICE, "put", "w3", "x"]),
    step(&[ALICE, "put", "zz", "x"]),
    step(&[ALICE, "get", "z", "--from-key"]),
    step(&[ALICE, "get", "", "--from-key"]),
    Step { args: &[ALICE, "txn"], stdin: "value(\"foo\") = \"bar\"\n\nput pre/t yes\n\nput pre/t no\n\n" },
    Step { args: &[ALICE, "txn"], stdin: "value(\"foo\") = \"bar\"\n\nput foo no\n\n\n" },
    Step { args: &[ALICE, "txn"], stdin: "value(\"secret\") = \"x\"\n\nput pre/t yes\n\n\n" },
    step(&[ALICE, "user", "list"]),
    step(&[ALICE, "user", "get", "alice"]),
    step(&[ALICE, "role", "get", "reader"]),
    step(&[ALICE, "user", "get", "root"]),
    step(&[ALICE, "user", "add", "mallory:pw"]),
    step(&[ALICE, "auth", "disable"]),
    step(&["--user=alice:wrong", "get", "foo"]),
    step(&["--user=nobody:pw", "get", "foo"]),
    step(&[ROOT, "role", "revoke-permission", "reader", "foo"]),
    step(&[ROOT, "role", "revoke-permission", "reader", "foo"]),
    step(&[ALICE, "get", "foo"]),
    Step { args: &[ROOT, "user", "passwd", "alice", "--interactive=false"], stdin: "newpw\n" },
    step(&[ALICE, "get", "pre/", "--prefix"]),
    step(&["--user=alice:newpw", "get", "pre/", "--prefix"]),
    step(&[ROOT, "user", "revoke-role", "alice", "reader"]),
    step(&[ROOT, "user", "revoke-role", "alice", "reader"]),
    step(&["--user=alice:newpw", "get", "pre/", "--prefix"]),
    step(&[ROOT, "user", "revoke-role", "root", "root"]),
    step(&[ROOT, "user", "delete", "root"]),
    step(&[ROOT, "role", "delete", "reader"]),
    step(&[ROOT, "user", "delete", "alice"]),
    step(&["--user=alice:newpw", "get", "foo"]),
    step(&[ROOT, "auth", "disable"]),
    step(&["get", "foo"]),
    step(&["user", "list"]),
    step(&["role", "list"]),
];

#[tokio::test(flavor = "multi_thread")]
async fn auth_transcript_with_simple_tokens_is_etcds() {
    let (keel, etcd) = tokio::join!(TestCluster::start(Server::Keel, 3), TestCluster::start(Server::Etcd, 3));
    assert_same_transcripts(&keel, &etcd, SCRIPT);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_transcript_with_jwt_tokens_is_etcds() {
    let keys = tempfile::tempdir().expect("temp dir");
    let secret = keys.path().join("jwt-secret");
    std::fs::write(&secret, test_secret()).expect("write the JWT secret");
    let flag = format!("jwt,priv-key={},sign-method=HS256,ttl=5m", secret.display());
    let args = ["--auth-token", flag.as_str()];
    let (keel, etcd) =
        tokio::join!(TestCluster::start_with(Server::Keel, 3, &args), TestCluster::start_with(Server::Etcd, 3, &args));
    assert_same_transcripts(&keel, &etcd, SCRIPT);
}

/// A secret made for this run (none is committed): letters from the clock and the process id.
fn test_secret() -> String {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    (0..32).map(|i| char::from(b'a' + u8::try_from((seed >> (i * 4)) % 26).unwrap_or(0))).collect()
}
