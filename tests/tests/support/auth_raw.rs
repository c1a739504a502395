//! The auth tests' tools: one member spoken to in raw gRPC (each request carries exactly the
//! token bytes a test chooses), the users and roles it sets up, JWTs made and taken apart by hand.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_node::auth::jwt::JwtTokens;
use keel_node::auth::options::AuthTokenOptions;
use keel_proto::etcd::{
    PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbSnapshotRequest, PbSnapshotResponse,
};
use keel_proto::etcd_auth::authpb::{permission, Permission};
use keel_proto::etcd_auth::etcdserverpb::{
    AuthEnableRequest, AuthEnableResponse, AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthenticateRequest, AuthenticateResponse,
};
use keel_proto::v1::{ReadRequest, ReadResponse, Record, WriteRequest, WriteResponse};
use keel_tests::{grpc_channel, http_get, Server, TestCluster, CALL_TIMEOUT, READY_TIMEOUT};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::http::{HeaderMap, HeaderValue};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::{Refusal, BCRYPT, ROOT_PW};

pub const KV_PUT: &str = "/etcdserverpb.KV/Put";
pub const KV_RANGE: &str = "/etcdserverpb.KV/Range";
pub const AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
pub const AUTH_ENABLE: &str = "/etcdserverpb.Auth/AuthEnable";
pub const AUTH_DISABLE: &str = "/etcdserverpb.Auth/AuthDisable";
pub const USER_ADD: &str = "/etcdserverpb.Auth/UserAdd";
pub const USER_LIST: &str = "/etcdserverpb.Auth/UserList";
pub const USER_DELETE: &str = "/etcdserverpb.Auth/UserDelete";
pub const USER_CHANGE_PASSWORD: &str = "/etcdserverpb.Auth/UserChangePassword";
pub const USER_GRANT_ROLE: &str = "/etcdserverpb.Auth/UserGrantRole";
pub const USER_REVOKE_ROLE: &str = "/etcdserverpb.Auth/UserRevokeRole";
pub const ROLE_ADD: &str = "/etcdserverpb.Auth/RoleAdd";
pub const ROLE_GRANT_PERMISSION: &str = "/etcdserverpb.Auth/RoleGrantPermission";
pub const HASH: &str = "/etcdserverpb.Maintenance/Hash";
pub const HASH_KV: &str = "/etcdserverpb.Maintenance/HashKV";
pub const DEFRAGMENT: &str = "/etcdserverpb.Maintenance/Defragment";
pub const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";
pub const STATUS: &str = "/etcdserverpb.Maintenance/Status";
pub const MEMBER_ADD: &str = "/etcdserverpb.Cluster/MemberAdd";
pub const MEMBER_REMOVE: &str = "/etcdserverpb.Cluster/MemberRemove";
pub const MEMBER_UPDATE: &str = "/etcdserverpb.Cluster/MemberUpdate";
pub const MEMBER_PROMOTE: &str = "/etcdserverpb.Cluster/MemberPromote";
pub const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";
pub const STORE_READ: &str = "/keel.v1.Store/Read";
pub const STORE_WRITE: &str = "/keel.v1.Store/Write";

/// One member, spoken to in raw gRPC so that each request carries exactly the token bytes a
/// test chooses (or none) in etcd's `token` metadata.
#[derive(Clone)]
pub struct Raw {
    pub url: String,
    pub channel: Channel,
}

impl Raw {
    pub async fn to(cluster: &TestCluster, i: usize) -> Raw {
        let url = cluster.members[i].client_url.clone();
        Raw { channel: grpc_channel(&url).await, url }
    }

    /// Calls the unary method `path` with `token` as the `token` header's raw bytes.
    pub async fn call<Req, Resp>(&self, path: &'static str, message: Req, token: Option<&[u8]>) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.call_request(path, with_token(message, token)).await
    }

    pub async fn call_request<Req, Resp>(&self, path: &'static str, request: Request<Req>) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let call = grpc.unary(request, PathAndQuery::from_static(path), codec);
        let answer = tokio::time::timeout(CALL_TIMEOUT, call).await.expect("a gRPC call answers in time");
        answer.map(tonic::Response::into_inner)
    }

    /// Maintenance.Snapshot, a server stream: its first answer (a refusal comes before any chunk).
    pub async fn snapshot(&self, token: Option<&[u8]>) -> Result<(), Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<PbSnapshotRequest, PbSnapshotResponse>::default();
        let call =
            grpc.server_streaming(with_token(PbSnapshotRequest {}, token), PathAndQuery::from_static(SNAPSHOT), codec);
        let mut stream =
            tokio::time::timeout(CALL_TIMEOUT, call).await.expect("Snapshot answers in time")?.into_inner();
        let first = tokio::time::timeout(CALL_TIMEOUT, stream.message()).await.expect("a first snapshot answer");
        first.map(drop)
    }

    pub async fn put_raw(&self, token: Option<&[u8]>, key: &str, value: &str) -> Result<PbPutResponse, Status> {
        let put = PbPutRequest { key: key.into(), value: value.into(), ..Default::default() };
        self.call(KV_PUT, put, token).await
    }

    pub async fn put(&self, token: Option<&str>, key: &str, value: &str) -> Result<PbPutResponse, Status> {
        self.put_raw(token.map(str::as_bytes), key, value).await
    }

    /// A linearizable read of `key`'s value.
    pub async fn get_raw(&self, token: Option<&[u8]>, key: &str) -> Result<Option<String>, Status> {
        let range = PbRangeRequest { key: key.into(), ..Default::default() };
        let response: PbRangeResponse = self.call(KV_RANGE, range, token).await?;
        Ok(response.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    pub async fn get(&self, token: Option<&str>, key: &str) -> Result<Option<String>, Status> {
        self.get_raw(token.map(str::as_bytes), key).await
    }

    pub async fn login(&self, name: &str, password: &str) -> Result<String, Status> {
        let request = AuthenticateRequest { name: name.into(), password: password.into() };
        let response: AuthenticateResponse = self.call(AUTHENTICATE, request, None).await?;
        Ok(response.token)
    }

    pub async fn store_write(&self, token: Option<&str>, key: &str, value: &str) -> Result<WriteResponse, Status> {
        let record = Record { key: key.into(), value: value.into(), ..Default::default() };
        let write = WriteRequest { record: Some(record), ..Default::default() };
        self.call(STORE_WRITE, write, token.map(str::as_bytes)).await
    }

    /// The values of the records at `key` in the default database and table.
    pub async fn store_read(&self, token: Option<&str>, key: &str) -> Result<Vec<String>, Status> {
        let read = ReadRequest { key: key.into(), ..Default::default() };
        let response: ReadResponse = self.call(STORE_READ, read, token.map(str::as_bytes)).await?;
        Ok(response.records.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect())
    }
}

/// `message` with `token` (any bytes a header may carry, even empty or not text) as its
/// `token` metadata.
pub fn with_token<T>(message: T, token: Option<&[u8]>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let mut headers = HeaderMap::new();
        headers.insert("token", HeaderValue::from_bytes(token).expect("bytes a header value may hold"));
        *request.metadata_mut() = MetadataMap::from_headers(headers);
    }
    request
}

/// Retries `call` while the cluster answers Unavailable (an election after a crash); any
/// other answer is returned.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answer => return answer,
        }
    }
}

#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(answer: Result<T, Status>, expected: Refusal, what: &str) {
    match answer {
        Ok(value) => panic!("{what}: expected {expected:?}, but it was served: {value:?}"),
        Err(status) => assert_eq!((status.code(), status.message()), expected, "{what}: {status:?}"),
    }
}

/// Adds `name` with `roles`, while auth is still off (no token needed).
pub async fn add_user(m: &Raw, name: &str, password: &str, roles: &[&str]) {
    let add = AuthUserAddRequest { name: name.into(), password: password.into(), ..Default::default() };
    m.call::<_, AuthUserAddResponse>(USER_ADD, add, None).await.unwrap_or_else(|e| panic!("add {name}: {e:?}"));
    for role in roles {
        let grant = AuthUserGrantRoleRequest { user: name.into(), role: role.to_string() };
        let granted = m.call::<_, AuthUserGrantRoleResponse>(USER_GRANT_ROLE, grant, None).await;
        granted.unwrap_or_else(|e| panic!("grant {role} to {name}: {e:?}"));
    }
}

/// The roles `reader` (READ on `foo`) and `writer` (READWRITE on the prefix `w/`), `users`
/// (name, password, role), root, then auth on.
pub async fn enable_auth(m: &Raw, users: &[(&str, &str, &str)]) {
    let roles = [("reader", permission::Type::Read, "foo", ""), ("writer", permission::Type::Readwrite, "w/", "w0")];
    for (role, kind, key, range_end) in roles {
        let add = m.call::<_, AuthRoleAddResponse>(ROLE_ADD, AuthRoleAddRequest { name: role.into() }, None);
        add.await.unwrap_or_else(|e| panic!("add {role}: {e:?}"));
        let perm = Permission { perm_type: kind.into(), key: key.into(), range_end: range_end.into() };
        let grant = AuthRoleGrantPermissionRequest { name: role.into(), perm: Some(perm) };
        let granted = m.call::<_, AuthRoleGrantPermissionResponse>(ROLE_GRANT_PERMISSION, grant, None).await;
        granted.unwrap_or_else(|e| panic!("grant to {role}: {e:?}"));
    }
    for (name, password, role) in users {
        add_user(m, name, password, &[role]).await;
    }
    add_user(m, "root", ROOT_PW, &["root"]).await;
    m.call::<_, AuthEnableResponse>(AUTH_ENABLE, AuthEnableRequest {}, None).await.expect("auth enable");
}

/// `key`'s value as root sees it, with a fresh token (a JWT issued before the last auth change
/// is old even for root).
pub async fn root_get(m: &Raw, key: &str) -> Option<String> {
    let root = m.login("root", ROOT_PW).await.expect("root logs in");
    m.get(Some(&root), key).await.expect("root reads")
}

/// `/health` answers 200 (a leader and a read barrier within its 1 s), soon: under load one
/// barrier may take longer than that.
pub async fn assert_healthy(m: &Raw) {
    let healthy = keel_tests::wait_for(READY_TIMEOUT, "/health to answer 200", || async {
        http_get(&m.url, "/health").is_ok_and(|(code, _)| code == 200)
    });
    healthy.await.expect("the member is healthy");
}

pub async fn next_message(stream: &mut etcd_client::WatchStream) -> etcd_client::WatchResponse {
    let message = tokio::time::timeout(CALL_TIMEOUT, stream.message()).await.expect("a watch answer in time");
    message.expect("a watch answer").expect("the watch stream is open")
}

/// A Keel cluster with JWT tokens (HS256) signed with a secret made for it.
pub struct JwtCluster {
    pub cluster: TestCluster,
    pub secret: PathBuf,
    pub dir: tempfile::TempDir,
}

impl JwtCluster {
    pub async fn start(size: usize, ttl: &str) -> JwtCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = write_secret(&dir, "jwt-secret");
        let flag = format!("jwt,priv-key={},sign-method=HS256,ttl={ttl}", secret.display());
        let args = ["--auth-token", flag.as_str(), BCRYPT[0], BCRYPT[1]];
        let cluster = TestCluster::start_with(Server::Keel, size, &args).await;
        JwtCluster { cluster, secret, dir }
    }
}

/// A random secret (none is committed) in `dir`/`name`.
pub fn write_secret(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    use std::hash::{BuildHasher, RandomState};
    let secret: String = (0..4).map(|i| format!("{:016x}", RandomState::new().hash_one(i))).collect();
    let path = dir.path().join(name);
    std::fs::write(&path, secret).expect("write a secret");
    path
}

/// A JWT signer with the secret in `secret`: what a forger holding that secret could make.
pub fn signer(secret: &Path, method: &str, ttl: &str) -> JwtTokens {
    let flag = format!("jwt,priv-key={},sign-method={method},ttl={ttl}", secret.display());
    let options = match flag.parse::<AuthTokenOptions>() {
        Ok(AuthTokenOptions::Jwt(options)) => options,
        other => panic!("{flag}: {other:?}"),
    };
    JwtTokens::load(&options).expect("a JWT signer")
}

/// A JWT's claims, as JSON.
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT payload");
    serde_json::from_slice(&unb64url(payload)).expect("JSON claims")
}

pub fn flip_first_letter(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[0] = if chars[0] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

pub const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding, as JWTs write their parts.
pub fn b64url(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

pub fn unb64url(text: &str) -> Vec<u8> {
    let (mut bits, mut count, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let value = B64URL.iter().position(|&b| b == c).expect("base64url") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[test]
pub fn base64url_round_trips() {
    for text in ["", "a", "ab", "abc", "abcd", r#"{"alg":"none","typ":"JWT"}"#] {
        assert_eq!(unb64url(&b64url(text.as_bytes())), text.as_bytes(), "{text}");
    }
    assert_eq!(b64url(br#"{"alg":"none"}"#), "eyJhbGciOiJub25lIn0");
}
