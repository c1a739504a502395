//! The gRPC connections of one run. Connection `i` goes to endpoint `i mod endpoints`, and
//! client `c` uses connection `c mod connections`: clients share connections round-robin, and
//! connections spread over the members the way etcd clients in a fleet of services do.

use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{Client, ConnectOptions, TlsOptions};

/// A call that takes longer than this fails and counts as an error: long enough for a leader
/// election, short enough that a stuck cluster ends a run.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening one connection may take on loopback.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How clients reach a cluster: TLS for https:// endpoints, and a user to sign in as when auth
/// is on (etcd-client authenticates once per connection and sends the token on every call).
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub tls: Option<TlsOptions>,
    pub user: Option<(String, String)>,
}

pub struct Pool {
    connections: Vec<Client>,
}

impl Pool {
    /// Opens `count` connections over `endpoints`, as `access` says.
    pub async fn connect(endpoints: &[String], access: &Access, count: usize) -> anyhow::Result<Pool> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints to connect to");
        anyhow::ensure!(count > 0, "a pool needs at least one connection");
        let mut connections = Vec::with_capacity(count);
        for i in 0..count {
            connections.push(connect_one(&endpoints[i % endpoints.len()], access).await?);
        }
        Ok(Pool { connections })
    }

    /// The connection client `index` uses (a cheap handle on the shared channel).
    pub fn client(&self, index: usize) -> Client {
        self.connections[index % self.connections.len()].clone()
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }
}

/// One connection to one endpoint, with keel-bench's timeouts.
pub async fn connect_one(endpoint: &str, access: &Access) -> anyhow::Result<Client> {
    let mut options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(CALL_TIMEOUT);
    if let Some(tls) = &access.tls {
        options = options.with_tls(tls.clone());
    }
    if let Some((user, password)) = &access.user {
        options = options.with_user(user, password);
    }
    Client::connect([endpoint], Some(options)).await.with_context(|| format!("connecting to {endpoint}"))
}

/// The root user `--auth` creates on each system before turning auth on.
pub const BENCH_ROOT: (&str, &str) = ("root", "keel-bench-root");

/// etcd's path to a locked-down cluster: a root user with the root role, then auth on. Returns
/// the access clients then need (`base`'s TLS, signed in as root).
pub async fn enable_auth(endpoint: &str, base: &Access) -> anyhow::Result<Access> {
    let mut client = connect_one(endpoint, base).await?;
    let (user, password) = BENCH_ROOT;
    client.user_add(user, password, None).await.context("adding the root user")?;
    client.user_grant_role(user, "root").await.context("granting root the root role")?;
    client.auth_enable().await.context("enabling auth")?;
    Ok(Access { tls: base.tls.clone(), user: Some((user.to_string(), password.to_string())) })
}

/// etcdctl's --cacert, --cert and --key as etcd_client's TLS options; `None` without a CA.
pub fn tls_options(
    cacert: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> anyhow::Result<Option<TlsOptions>> {
    let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let Some(ca) = cacert else {
        anyhow::ensure!(cert.is_none() && key.is_none(), "--cert and --key need --cacert");
        return Ok(None);
    };
    let options = TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?)))),
        (None, None) => Ok(Some(options)),
        _ => anyhow::bail!("--cert and --key go together"),
    }
}
