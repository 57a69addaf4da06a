//! Real `redis-server` processes for tests: standalone, or a 3-master cluster made with
//! `redis-cli --cluster create`. Each owns its ports and a temp dir; dropped, it is killed.

use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::{free_cluster_port as free_port, wait_until};

fn require(binary: &str) {
    let found = Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{binary}` is required by the Redis tests: install it with `apt-get install redis-server` \
         (or run .ci/run, which does)"
    );
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    cluster: bool,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::spawn(free_port(), false)
    }

    fn spawn(port: u16, cluster: bool) -> Self {
        require("redis-server");
        require("redis-cli");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            child: None,
            port,
            cluster,
            dir,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.path().to_str().expect("utf-8 temp dir")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]);
        }
        self.child = Some(command.spawn().expect("redis-server starts"));
        let port = self.port;
        wait_until("redis-server to answer PING", || {
            cli(port, &["PING"]) == "PONG"
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn dbsize(&self) -> u64 {
        cli(self.port, &["DBSIZE"]).parse().unwrap_or(0)
    }

    /// Keys matching `pattern` (KEYS: for tests' small databases only).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        cli(self.port, &["KEYS", pattern])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stopped process must be continued to die promptly.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.pid().to_string())
                .status();
        }
        self.kill();
    }
}

pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::spawn(free_port(), true))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            output.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        for node in &nodes {
            let port = node.port;
            wait_until("cluster_state:ok on every node", || {
                cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
        Self { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
