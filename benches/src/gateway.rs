//! `keel-bench gateway`: the greeter example called directly, through `keel proxy` and nginx's
//! `grpc_pass` (the same gRPC proxy job), and through `keel gateway` (HTTP/JSON transcoded to
//! gRPC, which nginx cannot do); and the HTTP greeter called directly, through `keel gateway`'s
//! `handler=http` route and nginx's `proxy_pass` (the same HTTP proxy job): throughput and the
//! latency each front door adds, side by side, closed loop, with the targets measured alternately.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use keel_proto::greeter::say_client::SayClient;
use keel_proto::greeter::Request as HelloRequest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::cluster::{Cluster, ClusterSpec, ReservedPort, System};
use crate::stats::{self, Summary};

/// Closed-loop clients per run at most.
const GATEWAY_CLIENTS_MAX: usize = 1_024;
/// The longest a front door or the greeter may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// An HTTP answer's head longer than this is not the gateway's.
const HEAD_BYTES_MAX: usize = 16 * 1024;

#[derive(Clone, Debug, Args)]
pub struct GatewayArgs {
    /// Closed-loop clients, a comma list of counts; each has its own connection.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Seconds measured per run.
    #[arg(long, default_value = "5", value_parser = crate::cli::parse_secs)]
    pub duration: Duration,
    /// Seconds of load before each measurement.
    #[arg(long, default_value = "1", value_parser = crate::cli::parse_secs)]
    pub warmup: Duration,
    /// Alternations of the targets; the report gives medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub runs: u64,
    /// Which proxy jobs: `grpc` (the gRPC greeter: direct, keel proxy, nginx grpc_pass, keel
    /// gateway transcoding) and `http` (the HTTP greeter: direct, keel gateway, nginx proxy_pass).
    #[arg(long, value_delimiter = ',', default_value = "grpc,http")]
    pub jobs: Vec<Job>,
    /// nginx (Debian's `nginx`); the nginx column is left out when it is not there.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
}

/// A proxy job: what sits behind the front doors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Job {
    Grpc,
    Http,
}

/// What is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Direct,
    KeelProxy,
    Nginx,
    KeelGateway,
    DirectHttp,
    KeelGatewayHttp,
    NginxHttp,
}

/// The path the HTTP greeter serves (`greeter_http`'s), and that the gateway passes on unchanged.
const HTTP_GREETER_PATH: &str = "/greeter-web/say/hello";
/// The path the gateway transcodes to the gRPC greeter's `Say.Hello`.
const TRANSCODED_PATH: &str = "/greeter/say/hello";

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct gRPC",
            Target::KeelProxy => "keel proxy (gRPC)",
            Target::Nginx => "nginx grpc_pass",
            Target::KeelGateway => "keel gateway (HTTP/JSON)",
            Target::DirectHttp => "direct HTTP",
            Target::KeelGatewayHttp => "keel gateway (handler=http)",
            Target::NginxHttp => "nginx proxy_pass",
        }
    }

    /// What the latency this target adds is measured against.
    fn baseline(self) -> Target {
        match self {
            Target::Direct | Target::KeelProxy | Target::Nginx | Target::KeelGateway => Target::Direct,
            Target::DirectHttp | Target::KeelGatewayHttp | Target::NginxHttp => Target::DirectHttp,
        }
    }

    /// The HTTP/1.1 path this target is called on; `None` for gRPC.
    fn http_path(self) -> Option<&'static str> {
        match self {
            Target::Direct | Target::KeelProxy | Target::Nginx => None,
            Target::KeelGateway => Some(TRANSCODED_PATH),
            Target::DirectHttp | Target::KeelGatewayHttp | Target::NginxHttp => Some(HTTP_GREETER_PATH),
        }
    }
}

/// Runs the comparison and prints its table (markdown).
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients.iter().all(|c| (1..=GATEWAY_CLIENTS_MAX).contains(c)),
        "--clients: each count must be 1..={GATEWAY_CLIENTS_MAX}"
    );
    let exe = std::env::current_exe().context("finding keel-bench's own path")?;
    let keel = exe.with_file_name("keel");
    let greeter_bin = exe.with_file_name("examples").join("greeter_grpc");
    let http_greeter_bin = exe.with_file_name("examples").join("greeter_http");
    for binary in [&keel, &greeter_bin, &http_greeter_bin] {
        anyhow::ensure!(
            binary.exists(),
            "{} not found: cargo build --release -p keel-node --bin keel -p keel-client --example greeter_grpc --example greeter_http",
            binary.display()
        );
    }
    let root = tempfile::tempdir().context("a temporary directory")?;
    let spec = ClusterSpec {
        system: System::Keel,
        binary: keel.clone(),
        members: 1,
        heartbeat_interval_ms: 100,
        election_timeout_ms: 1_000,
        tls: None,
    };
    let cluster = Cluster::start(spec, root.path()).await?;
    let endpoint = cluster.endpoints().join(",");

    let mut greeter = Process::spawn(Command::new(&greeter_bin).env("KEEL_ENDPOINTS", &endpoint))?;
    let greeter_line = greeter.wait_for_line("serving gRPC on ")?;
    let greeter_addr = word_after(&greeter_line, "serving gRPC on ").context("the greeter's address")?;
    let mut http_greeter = Process::spawn(Command::new(&http_greeter_bin).env("KEEL_ENDPOINTS", &endpoint))?;
    let http_line = http_greeter.wait_for_line("serving HTTP on ")?;
    let http_greeter_addr = word_after(&http_line, "serving HTTP on ").context("the HTTP greeter's address")?;
    let (gateway, gateway_addr) = front_door(&keel, "gateway", &endpoint)?;
    let (proxy, proxy_addr) = front_door(&keel, "proxy", &endpoint)?;
    let nginx = match ensure_nginx(&args.nginx) {
        Ok(()) => Some(Nginx::start(&args.nginx, root.path(), &greeter_addr, &http_greeter_addr)?),
        Err(error) => {
            eprintln!("gateway bench: no nginx column: {error:#}");
            None
        }
    };

    let mut targets = Vec::new();
    if args.jobs.contains(&Job::Grpc) {
        targets.push((Target::Direct, greeter_addr.clone()));
        targets.push((Target::KeelProxy, proxy_addr));
        if let Some(nginx) = &nginx {
            targets.push((Target::Nginx, nginx.grpc_address.clone()));
        }
        targets.push((Target::KeelGateway, gateway_addr.clone()));
    }
    if args.jobs.contains(&Job::Http) {
        targets.push((Target::DirectHttp, http_greeter_addr));
        targets.push((Target::KeelGatewayHttp, gateway_addr));
        if let Some(nginx) = &nginx {
            targets.push((Target::NginxHttp, nginx.http_address.clone()));
        }
    }
    // Wait until every front door reaches the greeter.
    for (target, address) in &targets {
        let deadline = Instant::now() + START_TIMEOUT;
        while call_once(*target, address).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "{} does not reach the greeter", target.name());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    println!("| clients | target | ops/s | p50 ms | p99 ms | added p50 ms | added p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for &clients in &args.clients {
        let mut summaries: Vec<Vec<Summary>> = vec![Vec::new(); targets.len()];
        for _ in 0..args.runs {
            for (i, (target, address)) in targets.iter().enumerate() {
                summaries[i].push(measure(*target, address, clients, &args).await?);
            }
        }
        let medians: Vec<stats::Medians> = summaries.iter().map(stats::Medians::of).collect();
        for (i, (target, _)) in targets.iter().enumerate() {
            let median = &medians[i];
            let baseline = targets.iter().position(|(t, _)| *t == target.baseline()).map(|b| &medians[b]);
            let added = |value: Option<f64>, direct: Option<f64>| match (value, direct) {
                _ if target.baseline() == *target => "–".to_string(),
                (Some(v), Some(d)) => format!("{:.3}", v - d),
                _ => "?".to_string(),
            };
            println!(
                "| {clients} | {} | {:.0} | {:.3} | {:.3} | {} | {} |",
                target.name(),
                median.ops_per_s.unwrap_or(0.0),
                median.p50_ms.unwrap_or(0.0),
                median.p99_ms.unwrap_or(0.0),
                added(median.p50_ms, baseline.and_then(|b| b.p50_ms)),
                added(median.p99_ms, baseline.and_then(|b| b.p99_ms)),
            );
        }
    }
    drop((greeter.kill(), http_greeter.kill(), gateway.kill(), proxy.kill(), nginx));
    drop(cluster);
    Ok(())
}

/// One closed-loop run of `clients` against `target`.
async fn measure(target: Target, address: &str, clients: usize, args: &GatewayArgs) -> anyhow::Result<Summary> {
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let address = address.to_string();
        tasks.push(tokio::spawn(async move { client_loop(target, &address, start, end).await }));
    }
    let mut histogram = stats::new_histogram();
    let mut errors = 0;
    for task in tasks {
        let (one, failed) = task.await.context("a client task")??;
        stats::merge(&mut histogram, &one);
        errors += failed;
    }
    Ok(stats::summarize(&histogram, errors, args.duration))
}

/// Calls until `end`, recording the calls that start after `start`.
async fn client_loop(
    target: Target,
    address: &str,
    start: Instant,
    end: Instant,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut histogram = stats::new_histogram();
    let mut errors = 0;
    let mut caller = Caller::connect(target, address).await?;
    loop {
        let began = Instant::now();
        if began >= end {
            return Ok((histogram, errors));
        }
        let ok = caller.call().await.is_ok();
        if !ok {
            // A connection the other side closed is made again, as an HTTP client would.
            caller = Caller::connect(target, address).await?;
        }
        if began >= start {
            match ok {
                true => stats::record(&mut histogram, began.elapsed()),
                false => errors += 1,
            }
        }
    }
}

enum Caller {
    Grpc(SayClient<tonic::transport::Channel>),
    Http { stream: BufReader<tokio::net::TcpStream>, path: &'static str },
}

const HELLO_JSON: &str = r#"{"name":"Ada"}"#;

impl Caller {
    async fn connect(target: Target, address: &str) -> anyhow::Result<Caller> {
        Ok(match target.http_path() {
            Some(path) => {
                let stream = tokio::net::TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Caller::Http { stream: BufReader::new(stream), path }
            }
            None => {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                Caller::Grpc(SayClient::new(channel))
            }
        })
    }

    async fn call(&mut self) -> anyhow::Result<()> {
        match self {
            Caller::Grpc(client) => {
                client.hello(HelloRequest { name: "Ada".into() }).await?;
            }
            Caller::Http { stream, path } => {
                let request = format!(
                    "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{HELLO_JSON}",
                    HELLO_JSON.len()
                );
                stream.get_mut().write_all(request.as_bytes()).await?;
                let (status, length) = read_head(stream).await?;
                let mut body = vec![0; length];
                stream.read_exact(&mut body).await?;
                anyhow::ensure!(status == 200, "HTTP {status}: {}", String::from_utf8_lossy(&body));
            }
        }
        Ok(())
    }
}

/// The status and Content-Length of an HTTP/1.1 answer's head.
async fn read_head(stream: &mut BufReader<tokio::net::TcpStream>) -> anyhow::Result<(u16, usize)> {
    let (mut status, mut length, mut read) = (0, 0, 0);
    loop {
        let mut line = String::new();
        let n = stream.read_line(&mut line).await?;
        read += n;
        anyhow::ensure!(n > 0 && read <= HEAD_BYTES_MAX, "the gateway closed or sent an oversized head");
        let line = line.trim_end();
        if line.is_empty() {
            return Ok((status, length));
        }
        if let Some(code) = line.strip_prefix("HTTP/1.1 ") {
            status = code.split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(0);
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().context("Content-Length")?;
            }
        }
    }
}

async fn call_once(target: Target, address: &str) -> anyhow::Result<()> {
    Caller::connect(target, address).await?.call().await
}

/// A child process whose stdout is read line by line.
struct Process {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Process {
    fn spawn(command: &mut Command) -> anyhow::Result<Process> {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null()).spawn()?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Process { child, lines })
    }

    fn wait_for_line(&mut self, containing: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).with_context(|| format!("waiting for {containing:?}"))?;
            if line.contains(containing) {
                return Ok(line);
            }
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn word_after(line: &str, marker: &str) -> Option<String> {
    line.split(marker).nth(1)?.split_whitespace().next().map(|w| w.trim_end_matches(',').to_string())
}

/// Installs Debian's nginx when the default binary is missing (as `compare` installs etcd).
fn ensure_nginx(binary: &Path) -> anyhow::Result<()> {
    if binary.exists() {
        return Ok(());
    }
    anyhow::ensure!(binary == Path::new("/usr/sbin/nginx"), "{} does not exist", binary.display());
    crate::compare::apt_install("nginx")?;
    anyhow::ensure!(binary.exists(), "{} still missing after installing nginx", binary.display());
    Ok(())
}

/// `keel gateway` or `keel proxy` on a free loopback port, and the address it serves on.
fn front_door(keel: &Path, mode: &str, endpoint: &str) -> anyhow::Result<(Process, String)> {
    let args = [mode, "--endpoints", endpoint, "--listen", "127.0.0.1:0", "--log-level", "warn"];
    let mut process = Process::spawn(Command::new(keel).args(args))?;
    let line = process.wait_for_line("listening on http://")?;
    let address = word_after(&line, "listening on http://").with_context(|| format!("keel {mode}'s address"))?;
    Ok((process, address))
}

/// nginx with a `grpc_pass` server and a `proxy_pass` one, in its own directory, on reserved
/// loopback ports.
struct Nginx {
    child: Child,
    grpc_address: String,
    http_address: String,
    _ports: [ReservedPort; 2],
}

impl Nginx {
    fn start(binary: &Path, root: &Path, grpc_upstream: &str, http_upstream: &str) -> anyhow::Result<Nginx> {
        let dir = root.join("nginx");
        std::fs::create_dir_all(dir.join("tmp"))?;
        let ports = [ReservedPort::try_new()?, ReservedPort::try_new()?];
        let grpc_address = format!("127.0.0.1:{}", ports[0].port());
        let http_address = format!("127.0.0.1:{}", ports[1].port());
        // Two workers, as the machine has two cores; keepalive to the upstreams as keel's front
        // doors keep their connections (HTTP/1.1 and no `Connection: close` for proxy_pass's).
        // nginx closes a connection after 1 000 requests by default, which keel does not: the
        // bench's connections would be cut and re-made every few hundred milliseconds.
        let config = format!(
            "daemon off;\nworker_processes 2;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {dir}/tmp;\n  proxy_temp_path {dir}/tmp;\n\
               fastcgi_temp_path {dir}/tmp;\n  uwsgi_temp_path {dir}/tmp;\n  scgi_temp_path {dir}/tmp;\n\
               upstream greeter {{ server {grpc_upstream}; keepalive 128; keepalive_requests 1000000; }}\n\
               upstream greeter_web {{ server {http_upstream}; keepalive 128; keepalive_requests 1000000; }}\n\
               server {{\n    listen {grpc_address} http2;\n    location / {{ grpc_pass grpc://greeter; }}\n  }}\n\
               server {{\n    listen {http_address};\n    location / {{\n      proxy_pass http://greeter_web;\n\
                 proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
            dir = dir.display()
        );
        let config_path = dir.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = Command::new(binary)
            .args(["-p", &dir.display().to_string(), "-c", &config_path.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Nginx { child, grpc_address, http_address, _ports: ports })
    }
}

/// How long nginx may take to stop its workers after SIGTERM.
const NGINX_STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master stops its workers on SIGTERM, but a killed master leaves
    /// them running.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + NGINX_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
