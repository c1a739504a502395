//! A tiny greeting service that registers itself in a Keel cluster and stays registered until
//! Ctrl-C or SIGTERM. Run a cluster, then:
//!
//! ```text
//! cargo run -p keel-client --example greeter_service
//! cargo run -p keel-client --example greeter_caller -- Ada
//! ```
//!
//! `KEEL_ENDPOINTS` (comma-separated, default http://127.0.0.1:2379) names the cluster. The
//! service listens on a free loopback port and speaks one line each way: a name in, a greeting
//! out (a caller with an account first sends `Bearer <access token>` on a line of its own).
//!
//! With auth on, set `KEEL_AUTH_ID` and `KEEL_AUTH_SECRET` to the greeter's account: it signs
//! in to register, and answers only callers the rules let reach
//! `service:greeter:Greeter.Hello` (micro's auth wrapper; a tonic service uses
//! `keel_client::auth::layers::VerifyLayer` for the same).

use std::time::Duration;

use std::sync::Arc;

use keel_client::auth::layers::TokenSource;
use keel_client::auth::{Auth, GrpcAuth, Resource};
use keel_client::registry::{GrpcRegistry, Node, RegisterOptions, Registry, Service};
use keel_client::ConnectOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Short enough that callers stop seeing a crashed greeter soon; keep-alives go every third.
const TTL: Duration = Duration::from_secs(10);
/// A name longer than this is cut: the line is read into memory.
const NAME_BYTES_MAX: u64 = 256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let endpoints = keel_client::endpoints_from_env();
    let auth: Arc<dyn Auth> = Arc::new(GrpcAuth::connect(&endpoints).await?);
    let (options, protected) = match (std::env::var("KEEL_AUTH_ID"), std::env::var("KEEL_AUTH_SECRET")) {
        (Ok(id), Ok(secret)) => {
            let source = TokenSource::new(auth.clone(), id, secret, Duration::from_secs(60));
            (ConnectOptions::new().with_token(source), true)
        }
        _ => (ConnectOptions::new(), false),
    };
    let registry = GrpcRegistry::connect_with(&endpoints, &options).await?;

    // Loopback only: this example never listens on a public interface.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let node = Node::new(format!("greeter-{}", address.port()), address.to_string());
    let service = Service::with_node("greeter", "1.0.0", node);
    let registration = registry.keep_registered(&service, RegisterOptions::with_ttl(TTL)).await?;
    println!("greeter listening on {address}, registered in {}", endpoints.join(","));

    // Deregistered on a stop signal; if serving fails instead, dropping the registration
    // deregisters in the background.
    tokio::select! {
        result = serve(listener, protected.then_some(auth)) => result?,
        result = registration.shutdown_on_signal() => {
            result?;
            println!("greeter deregistered");
        }
    }
    Ok(())
}

async fn serve(listener: TcpListener, auth: Option<Arc<dyn Auth>>) -> anyhow::Result<()> {
    loop {
        let (connection, peer) = listener.accept().await?;
        let auth = auth.clone();
        tokio::spawn(async move {
            if let Err(error) = greet(connection, auth).await {
                eprintln!("greeting {peer} failed: {error}");
            }
        });
    }
}

async fn greet(connection: TcpStream, auth: Option<Arc<dyn Auth>>) -> std::io::Result<()> {
    let (reader, mut writer) = connection.into_split();
    let mut lines = BufReader::new(reader.take(NAME_BYTES_MAX * 32));
    let mut line = String::new();
    lines.read_line(&mut line).await?;
    let token = line.trim().strip_prefix("Bearer ").map(str::to_string);
    if token.is_some() {
        line.clear();
        lines.read_line(&mut line).await?;
    }
    let reply = match allowed(auth.as_deref(), token).await {
        Ok(()) => {
            let name: String = line.trim().chars().take(NAME_BYTES_MAX as usize).collect();
            let name = if name.is_empty() { "stranger".to_string() } else { name };
            format!("Hello, {name}!\n")
        }
        Err(refusal) => format!("Error: {refusal}\n"),
    };
    writer.write_all(reply.as_bytes()).await?;
    writer.shutdown().await
}

/// micro's auth wrapper: the caller's account (from its token) must be let in by the rules.
async fn allowed(auth: Option<&dyn Auth>, token: Option<String>) -> Result<(), keel_client::Error> {
    let Some(auth) = auth else { return Ok(()) };
    let account = match token {
        Some(token) => Some(auth.inspect(&token).await?),
        None => None,
    };
    let hello = Resource { r#type: "service".into(), name: "greeter".into(), endpoint: "Greeter.Hello".into() };
    auth.verify(account.as_ref(), &hello).await
}
