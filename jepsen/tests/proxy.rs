//! The peer proxy, black-box: bytes flow through it, `block()` cuts existing connections and
//! closes new ones, `heal()` lets new ones through again. Against a plain TCP echo server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use keel_jepsen::proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long a step may take before the test fails; nothing here should come close.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind the echo server");
    let address = listener.local_addr().expect("a bound listener has an address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

/// Sends `message` and reads it back.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(message).await?;
    let mut echoed = vec![0; message.len()];
    stream.read_exact(&mut echoed).await?;
    Ok(echoed)
}

/// True once the proxy has closed the connection: a read ends with EOF or an error.
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 16];
    // A write may still succeed into the kernel buffer; the read is what tells.
    let _ = stream.write_all(b"anyone?").await;
    match tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut buffer)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the connection neither answered nor closed within {STEP_TIMEOUT:?}"),
    }
}

#[tokio::test]
async fn proxy_forwards_blocks_and_heals() {
    let target = echo_server().await;
    let proxy = Proxy::bind(target).await.expect("start the proxy");
    assert_eq!(proxy.target(), target);

    // Open: data flows both ways.
    let mut before = TcpStream::connect(proxy.listen_addr()).await.expect("connect through the proxy");
    let echoed = tokio::time::timeout(STEP_TIMEOUT, round_trip(&mut before, b"hello"))
        .await
        .expect("echo within the timeout")
        .expect("echo through the proxy");
    assert_eq!(echoed, b"hello");

    // Blocked: the existing connection is cut and a new one is closed on arrival.
    proxy.block();
    assert!(proxy.is_blocked());
    assert!(is_closed(&mut before).await, "an existing connection survived block()");
    let mut during = TcpStream::connect(proxy.listen_addr()).await.expect("the listener still accepts");
    assert!(is_closed(&mut during).await, "a new connection got through a blocked proxy");

    // Healed: new connections flow again.
    proxy.heal();
    assert!(!proxy.is_blocked());
    let mut after = TcpStream::connect(proxy.listen_addr()).await.expect("connect after heal");
    let echoed = tokio::time::timeout(STEP_TIMEOUT, round_trip(&mut after, b"again"))
        .await
        .expect("echo within the timeout")
        .expect("echo after heal");
    assert_eq!(echoed, b"again");

    // Dropped: the proxy stops and closes what it forwarded.
    drop(proxy);
    assert!(is_closed(&mut after).await, "a connection outlived the proxy");
}

/// A connection to the proxy from a given loopback source address, as a member opens them.
async fn connect_from(source: Ipv4Addr, proxy: &Proxy) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::from((source, 0))).expect("bind a loopback source address");
    socket.connect(proxy.listen_addr()).await.expect("connect through the proxy")
}

#[tokio::test]
async fn proxy_cuts_one_caller_only() {
    let target = echo_server().await;
    let proxy = Proxy::bind(target).await.expect("start the proxy");
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let mut from_a = connect_from(a, &proxy).await;
    let mut from_b = connect_from(b, &proxy).await;
    for stream in [&mut from_a, &mut from_b] {
        let echoed =
            tokio::time::timeout(STEP_TIMEOUT, round_trip(stream, b"hi")).await.expect("in time").expect("echo");
        assert_eq!(echoed, b"hi");
    }

    // Cut A: A's connections close, new ones too; B's go on.
    proxy.block_from(IpAddr::V4(a));
    assert!(proxy.is_blocked_from(IpAddr::V4(a)) && !proxy.is_blocked_from(IpAddr::V4(b)));
    assert!(!proxy.is_blocked(), "only one caller is cut");
    assert!(is_closed(&mut from_a).await, "A's connection survived block_from(A)");
    let mut again_a = connect_from(a, &proxy).await;
    assert!(is_closed(&mut again_a).await, "a new connection from A got through");
    let echoed = tokio::time::timeout(STEP_TIMEOUT, round_trip(&mut from_b, b"still"))
        .await
        .expect("in time")
        .expect("B echoes");
    assert_eq!(echoed, b"still");

    // Healed: A gets through again.
    proxy.heal();
    let mut healed_a = connect_from(a, &proxy).await;
    let echoed = tokio::time::timeout(STEP_TIMEOUT, round_trip(&mut healed_a, b"back"))
        .await
        .expect("in time")
        .expect("A echoes");
    assert_eq!(echoed, b"back");
}
