//! `keel gateway`: micro's API gateway over Keel's registry. An HTTP request's path names a
//! registered service and endpoint (micro's rules, or a route the service registered); its JSON
//! body is transcoded to the endpoint's gRPC request through the service's own reflected
//! schema, and the answer back to JSON. Stateless: any number of gateways may serve one cluster.
//!
//! `keel proxy` (`proxy.rs`) shares all of it but the transcoding: gRPC in, gRPC out.
//!
//! It must not read the registry per request (a watch keeps `directory` current), nor buffer a
//! body past its limit, nor retry a request that may have reached a node.

pub mod cli;
pub mod directory;
pub mod grpc;
pub mod h1;
pub mod h2;
pub mod http;
pub mod identity;
pub mod limits;
pub mod per_worker;
pub mod proxy;
pub mod reverse;
pub mod route;
pub mod schema;
pub mod select;
pub mod streaming;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_client::config::Config;
use keel_client::registry::{Registry, Strategy};
use prost_reflect::DescriptorPool;

use directory::{Directory, Instance};

/// How the gateway treats requests; `keel gateway`'s flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prefixed to the service micro's rule names (`<namespace>.<service>`); empty for none.
    pub namespace: String,
    pub strategy: Strategy,
    pub max_body_bytes: usize,
    /// How long a client may take to send its body.
    pub body_timeout: Duration,
    /// How long a service may take to answer.
    pub request_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            namespace: String::new(),
            strategy: Strategy::RoundRobin,
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Requests a gateway or proxy serves at once; past it a request is refused at once (503 /
/// UNAVAILABLE) rather than queued, so a flood costs bounded memory and the callers learn to
/// back off.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 10_000;

/// Service schemas kept at most (one per service version); past this the cache starts again.
const SCHEMAS_MAX: usize = 1024;

/// What every request shares.
pub struct Gateway {
    pub options: Options,
    pub directory: Arc<Directory>,
    /// `None`: every caller is let through (`keel gateway` without `--auth`).
    identity: Option<identity::Identity>,
    limits: Arc<limits::Limits>,
    in_flight: tokio::sync::Semaphore,
    selector: select::Selector,
    channels: grpc::Channels,
    /// keel proxy's connections (the gateway's calls go through `channels`).
    connections: h2::Connections,
    /// The gateway's connections to `handler=http` services.
    http: h1::Connections,
    // std Mutex: held to look up or insert, never across an await (two first requests may
    // both reflect; the second result replaces the first, which is the same schema).
    schemas: Mutex<HashMap<(String, String), DescriptorPool>>,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Gateway => "keel gateway",
            Mode::Proxy => "keel proxy",
        }
    }
}

impl Gateway {
    pub fn new(options: Options, identity: Option<identity::Identity>) -> Gateway {
        Gateway {
            identity,
            limits: Arc::new(limits::Limits::default()),
            in_flight: tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT_MAX),
            selector: select::Selector::new(options.strategy),
            options,
            directory: Arc::new(Directory::default()),
            channels: grpc::Channels::default(),
            connections: h2::Connections::default(),
            http: h1::Connections::default(),
            schemas: Mutex::new(HashMap::new()),
        }
    }

    /// The schema of `service` at `instance`'s version: reflected once, then kept.
    async fn schema(&self, service: &str, instance: &Instance) -> Result<DescriptorPool, schema::SchemaError> {
        let key = (service.to_string(), instance.version.clone());
        if let Some(pool) = self.lock_schemas().get(&key) {
            return Ok(pool.clone());
        }
        let channel = self.channels.get(&instance.address).map_err(schema::SchemaError::Failed)?;
        let pool = schema::fetch(channel).await?;
        let mut schemas = self.lock_schemas();
        if schemas.len() >= SCHEMAS_MAX {
            schemas.clear();
        }
        schemas.insert(key, pool.clone());
        Ok(pool)
    }

    fn lock_schemas(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), DescriptorPool>> {
        self.schemas.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a front-door process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `keel gateway`: HTTP/JSON, transcoded to gRPC.
    Gateway,
    /// `keel proxy`: gRPC passed through.
    Proxy,
}

/// Where a gateway learns what it needs from the cluster.
pub struct Sources {
    pub registry: Arc<dyn Registry>,
    /// The rate limits' document (`limits.rs`); `None`: no limits.
    pub config: Option<Arc<dyn Config>>,
    /// `None`: callers are not checked.
    pub identity: Option<identity::Identity>,
}

/// One listening socket per worker, all on `address` (the port the first one got, when it asks
/// for port 0) with SO_REUSEPORT: the kernel spreads new connections evenly over the workers. On
/// one shared socket whichever worker asked first took each connection, and a burst of them
/// could land mostly on one worker while the other idled.
pub fn listen_per_worker(address: std::net::SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = vec![reuse_port_listener(address)?];
    let bound = listeners[0].local_addr()?;
    for _ in 1..workers.max(1) {
        listeners.push(reuse_port_listener(bound)?);
    }
    Ok(listeners)
}

/// Connections waiting to be accepted, per worker (the kernel caps it at somaxconn).
const ACCEPT_BACKLOG: i32 = 1024;

fn reuse_port_listener(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(ACCEPT_BACKLOG)?;
    Ok(socket.into())
}

/// Serves the gateway until `shutdown` completes, following the registry and the limits in
/// `sources`, with one worker thread per listener (`listen_per_worker`). Each worker is a
/// single-threaded runtime that serves the connections it accepts start to end, as nginx's
/// workers do: a call's hand-offs between tasks then stay on one thread instead of waking
/// another.
pub async fn serve(
    mode: Mode,
    sources: Sources,
    options: Options,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gateway = Arc::new(Gateway::new(options, sources.identity));
    let readmit = {
        let gateway = gateway.clone();
        move |address: &str| gateway.selector.readmit(address)
    };
    let mut followers = vec![tokio::spawn(directory::follow(sources.registry, gateway.directory.clone(), readmit))];
    if let Some(config) = sources.config {
        followers.push(tokio::spawn(limits::follow(config, gateway.limits.clone())));
    }
    let mut listeners = listeners.into_iter();
    let first = listeners.next().ok_or_else(|| std::io::Error::other("no listener to serve on"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut threads = Vec::new();
    for (worker, listener) in (1..).zip(listeners) {
        let (gateway, mut stopped) = (gateway.clone(), stopped.clone());
        listener.set_nonblocking(true)?;
        let thread = std::thread::Builder::new().name(format!("{}-{worker}", mode.name())).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                serve_on(mode, gateway, listener, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
            })
        })?;
        threads.push(thread);
    }
    first.set_nonblocking(true)?;
    let served = serve_on(mode, gateway, tokio::net::TcpListener::from_std(first)?, shutdown).await;
    stop.send_replace(true);
    for follower in followers {
        follower.abort();
    }
    for thread in threads {
        match thread.join() {
            Ok(Err(error)) => tracing::warn!("a worker failed: {error}"),
            Err(_) => tracing::error!("a worker panicked"),
            Ok(Ok(())) => {}
        }
    }
    served
}

/// One worker's accept loop.
async fn serve_on(
    mode: Mode,
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = match mode {
        Mode::Gateway => axum::Router::new().fallback(http::handle).with_state(gateway),
        Mode::Proxy => axum::Router::new().fallback(proxy::handle).with_state(gateway),
    };
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Small answers go out at once: without it Nagle holds a response's later frames until the
    // client acknowledges the first (axum::serve leaves the option off).
    let listener = axum::serve::ListenerExt::tap_io(listener, |connection| {
        let _ = connection.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_listens_on_the_port_the_first_one_got() {
        let listeners = listen_per_worker("127.0.0.1:0".parse().expect("address"), 3).expect("listen");
        let addresses: Vec<_> = listeners.iter().map(|l| l.local_addr().expect("address")).collect();
        assert_eq!(addresses.len(), 3);
        assert_ne!(addresses[0].port(), 0);
        assert!(addresses.iter().all(|a| *a == addresses[0]), "{addresses:?}");
        // Connections reach one of them.
        let _client = std::net::TcpStream::connect(addresses[0]).expect("connect");
    }
}
