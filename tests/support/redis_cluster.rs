//! A real, throwaway Redis Cluster for tests: three masters (no replicas) on free ports of
//! 127.0.0.1, their node files in one temp dir, no persistence. `RedisCluster::shared()` is one
//! cluster for a whole test binary (each test isolates itself with its own key prefix).
//!
//! Every server runs behind the same `sh` watchdog as in `redis_server.rs`, which kills it once
//! the test process is gone, so that the shared cluster (a `static`, never dropped) does not
//! outlive the tests.
//!
//! Include it with `#[path = "../support/redis_cluster.rs"] mod redis_cluster;`.
#![allow(dead_code)]
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const NOT_FOUND: &str = "redis-server not found: apt-get install -y redis-server";

pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: tempfile::TempDir,
    /// The watchdog shells; each server is the child of one.
    watchdogs: Mutex<Vec<Child>>,
}

include!("watchdog.rs");

/// Free ports, held open together so that no two are the same.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

impl RedisCluster {
    /// One cluster for the whole test binary, started on first use.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(RedisCluster::start)
    }

    /// Starts three masters on free ports and joins them; returns once the cluster is `ok`.
    pub fn start() -> RedisCluster {
        match Command::new("redis-server").arg("--version").output() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{NOT_FOUND}"),
            Err(e) => panic!("redis-server cannot run: {e}"),
        }
        // A cluster node also listens on its port + 10000 (the cluster bus): keep both free.
        let ports = loop {
            let ports = free_ports(3);
            let bus_free = ports
                .iter()
                .all(|p| *p < 55_535 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok());
            if bus_free {
                break ports;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("redis-cluster-test-")
            .tempdir()
            .expect("temp dir");
        let cluster = RedisCluster {
            ports,
            dir,
            watchdogs: Mutex::new(Vec::new()),
        };
        for &port in &cluster.ports {
            cluster.launch(port);
        }
        for &port in &cluster.ports {
            cluster.wait_answering(port);
        }
        cluster.create();
        cluster
    }

    /// `redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3`.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node URLs, one each.
    pub fn node_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    fn launch(&self, port: u16) {
        let tmp = self.dir.path();
        let server = format!(
            "redis-server --port {port} --cluster-enabled yes --cluster-config-file {conf} \
             --save '' --appendonly no --bind 127.0.0.1 --dir {dir} --daemonize no --logfile {log}",
            conf = sh_quote(&tmp.join(format!("nodes-{port}.conf"))),
            dir = sh_quote(tmp),
            log = sh_quote(&tmp.join(format!("redis-{port}.log"))),
        );
        let child = spawn_watched(&server, &tmp.join(format!("server-{port}.pid")), tmp);
        self.watchdogs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
    }

    fn log(&self, port: u16) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("redis-{port}.log")))
            .unwrap_or_default()
    }

    fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_answering(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(TcpStream::connect(("127.0.0.1", port)).is_ok()
            && self
                .cli(port, &["PING"])
                .is_some_and(|a| a.contains("PONG")))
        {
            if Instant::now() > deadline {
                panic!(
                    "redis-server (cluster node) did not start on port {port}:\n{}",
                    self.log(port)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn create(&self) {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for &port in &self.ports {
            loop {
                let info = self.cli(port, &["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "the cluster is not ok on port {port}:\n{info}\n{}",
                        self.log(port)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Kills every node (like a crash).
    pub fn stop(&self) {
        let children: Vec<Child> =
            std::mem::take(&mut *self.watchdogs.lock().unwrap_or_else(|e| e.into_inner()));
        for (port, mut child) in self.ports.iter().zip(children) {
            let pidfile = self.dir.path().join(format!("server-{port}.pid"));
            match std::fs::read_to_string(pidfile) {
                Ok(pid) => {
                    let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
                }
                Err(_) => {
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
