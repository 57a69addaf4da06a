//! What edge-gateway's tests and benches share: the gateway binary as a process, real
//! `redis-server` processes (standalone and 3-master clusters), ports, and polling with
//! a deadline. Nothing here depends on the gateway's crate, so it can be a
//! dev-dependency without a cycle; the in-process harness stays with the tests.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod otlp;
pub mod redis;

/// How long anything a test waits for may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, failing the test after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `ok` (blocking) until it holds, failing after `DEADLINE`.
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A free loopback port whose cluster bus port (port + 10000) is free and in range too.
pub fn free_cluster_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Whether CPU pinning is available (`taskset`).
pub fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The real `edge-gateway` binary, started with `env` on a free port.
pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub output: mpsc::Receiver<String>,
    /// What it printed up to and including its listening line.
    pub startup: Vec<String>,
    pub dir: TempDir,
}

impl GatewayProcess {
    /// Starts `binary serve` with `env` on a free loopback port (and its own SQLite file),
    /// pinned to `core` when given and `taskset` exists; returns once it listens.
    pub fn spawn(binary: &str, env: &[(&str, String)], core: Option<usize>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = match core.filter(|_| has_taskset()) {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &core.to_string(), binary]);
                c
            }
            None => Command::new(binary),
        };
        command
            .arg("serve")
            .env_clear()
            .env("PORT", "0")
            .env("BIND", "127.0.0.1")
            .env("SQLITE_PATH", dir.path().join("gw.db"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("binary starts");
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let start = Instant::now();
        let mut startup = Vec::new();
        let addr = loop {
            let remaining = DEADLINE.saturating_sub(start.elapsed());
            let line = rx
                .recv_timeout(remaining)
                .expect("gateway prints its listening address");
            let addr = line.split("listening on ").nth(1).map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            startup.push(line);
            if let Some(addr) = addr {
                break addr.parse().expect("a socket address");
            }
        };
        Self {
            child,
            addr,
            output: rx,
            startup,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends `name` (`TERM`, `INT`, `KILL`, `STOP`, `CONT`) at once, as an orchestrator
    /// may: a spawned `kill` took long enough to hide a process that was not yet
    /// listening for it.
    pub fn signal(&self, name: &str) {
        let signal = match name {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "KILL" => libc::SIGKILL,
            "STOP" => libc::SIGSTOP,
            "CONT" => libc::SIGCONT,
            other => panic!("no such signal in the test kit: {other}"),
        };
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill only sends a signal to the process this kit started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill -{name}");
    }

    /// Waits for the process to exit, failing after `DEADLINE`.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the process printed so far.
    pub fn drain_output(&self) -> Vec<String> {
        self.output.try_iter().collect()
    }

    /// Everything the process printed, until both pipes close (call after it exited).
    pub fn output_until_closed(&self) -> Vec<String> {
        let start = Instant::now();
        let mut lines = Vec::new();
        loop {
            let remaining = DEADLINE.saturating_sub(start.elapsed());
            match self.output.recv_timeout(remaining) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("output pipes did not close"),
            }
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
