//! etcd's auth on Keel, black-box and hostile: tokens that are forged, expired, unsigned, from
//! another cluster or tampered with; simple tokens that are made up, empty, huge or not text;
//! tokens whose user was deleted, re-passworded or stripped of a role; failed logins by the
//! thousand; a JWT carried across members and a leader crash; root-only admin ops; watches of
//! keys the watcher may not read; and Keel's native services while etcd auth is on.
//!
//! Every answer is checked against etcd 3.4's code and text (`rpctypes`), and every refused
//! request against the data: it changed nothing.

use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};
use keel_proto::etcd::{
    PbDefragmentRequest, PbDefragmentResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse,
    PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse, PbMemberPromoteRequest,
    PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse, PbMemberUpdateRequest,
    PbMemberUpdateResponse, PbPutRequest, PbPutResponse, PbStatusRequest, PbStatusResponse,
};
use keel_proto::etcd_auth::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse, AuthUserListRequest,
    AuthUserListResponse, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse,
};
use keel_tests::{wait_for_some, Server, TestCluster, CALL_TIMEOUT};
use tonic::{Code, Request};

#[path = "support/auth_raw.rs"]
mod raw;
use raw::*;

const ROOT_PW: &str = "rootpw";
const ALICE_PW: &str = "alicepw";

/// etcd 3.4's answers (`rpctypes/error.go`), code and text.
type Refusal = (Code, &'static str);
const INVALID_TOKEN: Refusal = (Code::Unauthenticated, "etcdserver: invalid auth token");
const PERMISSION_DENIED: Refusal = (Code::PermissionDenied, "etcdserver: permission denied");
const AUTH_FAILED: Refusal = (Code::InvalidArgument, "etcdserver: authentication failed, invalid user ID or password");
const USER_EMPTY: Refusal = (Code::InvalidArgument, "etcdserver: user name is empty");
const OLD_REVISION: Refusal = (Code::InvalidArgument, "etcdserver: revision of auth store is old");
const AUTH_NOT_ENABLED: Refusal = (Code::FailedPrecondition, "etcdserver: authentication is not enabled");

/// The cheapest bcrypt etcd allows, so that logins and user adds are fast.
const BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];

// ---- 1. JWT tokens that are not the cluster's ----

#[tokio::test(flavor = "multi_thread")]
async fn jwt_forged_expired_unsigned_foreign_and_tampered_tokens_are_refused() {
    let ours = JwtCluster::start(1, "5m").await;
    let theirs = JwtCluster::start(1, "5m").await;
    let (m, other) = (Raw::to(&ours.cluster, 0).await, Raw::to(&theirs.cluster, 0).await);
    for member in [&m, &other] {
        enable_auth(member, &[("alice", ALICE_PW, "reader")]).await;
    }
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let alice = m.login("alice", ALICE_PW).await.expect("alice logs in");
    let foreign_root = other.login("root", ROOT_PW).await.expect("root logs in to the other cluster");

    // What the genuine tokens may do: the refusals below are the tokens', not the users'.
    m.put(Some(&root), "foo", "original").await.expect("root writes with its own token");
    assert_refused(m.put(Some(&alice), "foo", "alice").await, PERMISSION_DENIED, "alice may only read foo");
    assert_eq!(m.get(Some(&alice), "foo").await.expect("alice reads foo"), Some("original".into()));
    other.put(Some(&foreign_root), "foo", "theirs").await.expect("the other cluster's root writes there");

    let claims = jwt_claims(&root);
    assert_eq!(claims["username"], "root", "etcd's claims: {claims}");
    let revision = claims["revision"].as_u64().expect("a revision claim");
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let parts: Vec<&str> = root.split('.').collect();
    let alice_parts: Vec<&str> = alice.split('.').collect();
    assert_eq!((parts.len(), alice_parts.len()), (3, 3), "a JWT has three parts");
    let mut tampered_claims = jwt_claims(&alice);
    tampered_claims["username"] = "root".into();
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);

    let bad_tokens: Vec<(&str, String)> = vec![
        (
            "root's claims signed with another secret",
            signer(&write_secret(&ours.dir, "forger"), "HS256", "5m").issue("root", revision, now).expect("sign"),
        ),
        (
            "root's claims signed with the cluster's secret but HS384",
            signer(&ours.secret, "HS384", "5m").issue("root", revision, now).expect("sign"),
        ),
        (
            "issued an hour ago for 5 minutes, signed with the cluster's own secret",
            signer(&ours.secret, "HS256", "5m").issue("root", revision, now - hour).expect("sign"),
        ),
        ("alg none, no signature", format!("{none_header}.{}.", parts[1])),
        ("alg none, root's signature kept", format!("{none_header}.{}.{}", parts[1], parts[2])),
        ("a real token of another cluster (another key)", foreign_root.clone()),
        (
            "alice's token with the username changed to root, signature kept",
            format!("{}.{}.{}", alice_parts[0], b64url(tampered_claims.to_string().as_bytes()), alice_parts[2]),
        ),
        ("root's token with its signature cut short", root[..root.len() - 2].to_string()),
        ("root's token with no signature", format!("{}.{}.", parts[0], parts[1])),
        ("root's token with alice's signature", format!("{}.{}.{}", parts[0], parts[1], alice_parts[2])),
    ];
    for (what, token) in &bad_tokens {
        assert_refused(m.put(Some(token), "foo", "forged").await, INVALID_TOKEN, what);
        assert_refused(m.put(Some(token), "forged", "x").await, INVALID_TOKEN, what);
        assert_refused(m.get(Some(token), "foo").await, INVALID_TOKEN, what);
        let disable = m.call::<_, AuthDisableResponse>(AUTH_DISABLE, AuthDisableRequest {}, Some(token.as_bytes()));
        assert_refused(disable.await, INVALID_TOKEN, what);
        let add = AuthUserAddRequest { name: "mallory".into(), password: "pw".into(), ..Default::default() };
        assert_refused(
            m.call::<_, AuthUserAddResponse>(USER_ADD, add, Some(token.as_bytes())).await,
            INVALID_TOKEN,
            what,
        );
    }

    // Nothing changed: the value, the keyspace, the users, auth still on.
    assert_eq!(m.get(Some(&root), "foo").await.expect("root reads"), Some("original".into()));
    assert_eq!(m.get(Some(&root), "forged").await.expect("root reads"), None);
    assert_refused(m.get(None, "foo").await, USER_EMPTY, "auth is still enabled");
    let users = m.call::<_, AuthUserListResponse>(USER_LIST, AuthUserListRequest {}, Some(root.as_bytes()));
    assert_eq!(users.await.expect("root lists users").users, ["alice", "root"]);
    // The other cluster's token still works there: it was refused for its key, not for its shape.
    assert_eq!(other.get(Some(&foreign_root), "foo").await.expect("read there"), Some("theirs".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_is_refused_once_its_ttl_has_passed() {
    let ours = JwtCluster::start(1, "2s").await;
    let m = Raw::to(&ours.cluster, 0).await;
    enable_auth(&m, &[]).await;
    let issued = Instant::now();
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    m.put(Some(&root), "k", "while valid").await.expect("a fresh token writes");

    let refused_after = keel_tests::wait_for(Duration::from_secs(15), "the token to expire", || async {
        matches!(m.get(Some(&root), "k").await, Err(status) if status.code() == Code::Unauthenticated)
    })
    .await
    .expect("a 2 s token expires");
    assert!(issued.elapsed() >= Duration::from_secs(1), "refused after {refused_after:?}: too early for a 2 s ttl");

    assert_refused(m.put(Some(&root), "k", "after expiry").await, INVALID_TOKEN, "an expired token writes");
    assert_refused(m.get(Some(&root), "k").await, INVALID_TOKEN, "an expired token reads");
    let fresh = m.login("root", ROOT_PW).await.expect("root logs in again");
    assert_eq!(
        m.get(Some(&fresh), "k").await.expect("read"),
        Some("while valid".into()),
        "the refused write changed k"
    );
}

// ---- 2. Simple tokens that are not the cluster's ----

#[tokio::test(flavor = "multi_thread")]
async fn simple_tokens_made_up_empty_huge_or_not_text_are_refused() {
    let cluster = TestCluster::start_with(Server::Keel, 1, &BCRYPT).await;
    let m = Raw::to(&cluster, 0).await;
    enable_auth(&m, &[]).await;
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    m.put(Some(&root), "foo", "original").await.expect("root writes");
    let real_shape = format!("{}.{}", "a".repeat(16), 7);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a made-up token", b"made-up-token".to_vec()),
        ("a made-up token of etcd's shape", real_shape.into_bytes()),
        ("root's token with one letter changed", flip_first_letter(&root).into_bytes()),
        ("root's token with a suffix", format!("{root}x").into_bytes()),
        ("an empty token", Vec::new()),
        ("a 12 KiB token", vec![b'a'; 12 * 1024]),
        ("UTF-8 that is not ASCII", "tökén.1".as_bytes().to_vec()),
        ("bytes that are not UTF-8", vec![0xff, 0xfe, 0x80, b'.', b'1']),
        ("a token with a space", b"made up.1".to_vec()),
    ];
    for (what, token) in &cases {
        assert_refused(m.put_raw(Some(token), "foo", "forged").await, INVALID_TOKEN, what);
        assert_refused(m.get_raw(Some(token), "foo").await, INVALID_TOKEN, what);
    }

    // Headers past 16 KiB are refused by the HTTP/2 server before any gRPC handler (HTTP 431,
    // which a gRPC client reads as Unknown); a 1 MiB one ends the connection (GOAWAY with
    // ENHANCE_YOUR_CALM, read as ResourceExhausted, or a broken pipe if the client is still
    // writing). The member goes on serving, on that channel and on new ones.
    let big = vec![b'a'; 32 * 1024];
    let refused = m.put_raw(Some(&big), "foo", "big").await.expect_err("a 32 KiB token header is refused");
    assert_eq!(refused.code(), Code::Unknown, "{refused:?}");
    assert!(refused.message().contains("431"), "{refused:?}");
    let huge = vec![b'a'; 1 << 20];
    let refused = m.put_raw(Some(&huge), "foo", "huge").await.expect_err("a 1 MiB token header is refused");
    assert!(matches!(refused.code(), Code::ResourceExhausted | Code::Unknown), "{refused:?}");
    // The channel reconnects after the connection the member ended: a call racing that may be
    // cancelled once, then the member serves.
    let served = wait_for_some(Duration::from_secs(5), "the member to serve after a huge header", || async {
        m.put(Some(&root), "after-huge", "served").await.ok()
    })
    .await;
    served.unwrap_or_else(|e| panic!("{e}"));
    let fresh = Raw::to(&cluster, 0).await;
    assert_eq!(fresh.get(Some(&root), "after-huge").await.expect("read"), Some("served".into()));

    // Nothing changed, and the real token works under either of etcd's header names.
    assert_eq!(m.get(Some(&root), "foo").await.expect("read"), Some("original".into()));
    let put = PbPutRequest { key: b"via-authorization".to_vec(), value: b"yes".to_vec(), ..Default::default() };
    let mut request = Request::new(put);
    request.metadata_mut().insert("authorization", root.parse().expect("an ASCII token"));
    m.call_request::<_, PbPutResponse>(KV_PUT, request).await.expect("the token in `authorization`");
    assert_eq!(m.get(Some(&root), "via-authorization").await.expect("read"), Some("yes".into()));
    assert_healthy(&m).await;
}

// ---- 3. Tokens whose user changed ----

#[tokio::test(flavor = "multi_thread")]
async fn old_simple_tokens_lose_their_grants_as_in_etcd() {
    let cluster = TestCluster::start_with(Server::Keel, 1, &BCRYPT).await;
    // etcd 3.4: deleting a user or changing its password ends its simple tokens (invalid auth
    // token); a revoked role leaves the token, which now speaks for a user without it.
    old_tokens(&cluster, Expect { deleted: INVALID_TOKEN, password: INVALID_TOKEN, revoked: PERMISSION_DENIED }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn old_jwt_tokens_lose_their_grants_as_in_etcd() {
    let ours = JwtCluster::start(1, "5m").await;
    // etcd 3.4: a JWT cannot be recalled, but it carries the auth revision it was issued at,
    // and every change to users or roles raises it: the old token is refused as old.
    old_tokens(&ours.cluster, Expect { deleted: OLD_REVISION, password: OLD_REVISION, revoked: OLD_REVISION }).await;
}

struct Expect {
    deleted: Refusal,
    password: Refusal,
    revoked: Refusal,
}

async fn old_tokens(cluster: &TestCluster, expect: Expect) {
    let m = Raw::to(cluster, 0).await;
    enable_auth(&m, &[("dave", "davepw", "writer"), ("erin", "erinpw", "writer"), ("frank", "frankpw", "writer")])
        .await;

    // Deleted: its token writes and reads nothing more, and it cannot log in.
    let dave = m.login("dave", "davepw").await.expect("dave logs in");
    m.put(Some(&dave), "w/dave", "before").await.expect("dave writes");
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let delete = AuthUserDeleteRequest { name: "dave".into() };
    m.call::<_, AuthUserDeleteResponse>(USER_DELETE, delete, Some(root.as_bytes())).await.expect("delete dave");
    assert_refused(m.put(Some(&dave), "w/dave", "after").await, expect.deleted, "a deleted user's token writes");
    assert_refused(m.get(Some(&dave), "w/dave").await, expect.deleted, "a deleted user's token reads");
    assert_refused(m.login("dave", "davepw").await, AUTH_FAILED, "a deleted user logs in");
    assert_eq!(root_get(&m, "w/dave").await, Some("before".into()));

    // New password: the old token and the old password are done, the new ones work.
    let erin = m.login("erin", "erinpw").await.expect("erin logs in");
    m.put(Some(&erin), "w/erin", "before").await.expect("erin writes");
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let change = AuthUserChangePasswordRequest { name: "erin".into(), password: "new".into(), ..Default::default() };
    let changed = m.call::<_, AuthUserChangePasswordResponse>(USER_CHANGE_PASSWORD, change, Some(root.as_bytes()));
    changed.await.expect("change erin's password");
    assert_refused(m.put(Some(&erin), "w/erin", "after").await, expect.password, "the token before a new password");
    assert_refused(m.get(Some(&erin), "w/erin").await, expect.password, "the token before a new password reads");
    assert_refused(m.login("erin", "erinpw").await, AUTH_FAILED, "the old password");
    assert_eq!(root_get(&m, "w/erin").await, Some("before".into()));
    let erin = m.login("erin", "new").await.expect("erin logs in with the new password");
    m.put(Some(&erin), "w/erin", "new password").await.expect("erin writes again");

    // Role revoked: the token no longer grants what the role did.
    let frank = m.login("frank", "frankpw").await.expect("frank logs in");
    m.put(Some(&frank), "w/frank", "before").await.expect("frank writes");
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let revoke = AuthUserRevokeRoleRequest { name: "frank".into(), role: "writer".into() };
    m.call::<_, AuthUserRevokeRoleResponse>(USER_REVOKE_ROLE, revoke, Some(root.as_bytes())).await.expect("revoke");
    assert_refused(m.put(Some(&frank), "w/frank", "after").await, expect.revoked, "a token after its role went");
    assert_refused(m.get(Some(&frank), "w/frank").await, expect.revoked, "a token after its role went reads");
    let frank = m.login("frank", "frankpw").await.expect("frank still logs in");
    assert_refused(m.put(Some(&frank), "w/frank", "after").await, PERMISSION_DENIED, "a new token without the role");
    assert_eq!(root_get(&m, "w/frank").await, Some("before".into()));
    assert_eq!(root_get(&m, "w/erin").await, Some("new password".into()));
}

// ---- 4. Authenticate's refusals ----

#[tokio::test(flavor = "multi_thread")]
async fn authenticate_refuses_wrong_passwords_unknown_and_empty_users_as_etcd() {
    let cluster = TestCluster::start_with(Server::Keel, 1, &BCRYPT).await;
    let m = Raw::to(&cluster, 0).await;
    assert_refused(m.login("root", ROOT_PW).await, AUTH_NOT_ENABLED, "a login before auth is on");
    let nameless = AuthUserAddRequest { name: String::new(), password: "pw".into(), ..Default::default() };
    assert_refused(m.call::<_, AuthUserAddResponse>(USER_ADD, nameless, None).await, USER_EMPTY, "a user named ''");
    enable_auth(&m, &[("alice", ALICE_PW, "reader")]).await;

    let cases = [
        ("a wrong password", "alice", "wrong"),
        ("an empty password", "alice", ""),
        ("root's password for alice", "alice", ROOT_PW),
        ("the password with a suffix", "alice", "alicepwx"),
        ("an unknown user", "nobody", ALICE_PW),
        ("a user name in another case", "Alice", ALICE_PW),
        // etcd 3.4 looks the empty name up like any other (`CheckPassword`): no such user.
        ("an empty user name", "", ALICE_PW),
        ("an empty user name and password", "", ""),
    ];
    for (what, name, password) in cases {
        assert_refused(m.login(name, password).await, AUTH_FAILED, what);
    }
    // No token at all: no user (etcd's `isOpPermitted` with revision 0).
    assert_refused(m.put(None, "foo", "anonymous").await, USER_EMPTY, "a write without a token");
    assert_refused(m.get(None, "foo").await, USER_EMPTY, "a read without a token");
    let alice = m.login("alice", ALICE_PW).await.expect("the right password still works");
    assert_eq!(m.get(Some(&alice), "foo").await.expect("alice reads"), None);
    assert_eq!(root_get(&m, "foo").await, None, "a refused write wrote");
}

// ---- 5. A flood of failed logins ----

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_failed_logins_leave_the_member_serving_root() {
    const LOGINS: usize = 10_000;
    const TASKS: usize = 32;
    let cluster = TestCluster::start_with(Server::Keel, 1, &BCRYPT).await;
    let m = Raw::to(&cluster, 0).await;
    enable_auth(&m, &[("alice", ALICE_PW, "reader")]).await;
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let started = Instant::now();

    let flood: Vec<_> = (0..TASKS)
        .map(|task| {
            let m = m.clone();
            tokio::spawn(async move {
                for i in (task..LOGINS).step_by(TASKS) {
                    // Mostly wrong passwords of a real user (a bcrypt check each), some unknown users.
                    let name = if i % 10 == 0 { format!("nobody{i}") } else { "alice".to_string() };
                    let answer = m.login(&name, &format!("wrong{i}")).await;
                    assert_refused(answer, AUTH_FAILED, &format!("failed login {i}"));
                }
            })
        })
        .collect();

    // Meanwhile root writes and reads on the same member, each call answered in time.
    let mut during = 0;
    let mut slowest = Duration::ZERO;
    while flood.iter().any(|task| !task.is_finished()) {
        let call = Instant::now();
        let value = format!("during-{during}");
        m.put(Some(&root), "root-key", &value).await.expect("root writes during the flood");
        assert_eq!(m.get(Some(&root), "root-key").await.expect("root reads during the flood"), Some(value));
        slowest = slowest.max(call.elapsed());
        during += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in flood {
        task.await.expect("a login task");
    }
    let flood_took = started.elapsed();
    assert!(during > 0, "root was never served during the flood");
    assert!(slowest < CALL_TIMEOUT, "root's slowest put+get took {slowest:?}");

    // After: root logs in afresh, writes and reads; the process is alive and healthy.
    let fresh = m.login("root", ROOT_PW).await.expect("root logs in after the flood");
    m.put(Some(&fresh), "root-key", "after").await.expect("root writes after the flood");
    assert_eq!(root_get(&m, "root-key").await, Some("after".into()));
    let pid = cluster.members[0].pid().expect("a pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the member's process exists");
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next());
    assert!(matches!(state, Some(Some('R' | 'S' | 'D'))), "the member is not running: {stat}");
    assert_healthy(&m).await;
    println!("{LOGINS} failed logins in {flood_took:?}; root served {during} times, slowest {slowest:?}");
}

// ---- 6. One JWT, every member, and a leader crash ----

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_from_one_member_works_on_every_member_and_after_the_leader_dies() {
    let mut ours = JwtCluster::start(3, "5m").await;
    let members: Vec<Raw> = {
        let mut members = Vec::new();
        for i in 0..3 {
            members.push(Raw::to(&ours.cluster, i).await);
        }
        members
    };
    enable_auth(&members[0], &[]).await;
    let token = members[0].login("root", ROOT_PW).await.expect("root logs in on member 0");

    for (i, member) in members.iter().enumerate() {
        let key = format!("written-via-m{i}");
        retrying(|| member.put(Some(&token), &key, "yes")).await.expect("member 0's token writes here");
    }
    let mut acknowledged = Vec::new();
    for n in 0..30 {
        let (member, key, value) = (&members[n % 3], format!("acked/{n:02}"), format!("v{n}"));
        retrying(|| member.put(Some(&token), &key, &value)).await.expect("an acknowledged write");
        acknowledged.push((key, value));
    }
    for member in &members {
        for i in 0..3 {
            let key = format!("written-via-m{i}");
            assert_eq!(member.get(Some(&token), &key).await.expect("read"), Some("yes".into()), "{key}");
        }
    }

    let leader = ours.cluster.leader().await;
    ours.cluster.kill9(leader);
    let new_leader = ours.cluster.leader().await;
    assert_ne!(new_leader, leader);
    for (i, member) in members.iter().enumerate().filter(|(i, _)| *i != leader) {
        let key = format!("after-crash-m{i}");
        retrying(|| member.put(Some(&token), &key, "yes")).await.expect("the token writes after the crash");
        for (key, value) in &acknowledged {
            let read = retrying(|| member.get(Some(&token), key)).await.expect("the token reads after the crash");
            assert_eq!(read.as_deref(), Some(value.as_str()), "acknowledged {key} on member {i}");
        }
    }
}

// ---- 7. Root-only admin ops ----

#[tokio::test(flavor = "multi_thread")]
async fn hashes_defragment_snapshot_and_membership_changes_are_roots_while_auth_is_on() {
    let cluster = TestCluster::start_with(Server::Keel, 1, &BCRYPT).await;
    let m = Raw::to(&cluster, 0).await;
    enable_auth(&m, &[("alice", ALICE_PW, "reader")]).await;
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let alice = m.login("alice", ALICE_PW).await.expect("alice logs in");
    m.put(Some(&root), "foo", "original").await.expect("root writes");

    // As etcd 3.4 (`authMaintenanceServer`, `checkMembershipOperationPermission`): these are
    // root's; a user without the root role is denied, a request without a token has no user.
    for (token, expected) in [(Some(alice.as_str()), PERMISSION_DENIED), (None, USER_EMPTY)] {
        let who = if token.is_some() { "alice" } else { "no token" };
        let token = token.map(str::as_bytes);
        let hash = m.call::<_, PbHashResponse>(HASH, PbHashRequest {}, token).await;
        assert_refused(hash, expected, &format!("Hash by {who}"));
        let hash_kv = m.call::<_, PbHashKvResponse>(HASH_KV, PbHashKvRequest { revision: 0 }, token).await;
        assert_refused(hash_kv, expected, &format!("HashKV by {who}"));
        let defragment = m.call::<_, PbDefragmentResponse>(DEFRAGMENT, PbDefragmentRequest {}, token).await;
        assert_refused(defragment, expected, &format!("Defragment by {who}"));
        assert_refused(m.snapshot(token).await, expected, &format!("Snapshot by {who}"));
        let add = PbMemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:1".into()], is_learner: false };
        assert_refused(m.call::<_, PbMemberAddResponse>(MEMBER_ADD, add, token).await, expected, who);
        let remove = PbMemberRemoveRequest { id: 1 };
        assert_refused(m.call::<_, PbMemberRemoveResponse>(MEMBER_REMOVE, remove, token).await, expected, who);
        let update = PbMemberUpdateRequest { id: 1, peer_ur_ls: vec!["http://127.0.0.1:1".into()] };
        assert_refused(m.call::<_, PbMemberUpdateResponse>(MEMBER_UPDATE, update, token).await, expected, who);
        let promote = PbMemberPromoteRequest { id: 1 };
        assert_refused(m.call::<_, PbMemberPromoteResponse>(MEMBER_PROMOTE, promote, token).await, expected, who);
        // MemberList and Status are open in etcd 3.4.
        let list = m.call::<_, PbMemberListResponse>(MEMBER_LIST, PbMemberListRequest::default(), token).await;
        assert_eq!(list.expect("MemberList is open").members.len(), 1, "{who}");
        let status = m.call::<_, PbStatusResponse>(STATUS, PbStatusRequest {}, token).await;
        assert_ne!(status.expect("Status is open").leader, 0, "{who}");
    }

    // Root gets the normal answers: hashes, a defragment, a backup, and etcd's refusal to add a
    // voter that a lone started member could not outvote.
    let token = Some(root.as_bytes());
    let hash = m.call::<_, PbHashResponse>(HASH, PbHashRequest {}, token).await.expect("root hashes");
    let again = m.call::<_, PbHashResponse>(HASH, PbHashRequest {}, token).await.expect("root hashes");
    assert_eq!(hash.hash, again.hash, "the same state hashes the same");
    let hash_kv = m.call::<_, PbHashKvResponse>(HASH_KV, PbHashKvRequest { revision: 0 }, token).await;
    assert!(hash_kv.expect("root hashes the keyspace").hash_revision > 0);
    let defragment = m.call::<_, PbDefragmentResponse>(DEFRAGMENT, PbDefragmentRequest {}, token).await;
    defragment.expect("root defragments");
    m.snapshot(token).await.expect("root saves a backup");
    let add = PbMemberAddRequest { peer_ur_ls: vec!["http://127.0.0.1:1".into()], is_learner: false };
    let status = m.call::<_, PbMemberAddResponse>(MEMBER_ADD, add, token).await.expect_err("one started member");
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
    );
    assert_eq!(root_get(&m, "foo").await, Some("original".into()));
}

// ---- 8. Watches ----

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_of_a_key_the_user_may_not_read_is_created_and_canceled() {
    let cluster = TestCluster::start_with(Server::Keel, 1, &BCRYPT).await;
    let m = Raw::to(&cluster, 0).await;
    enable_auth(&m, &[("alice", ALICE_PW, "reader")]).await;
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let options = ConnectOptions::new().with_user("alice", ALICE_PW).with_timeout(CALL_TIMEOUT);
    let mut alice = Client::connect([m.url.clone()], Some(options)).await.expect("alice connects");

    // grpc-go's text of the status, as etcd puts it in `cancel_reason`.
    let denied = "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
    let mut stream = alice.watch("secret", None).await.expect("a watch stream");
    let created = next_message(&mut stream).await;
    assert!(created.created() && created.canceled(), "created and canceled: {created:?}");
    assert_eq!(created.cancel_reason(), denied);
    let secret_watch = created.watch_id();
    // A prefix alice may read only part of ("fo" covers more than "foo").
    stream.watch("fo", Some(WatchOptions::new().with_prefix())).await.expect("another watch");
    let prefix = next_message(&mut stream).await;
    assert!(prefix.created() && prefix.canceled(), "a partly readable prefix: {prefix:?}");
    assert_eq!(prefix.cancel_reason(), denied);

    // On the same stream, a key alice may read: created, open, and its events arrive; the
    // refused watches get nothing.
    stream.watch("foo", None).await.expect("a readable watch");
    let open = next_message(&mut stream).await;
    assert!(open.created() && !open.canceled(), "a readable key: {open:?}");
    let foo_watch = open.watch_id();
    m.put(Some(&root), "secret", "hidden").await.expect("root writes the secret");
    m.put(Some(&root), "foo2", "hidden too").await.expect("root writes under the prefix");
    m.put(Some(&root), "foo", "visible").await.expect("root writes foo");
    let events = next_message(&mut stream).await;
    assert_eq!(events.watch_id(), foo_watch, "an event for a refused watch ({secret_watch}) arrived: {events:?}");
    let kinds: Vec<_> =
        events.events().iter().map(|e| (e.event_type(), e.kv().map(|kv| kv.value().to_vec()))).collect();
    assert_eq!(kinds, [(EventType::Put, Some(b"visible".to_vec()))]);
}

// ---- 9. Keel's native services ----

#[tokio::test(flavor = "multi_thread")]
async fn native_services_answer_root_only_while_etcd_auth_is_on() {
    let cluster = TestCluster::start_with(Server::Keel, 1, &BCRYPT).await;
    let m = Raw::to(&cluster, 0).await;

    // Auth off: no token needed.
    m.store_write(None, "before", "open").await.expect("a write without a token while auth is off");
    assert_eq!(m.store_read(None, "before").await.expect("a read without a token"), ["open"]);

    enable_auth(&m, &[("alice", ALICE_PW, "reader")]).await;
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    let alice = m.login("alice", ALICE_PW).await.expect("alice logs in");
    let refusals = [
        ("no token", None, USER_EMPTY),
        ("alice's token", Some(alice.as_str()), PERMISSION_DENIED),
        ("a made-up token", Some("made-up.1"), INVALID_TOKEN),
    ];
    for (what, token, expected) in refusals {
        assert_refused(m.store_read(token, "before").await, expected, &format!("a native read with {what}"));
        assert_refused(m.store_write(token, "during", what).await, expected, &format!("a native write with {what}"));
    }
    assert_eq!(m.store_read(Some(&root), "before").await.expect("root reads"), ["open"]);
    m.store_write(Some(&root), "during", "root's").await.expect("root writes");
    assert_eq!(m.store_read(Some(&root), "during").await.expect("root reads"), ["root's"], "a refused write wrote");

    // Auth off again: open again.
    let disabled = m.call::<_, AuthDisableResponse>(AUTH_DISABLE, AuthDisableRequest {}, Some(root.as_bytes()));
    disabled.await.expect("root disables auth");
    assert_eq!(m.store_read(None, "during").await.expect("a read without a token once auth is off"), ["root's"]);
    m.store_write(None, "after", "open").await.expect("a write without a token once auth is off");
}
