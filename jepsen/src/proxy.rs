//! A TCP proxy in front of one member's peer port, which the harness can cut and heal, for
//! every caller or for one caller at a time.
//!
//! Members advertise the proxy's address instead of their own peer port, so every Raft message
//! and forwarded request *to* that member passes through here. Each member opens its peer
//! connections from its own loopback address (`--unsafe-peer-source-address`), so the proxy
//! tells callers apart by the connection's source IP: [`Proxy::block_from`] cuts one directed
//! link. It never inspects or alters the bytes it copies.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Connections forwarded at once; past it a new connection is closed at once. A member opens a
/// handful of peer connections, so this only bounds a runaway reconnect loop.
pub const CONNECTIONS_MAX: usize = 64;
/// Time to reach the target before the inbound connection is closed: a killed member's port
/// refuses at once, a paused one accepts (the kernel does), so this rarely matters.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Who may not get through; read by every connection task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Blocked {
    /// Every caller.
    all: bool,
    /// Callers by source IP.
    sources: BTreeSet<IpAddr>,
}

impl Blocked {
    fn cuts(&self, source: IpAddr) -> bool {
        self.all || self.sources.contains(&source)
    }
}

/// A running proxy; it stops, closing every connection, when dropped.
#[derive(Debug)]
pub struct Proxy {
    listen_addr: SocketAddr,
    target: SocketAddr,
    blocked: watch::Sender<Blocked>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target`.
    pub async fn bind(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let listen_addr = listener.local_addr()?;
        let (blocked, receiver) = watch::channel(Blocked::default());
        let accept_task = tokio::spawn(accept_loop(listener, target, receiver));
        Ok(Proxy { listen_addr, target, blocked, accept_task })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes every forwarded connection and, until [`Proxy::heal`], closes new ones as soon
    /// as they are accepted.
    pub fn block(&self) {
        self.blocked.send_modify(|blocked| blocked.all = true);
    }

    /// Like [`Proxy::block`], for the connections coming from `source` only.
    pub fn block_from(&self, source: IpAddr) {
        self.blocked.send_modify(|blocked| {
            blocked.sources.insert(source);
        });
    }

    /// Forwards new connections from every caller again.
    pub fn heal(&self) {
        self.blocked.send_replace(Blocked::default());
    }

    /// True after [`Proxy::block`] (every caller), until [`Proxy::heal`].
    pub fn is_blocked(&self) -> bool {
        self.blocked.borrow().all
    }

    /// True when connections from `source` are cut, by [`Proxy::block`] or [`Proxy::block_from`].
    pub fn is_blocked_from(&self, source: IpAddr) -> bool {
        self.blocked.borrow().cuts(source)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, blocked: watch::Receiver<Blocked>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (inbound, source) = match listener.accept().await {
            Ok((inbound, peer)) => (inbound, peer.ip()),
            Err(error) => {
                tracing::warn!(%error, "proxy accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if blocked.borrow().cuts(source) || connections.len() >= CONNECTIONS_MAX {
            drop(inbound);
            continue;
        }
        connections.spawn(forward(inbound, source, target, blocked.clone()));
    }
}

/// Copies both ways until either side closes or the link from `source` is blocked.
async fn forward(mut inbound: TcpStream, source: IpAddr, target: SocketAddr, mut blocked: watch::Receiver<Blocked>) {
    let Ok(Ok(mut outbound)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await else {
        return;
    };
    // Nagle would add up to 40 ms to every small Raft message.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        // Also ends when the Proxy (the sender) is dropped.
        _ = async { blocked.wait_for(|blocked| blocked.cuts(source)).await.map(|_| ()) } => {}
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
}
