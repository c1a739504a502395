//! The processes the front-door tests drive: `keel gateway` / `keel proxy` spoken to over raw
//! HTTP/1.1, the greeter example, and a plain HTTP echo server for `handler=http` services.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use keel_tests::{keel_binary, Background};

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Gateway {
    pub process: Background,
    pub address: String,
}

impl Gateway {
    pub async fn start(cluster_url: &str, flags: &[&str]) -> Gateway {
        Gateway::start_as("gateway", cluster_url, flags).await
    }

    /// `keel gateway` or `keel proxy`.
    pub async fn start_as(mode: &str, cluster_url: &str, flags: &[&str]) -> Gateway {
        let mut command = Command::new(keel_binary());
        command.args([mode, "--endpoints", cluster_url, "--listen", "127.0.0.1:0"]).args(flags);
        let process = Background::spawn(command);
        let stdout = process
            .wait_for_stdout(WAIT, "the gateway to listen", |out| out.contains("listening on http://"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let address = stdout.split("listening on http://").nth(1).and_then(|rest| rest.split_whitespace().next());
        Gateway { address: address.expect("the gateway prints its address").to_string(), process }
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        );
        self.send(&request)
    }

    /// One raw HTTP/1.1 exchange (the request must say `Connection: close`).
    pub fn send(&self, request: &str) -> Answer {
        let mut stream = std::net::TcpStream::connect(&self.address).expect("connect to the gateway");
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream.write_all(request.as_bytes()).expect("send the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read the answer");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        Answer { status, head: head.to_string(), body: body.to_string() }
    }
}

pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn detail(&self) -> String {
        self.json()["detail"].as_str().unwrap_or_default().to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

pub struct Greeter {
    pub process: Background,
    pub node_id: String,
}

impl Greeter {
    /// The greeter_grpc example, built next to `keel` (`cargo build --workspace --all-targets`).
    pub async fn start(cluster_url: &str, env: &[(&str, &str)]) -> Greeter {
        Greeter::start_example("greeter_grpc", cluster_url, env).await
    }

    /// `greeter_grpc`, or `greeter_http` (the same greeter as a `handler=http` service).
    pub async fn start_example(example: &str, cluster_url: &str, env: &[(&str, &str)]) -> Greeter {
        let binary: PathBuf = keel_binary().with_file_name("examples").join(example);
        assert!(binary.is_file(), "{} is missing: build with --all-targets", binary.display());
        let mut command = Command::new(binary);
        command.env("KEEL_ENDPOINTS", cluster_url).envs(env.iter().copied());
        let process = Background::spawn(command);
        let stdout = process
            .wait_for_stdout(WAIT, "the greeter to register", |out| out.contains(" serving "))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let node_id = stdout.split_whitespace().nth(1).expect("the greeter prints its node id").to_string();
        Greeter { process, node_id }
    }
}

/// A plain HTTP/1.1 server that answers every request with the request itself, head and body,
/// as it arrived; it stops (and its port refuses connections) when dropped.
pub struct EchoServer {
    pub address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the echo server");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address").to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || echo(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        EchoServer { address, stop }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Answers the request on `stream` with its own bytes, and closes (so that no pooled
/// connection outlives the server).
fn echo(mut stream: std::net::TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(WAIT));
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let Ok(read) = stream.read(&mut buffer) else { return };
        if read == 0 {
            return;
        }
        received.extend_from_slice(&buffer[..read]);
        let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if received.len() < head_end + 4 + length {
            continue;
        }
        let request = &received[..head_end + 4 + length];
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Served-By: echo\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            request.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(request));
        return;
    }
}
