//! Finds the greeter (see `greeter_service.rs`) through the registry and calls it:
//!
//! ```text
//! cargo run -p keel-client --example greeter_caller -- Ada
//! ```
//!
//! `KEEL_ENDPOINTS` (comma-separated, default http://127.0.0.1:2379) names the cluster. With
//! auth on, `KEEL_AUTH_ID` and `KEEL_AUTH_SECRET` name the caller's account: it signs in to
//! find the greeter and sends its access token with the call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_client::auth::layers::TokenSource;
use keel_client::auth::{Auth, GrpcAuth};
use keel_client::registry::{GrpcRegistry, Selector, Strategy};
use keel_client::ConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long to wait for a greeter to show up and answer.
const WAIT: Duration = Duration::from_secs(10);
/// A greeting longer than this is cut.
const REPLY_BYTES_MAX: u64 = 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "world".into());
    let endpoints = keel_client::endpoints_from_env();
    let source = match (std::env::var("KEEL_AUTH_ID"), std::env::var("KEEL_AUTH_SECRET")) {
        (Ok(id), Ok(secret)) => {
            let auth: Arc<dyn Auth> = Arc::new(GrpcAuth::connect(&endpoints).await?);
            Some(TokenSource::new(auth, id, secret, Duration::from_secs(60)))
        }
        _ => None,
    };
    let options = match &source {
        Some(source) => ConnectOptions::new().with_token(source.clone()),
        None => ConnectOptions::new(),
    };
    let registry = Arc::new(GrpcRegistry::connect_with(&endpoints, &options).await?);
    let selector = Selector::new(registry, Strategy::RoundRobin);

    let node = tokio::time::timeout(WAIT, async {
        loop {
            match selector.select("greeter").await {
                Err(keel_client::Error::NotFound) => tokio::time::sleep(Duration::from_millis(200)).await,
                other => return other,
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no greeter registered within {WAIT:?}; start greeter_service first"))??;

    let address: SocketAddr = node.address.parse()?;
    // Loopback only: this example never connects anywhere else.
    anyhow::ensure!(address.ip().is_loopback(), "greeter {} is not on loopback; refusing to call it", node.id);
    let token = match &source {
        Some(source) => Some(source.header().await?.to_str()?.to_string()),
        None => None,
    };
    let reply = tokio::time::timeout(WAIT, call(address, token.as_deref(), &name)).await??;
    println!("{} ({}) says: {}", node.id, node.address, reply.trim_end());
    Ok(())
}

/// `bearer` is the `Bearer <token>` line, sent first when the caller has an account.
async fn call(address: SocketAddr, bearer: Option<&str>, name: &str) -> std::io::Result<String> {
    let mut connection = TcpStream::connect(address).await?;
    if let Some(bearer) = bearer {
        connection.write_all(format!("{bearer}\n").as_bytes()).await?;
    }
    connection.write_all(format!("{name}\n").as_bytes()).await?;
    let mut reply = String::new();
    connection.take(REPLY_BYTES_MAX).read_to_string(&mut reply).await?;
    Ok(reply)
}
