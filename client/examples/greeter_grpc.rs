//! micro's greeter as a gRPC service: `greeter`, endpoints `Say.Hello` and `Say.Stream`,
//! registered in a Keel cluster through keel-client and serving gRPC server reflection, so that
//! `keel gateway` can reach it from HTTP/JSON. Run a cluster and a gateway, then:
//!
//! ```text
//! cargo run -p keel-client --example greeter_grpc
//! curl -d '{"name":"Ada"}' http://127.0.0.1:8080/greeter/say/hello
//! ```
//!
//! `KEEL_ENDPOINTS` (comma-separated, default http://127.0.0.1:2379) names the cluster.
//! `GREETER_LISTEN` sets the address to serve on (default 127.0.0.1:0, any free loopback port);
//! `GREETER_REFLECTION=off` serves without reflection; `GREETER_NAME` registers it under
//! another service name; `GREETER_RATE_PER_SECOND=N` limits its handlers to N calls a second
//! (keel-client's limiter layer, micro's `ratelimiter` wrapper), refusing the rest with
//! RESOURCE_EXHAUSTED. It deregisters on Ctrl-C or SIGTERM.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use keel_client::limiter::{Rate, RateLimitLayer, WhenOver};
use keel_client::registry::{Endpoint, GrpcRegistry, Node, RegisterOptions, Registry, Service};
use keel_proto::greeter::say_server::{Say, SayServer};
use keel_proto::greeter::{Request as HelloRequest, Response as HelloResponse};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

/// Short enough that a crashed greeter leaves the registry soon; keep-alives go every third.
const TTL: Duration = Duration::from_secs(10);
/// A name longer than this is cut.
const NAME_CHARS_MAX: usize = 256;

struct Greeter {
    /// Which node answered: the gateway tests tell nodes apart by it.
    node_id: String,
}

#[tonic::async_trait]
impl Say for Greeter {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        // The account `keel gateway --auth` checked, if any.
        let account = request.metadata().get("micro-account-id").and_then(|v| v.to_str().ok()).map(String::from);
        let name = request.into_inner().name;
        if name == "error" {
            return Err(Status::invalid_argument("the name \"error\" is not greeted"));
        }
        let mut answer = greeting(&name, &self.node_id);
        if let Some(account) = account {
            answer.msg.push_str(&format!(" (to account {account})"));
        }
        Ok(Response::new(answer))
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<HelloResponse, Status>> + Send>>;

    async fn stream(&self, request: Request<Streaming<HelloRequest>>) -> Result<Response<Self::StreamStream>, Status> {
        let node_id = self.node_id.clone();
        let answers = request.into_inner().map(move |request| Ok(greeting(&request?.name, &node_id)));
        Ok(Response::new(Box::pin(answers)))
    }
}

fn greeting(name: &str, node_id: &str) -> HelloResponse {
    let name: String = name.chars().take(NAME_CHARS_MAX).collect();
    let name = if name.is_empty() { "stranger".to_string() } else { name };
    HelloResponse { msg: format!("Hello {name} from {node_id}") }
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
    let node_id = format!("greeter-{}", address.port());
    let name = std::env::var("GREETER_NAME").unwrap_or_else(|_| "greeter".into());

    let limit = match std::env::var("GREETER_RATE_PER_SECOND") {
        Ok(rate) => {
            let rate = Rate { per_second: rate.parse()?, burst: None };
            Some(RateLimitLayer::new(rate, WhenOver::Refuse).map_err(anyhow::Error::msg)?)
        }
        Err(_) => None,
    };
    let mut router = tonic::transport::Server::builder()
        .layer(tower::util::option_layer(limit))
        .add_service(SayServer::new(Greeter { node_id: node_id.clone() }));
    if std::env::var("GREETER_REFLECTION").as_deref() != Ok("off") {
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(keel_proto::greeter::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        router = router.add_service(reflection);
    }

    let endpoints_registered =
        ["Say.Hello", "Say.Stream"].map(|name| Endpoint { name: name.into(), ..Default::default() });
    let service = Service {
        endpoints: endpoints_registered.to_vec(),
        ..Service::with_node(name.clone(), "1.0.0", Node::new(node_id.clone(), address.to_string()))
    };
    let registration = registry.keep_registered(&service, RegisterOptions::with_ttl(TTL)).await?;
    println!("greeter {node_id} serving gRPC on {address}, registered as {name}");

    // Deregister first, then stop serving: a gateway stops choosing this node before it goes.
    let stop = async move {
        match registration.shutdown_on_signal().await {
            Ok(()) => println!("greeter deregistered"),
            Err(error) => eprintln!("greeter: deregistering failed: {error}"),
        }
    };
    // No Nagle delay on answers: tonic cannot set TCP_NODELAY on connections it is handed, and a
    // proxy's one connection carries many calls' frames, whose later small writes Nagle would
    // hold until the proxy's delayed acknowledgement (40 ms).
    let incoming = TcpListenerStream::new(listener).map(|connection| {
        if let Ok(connection) = &connection {
            let _ = connection.set_nodelay(true);
        }
        connection
    });
    router.serve_with_incoming_shutdown(incoming, stop).await?;
    Ok(())
}
