//! micro's greeter as a plain HTTP service (micro's `handler=http`): it serves
//! `POST /greeter-web/say/hello` with a JSON body `{"name": …}` and answers `{"msg": …}`, and
//! registers in a Keel cluster with an endpoint whose metadata (`path`, `handler=http`) tells
//! `keel gateway` to pass requests under `/greeter-web/` on as they came. Run a cluster and a
//! gateway, then:
//!
//! ```text
//! cargo run -p keel-client --example greeter_http
//! curl -d '{"name":"Ada"}' http://127.0.0.1:8080/greeter-web/say/hello
//! ```
//!
//! `KEEL_ENDPOINTS` (comma-separated, default http://127.0.0.1:2379) names the cluster;
//! `GREETER_LISTEN` the address to serve on (default 127.0.0.1:0, any free loopback port). It
//! deregisters on Ctrl-C or SIGTERM.

use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use keel_client::registry::{Endpoint, GrpcRegistry, Node, RegisterOptions, Registry, Service};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// Short enough that a crashed greeter leaves the registry soon; keep-alives go every third.
const TTL: Duration = Duration::from_secs(10);
/// The service's name, and the first segment of every path it serves.
const SERVICE: &str = "greeter-web";
/// A name longer than this is cut.
const NAME_CHARS_MAX: usize = 256;

#[derive(Deserialize)]
struct HelloRequest {
    #[serde(default)]
    name: String,
}

#[derive(Serialize)]
struct HelloResponse {
    msg: String,
}

async fn hello(State(node_id): State<String>, Json(request): Json<HelloRequest>) -> Json<HelloResponse> {
    let name: String = request.name.chars().take(NAME_CHARS_MAX).collect();
    let name = if name.is_empty() { "stranger".to_string() } else { name };
    Json(HelloResponse { msg: format!("Hello {name} from {node_id}") })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let endpoints = keel_client::endpoints_from_env();
    let registry = GrpcRegistry::connect(&endpoints).await?;
    // Loopback unless told otherwise: this example never listens on a public interface.
    let listen = std::env::var("GREETER_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&listen).await?;
    let address = listener.local_addr()?;
    let node_id = format!("{SERVICE}-{}", address.port());
    let app = Router::new().route(&format!("/{SERVICE}/say/hello"), post(hello)).with_state(node_id.clone());

    // The gateway routes by this metadata: paths under /greeter-web/ go here unchanged.
    let mut endpoint = Endpoint { name: "Say.Hello".into(), ..Default::default() };
    endpoint.metadata.insert("path".into(), format!("^/{SERVICE}/"));
    endpoint.metadata.insert("handler".into(), "http".into());
    let service = Service {
        endpoints: vec![endpoint],
        ..Service::with_node(SERVICE, "1.0.0", Node::new(node_id.clone(), address.to_string()))
    };
    let registration = registry.keep_registered(&service, RegisterOptions::with_ttl(TTL)).await?;
    println!("greeter {node_id} serving HTTP on {address}, registered as {SERVICE}");

    // Deregister first, then stop serving: a gateway stops choosing this node before it goes.
    let stop = async move {
        match registration.shutdown_on_signal().await {
            Ok(()) => println!("greeter deregistered"),
            Err(error) => eprintln!("greeter: deregistering failed: {error}"),
        }
    };
    // No Nagle delay on answers, as tonic serves the gRPC greeter.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(stop).await?;
    Ok(())
}
