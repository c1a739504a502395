//! Command-line clients the tests drive: `etcdctl` and `keelctl` runs to completion, and
//! long-running ones (`etcdctl watch`, `keelctl registry watch`) whose output is collected as
//! it arrives, so a test waits for a line instead of sleeping.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::unistd::Pid;

use crate::{keel_binary, wait_for_some, TestCluster};

/// What one etcdctl run printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdctlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `etcdctl` (API v3) against `endpoints`, feeding `stdin` (for `txn`).
pub fn etcdctl_with_input(endpoints: &str, args: &[&str], stdin: &str) -> EtcdctlOutput {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed (scripts/setup installs Debian's etcd-client)");
    child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("write etcdctl stdin");
    let output = child.wait_with_output().expect("etcdctl runs");
    EtcdctlOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn etcdctl(endpoints: &str, args: &[&str]) -> EtcdctlOutput {
    etcdctl_with_input(endpoints, args, "")
}

/// The `keelctl` binary built next to `keel`.
pub fn keelctl_binary() -> PathBuf {
    keel_binary().with_file_name("keelctl")
}

/// `keelctl --endpoints <every member> args...`, to completion.
pub fn keelctl(cluster: &TestCluster, args: &[&str]) -> BackgroundOutput {
    let output = Command::new(keelctl_binary())
        .arg("--endpoints")
        .arg(cluster.endpoints_csv())
        .args(args)
        .output()
        .expect("run keelctl");
    BackgroundOutput {
        exited: Some(output.status.success()),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An `etcdctl` (API v3) command against `endpoints`, for runs that outlive one call
/// (`etcdctl watch`, `etcdctl lease keep-alive`).
pub fn etcdctl_command(endpoints: &str, args: &[&str]) -> Command {
    let mut command = Command::new("etcdctl");
    command.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoints}")).args(args);
    command
}

/// A long-running child process (`etcdctl watch`, `keelctl registry watch`, a `keelctl registry
/// register` that keeps its lease alive) whose output is collected as it arrives, so a test
/// can wait for a line instead of sleeping. Dropping it kills the process.
pub struct Background {
    child: Child,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// What a background process printed, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackgroundOutput {
    /// `Some(success)` when it exited by itself; `None` when it was killed.
    pub exited: Option<bool>,
    pub stdout: String,
    pub stderr: String,
}

impl Background {
    pub fn spawn(mut command: Command) -> Background {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Background { child, stdout, stderr, readers }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"))
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until the stdout collected so far satisfies `done`; returns it.
    pub async fn wait_for_stdout(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        wait_for_some(timeout, what, || {
            let stdout = self.stdout();
            let finished = done(&stdout);
            async move { finished.then_some(stdout) }
        })
        .await
        .map_err(|e| format!("{e}; stdout so far: {:?}; stderr: {:?}", self.stdout(), self.stderr()))
    }

    /// Waits up to `timeout` for the process to exit by itself; kills it if it has not.
    pub async fn finish_within(mut self, timeout: Duration) -> BackgroundOutput {
        let exited = wait_for_some(timeout, "the process to exit", || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await
        .ok();
        self.finish(exited.map(|status| status.success()))
    }

    /// SIGKILL now, then everything it printed.
    pub fn kill(mut self) -> BackgroundOutput {
        let exited = self.child.try_wait().ok().flatten().map(|status| status.success());
        self.finish(exited)
    }

    fn finish(&mut self, exited: Option<bool>) -> BackgroundOutput {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes close with the process, so the readers end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        BackgroundOutput { exited, stdout: self.stdout(), stderr: self.stderr() }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends everything `source` yields to `sink` until end of file.
fn collect(
    mut source: impl std::io::Read + Send + 'static,
    sink: std::sync::Arc<std::sync::Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        let mut pending = Vec::new();
        while let Ok(n) = source.read(&mut buffer) {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buffer[..n]);
            // Only whole UTF-8 sequences: a multi-byte character may straddle two reads.
            let valid = match std::str::from_utf8(&pending) {
                Ok(text) => text.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                // Really invalid bytes: show them replaced rather than wait for more.
                Err(_) => pending.len(),
            };
            let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
            sink.lock().expect("output lock").push_str(&text);
            pending.drain(..valid);
        }
        sink.lock().expect("output lock").push_str(&String::from_utf8_lossy(&pending));
    })
}
