//! Locking a test cluster down as an operator would (etcd's root user, then auth on), and
//! speaking to it with a token: shared by the auth, micro-auth and greeter tests.

use etcd_client::{Client, ConnectOptions};
use tonic::metadata::MetadataValue;

use crate::TestCluster;

/// etcd's path to a locked-down cluster: `root` (password `password`) with the root role, then
/// auth on. Returns root's token, signed in on member 0.
pub async fn lock_down(cluster: &TestCluster, password: &str) -> String {
    let mut etcd = cluster.client().await;
    etcd.user_add("root", password, None).await.expect("add root");
    etcd.user_grant_role("root", "root").await.expect("grant root the root role");
    etcd.auth_enable().await.expect("auth enable");
    etcd_token(&cluster.members[0].client_url, "root", password).await
}

/// A token of etcd's Authenticate for `user` on the member at `url`.
pub async fn etcd_token(url: &str, user: &str, password: &str) -> String {
    let options = ConnectOptions::new().with_user(user, password);
    let client = Client::connect([url], Some(options)).await.expect("connect");
    let response = client.auth_client().authenticate(user.to_string(), password.to_string()).await;
    response.expect("authenticate").token().to_string()
}

/// `message` as a gRPC request with the header `name: value` (etcd's `token`, or
/// `authorization: Bearer …` for micro's).
pub fn with_header<T>(message: T, name: &'static str, value: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(name, MetadataValue::try_from(value).expect("a header value"));
    request
}
