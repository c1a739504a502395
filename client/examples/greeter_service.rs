//! A tiny greeting service that registers itself in a Keel cluster and stays registered until
//! Ctrl-C. Run a cluster, then:
//!
//! ```text
//! cargo run -p keel-client --example greeter_service
//! cargo run -p keel-client --example greeter_caller -- Ada
//! ```
//!
//! `KEEL_ENDPOINTS` (comma-separated, default http://127.0.0.1:2379) names the cluster. The
//! service listens on a free loopback port and speaks one line each way: a name in, a greeting
//! out.

use std::time::Duration;

use keel_client::registry::{GrpcRegistry, Node, RegisterOptions, Registry, Service};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Short enough that callers stop seeing a crashed greeter soon; keep-alives go every third.
const TTL: Duration = Duration::from_secs(10);
/// A name longer than this is cut: the line is read into memory.
const NAME_BYTES_MAX: u64 = 256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let endpoints = endpoints_from_env();
    let registry = GrpcRegistry::connect(&endpoints).await?;

    // Loopback only: this example never listens on a public interface.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let node = Node::new(format!("greeter-{}", address.port()), address.to_string());
    let service = Service::with_node("greeter", "1.0.0", node);
    let registration = registry.keep_registered(&service, RegisterOptions::with_ttl(TTL)).await?;
    println!("greeter listening on {address}, registered in {}", endpoints.join(","));

    tokio::select! {
        result = serve(listener) => result?,
        result = tokio::signal::ctrl_c() => result?,
    }
    registration.shutdown().await?;
    println!("greeter deregistered");
    Ok(())
}

fn endpoints_from_env() -> Vec<String> {
    let endpoints = std::env::var("KEEL_ENDPOINTS").unwrap_or_else(|_| "http://127.0.0.1:2379".into());
    endpoints.split(',').map(str::trim).filter(|endpoint| !endpoint.is_empty()).map(String::from).collect()
}

async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (connection, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(error) = greet(connection).await {
                eprintln!("greeting {peer} failed: {error}");
            }
        });
    }
}

async fn greet(connection: TcpStream) -> std::io::Result<()> {
    let (reader, mut writer) = connection.into_split();
    let mut name = String::new();
    BufReader::new(reader).take(NAME_BYTES_MAX).read_line(&mut name).await?;
    let name = name.trim();
    let name = if name.is_empty() { "stranger" } else { name };
    writer.write_all(format!("Hello, {name}!\n").as_bytes()).await?;
    writer.shutdown().await
}
