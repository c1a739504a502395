//! A TCP proxy in front of one member's peer port, which the harness can cut and heal.
//!
//! Members advertise the proxy's address instead of their own peer port, so every Raft message
//! and forwarded request *to* that member passes through here. The proxy knows nothing about
//! which member a connection comes from (everything is on 127.0.0.1): it can only cut all
//! inbound traffic of its member or none. It never inspects or alters the bytes it copies.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Open,
    Blocked,
}

/// A running proxy; it stops, closing every connection, when dropped.
#[derive(Debug)]
pub struct Proxy {
    listen_addr: SocketAddr,
    target: SocketAddr,
    link: watch::Sender<Link>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target`.
    pub async fn bind(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let listen_addr = listener.local_addr()?;
        let (link, receiver) = watch::channel(Link::Open);
        let accept_task = tokio::spawn(accept_loop(listener, target, receiver));
        Ok(Proxy { listen_addr, target, link, accept_task })
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
        self.link.send_replace(Link::Blocked);
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        self.link.send_replace(Link::Open);
    }

    pub fn is_blocked(&self) -> bool {
        *self.link.borrow() == Link::Blocked
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, link: watch::Receiver<Link>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(error) => {
                tracing::warn!(%error, "proxy accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if *link.borrow() == Link::Blocked || connections.len() >= CONNECTIONS_MAX {
            drop(inbound);
            continue;
        }
        connections.spawn(forward(inbound, target, link.clone()));
    }
}

/// Copies both ways until either side closes or the link is blocked.
async fn forward(mut inbound: TcpStream, target: SocketAddr, mut link: watch::Receiver<Link>) {
    let Ok(Ok(mut outbound)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await else {
        return;
    };
    // Nagle would add up to 40 ms to every small Raft message.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        // Also ends when the Proxy (the sender) is dropped.
        _ = async { link.wait_for(|link| *link == Link::Blocked).await.map(|_| ()) } => {}
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
}
