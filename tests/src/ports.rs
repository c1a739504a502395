//! Loopback ports reserved for a member for the harness's whole life, so that no other process
//! can take one between the harness choosing it and the member binding it, nor while a killed
//! member is down before its restart.
//!
//! A reservation is a socket bound to `127.0.0.1:0` with `SO_REUSEADDR` that never listens.
//! Linux then lets another socket bind the same address only if that socket sets
//! `SO_REUSEADDR` too, and lets it listen since the reservation does not: that is exactly what
//! a server's listener does (Rust's std and tokio, Go's net package, so `keel`, etcd and
//! nats-server alike). Anything else is kept off the port: a bind without `SO_REUSEADDR`
//! fails, `bind(0)` and the source port of an outgoing connection never pick a port a bound
//! socket holds, and a second listener is refused while the member listens. And because the
//! reservation does not listen, a connection to a member that is down is refused at once, as
//! on a real host, instead of waiting in a backlog nobody accepts from.
//!
//! `benches/src/cluster.rs` and `jepsen/src/cluster.rs` include this file as a module (the
//! three harnesses share no crate), so the rules live in one place.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A loopback port held until this is dropped; see the module doc.
#[derive(Debug)]
pub struct ReservedPort {
    // Held for its Drop: closing it gives the port back.
    _socket: Socket,
    port: u16,
}

impl ReservedPort {
    /// Reserves a port the kernel chooses on 127.0.0.1.
    pub fn try_new() -> std::io::Result<ReservedPort> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        let port = socket.local_addr()?.as_socket().map(|addr| addr.port()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "a reservation bound to no IP address")
        })?;
        Ok(ReservedPort { _socket: socket, port })
    }

    /// [`ReservedPort::try_new`], for tests: a machine that cannot bind loopback fails them.
    pub fn new() -> ReservedPort {
        Self::try_new().expect("reserving a loopback port")
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_admits_a_server_and_nothing_else() {
        let reserved = ReservedPort::new();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, reserved.port()));
        // A socket without SO_REUSEADDR, as a client binding a fixed port would be: refused.
        let plain = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        assert!(plain.bind(&addr.into()).is_err(), "a plain bind must not take a reserved port");
        // A server's listener (std sets SO_REUSEADDR, as tokio and Go do): admitted, and alone.
        let member = std::net::TcpListener::bind(addr).expect("a member binds its reserved port");
        assert!(std::net::TcpListener::bind(addr).is_err(), "a second listener is refused");
        std::net::TcpStream::connect(addr).expect("the member accepts");
        // The member stops: connections are refused, not queued, and its restart binds again.
        drop(member);
        let refused = std::net::TcpStream::connect(addr).expect_err("nobody listens");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        std::net::TcpListener::bind(addr).expect("a restarted member binds its reserved port again");
    }

    #[test]
    fn the_kernel_never_hands_out_a_reserved_port() {
        let reserved: Vec<ReservedPort> = (0..20).map(|_| ReservedPort::new()).collect();
        let mut ports: Vec<u16> = reserved.iter().map(ReservedPort::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), reserved.len(), "reservations are distinct");
        for _ in 0..2_000 {
            let other = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind(0)");
            let port = other.local_addr().expect("addr").port();
            assert!(!ports.contains(&port), "bind(0) handed out reserved port {port}");
        }
    }
}
