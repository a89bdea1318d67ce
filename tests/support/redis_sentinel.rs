//! A real, throwaway Redis Sentinel setup for tests: a master, one replica of it and one
//! sentinel monitoring it as `m` (quorum 1, down after 1 s, so that killing the master fails
//! over to the replica within seconds), on free ports of 127.0.0.1, their files in one temp
//! dir, no persistence. `RedisSentinel::shared()` is one setup for a whole test binary (each
//! test isolates itself with its own key prefix); `RedisSentinel::start()` a private one that a
//! test may fail over.
//!
//! Every server runs behind the same `sh` watchdog as in `redis_server.rs`, which kills it once
//! the test process is gone, so that the shared setup (a `static`, never dropped) does not
//! outlive the tests.
//!
//! Include it with `#[path = "../support/redis_sentinel.rs"] mod redis_sentinel;`.
#![allow(dead_code)]
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const NOT_FOUND: &str = "redis-server not found: apt-get install -y redis-server";

/// The name the sentinel monitors the master by.
pub const MASTER_NAME: &str = "m";

pub struct RedisSentinel {
    pub master_port: u16,
    pub replica_port: u16,
    pub sentinel_port: u16,
    dir: tempfile::TempDir,
    /// The watchdog shells, by the port of the server each one runs.
    watchdogs: Mutex<Vec<(u16, Child)>>,
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

impl RedisSentinel {
    /// One setup for the whole test binary, started on first use.
    pub fn shared() -> &'static RedisSentinel {
        static SHARED: OnceLock<RedisSentinel> = OnceLock::new();
        SHARED.get_or_init(RedisSentinel::start)
    }

    /// Starts the master, the replica and the sentinel; returns once the replica is in sync
    /// and the sentinel knows both.
    pub fn start() -> RedisSentinel {
        match Command::new("redis-server").arg("--version").output() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{NOT_FOUND}"),
            Err(e) => panic!("redis-server cannot run: {e}"),
        }
        let ports = free_ports(3);
        let dir = tempfile::Builder::new()
            .prefix("redis-sentinel-test-")
            .tempdir()
            .expect("temp dir");
        let setup = RedisSentinel {
            master_port: ports[0],
            replica_port: ports[1],
            sentinel_port: ports[2],
            dir,
            watchdogs: Mutex::new(Vec::new()),
        };
        let (master, replica, sentinel) =
            (setup.master_port, setup.replica_port, setup.sentinel_port);
        setup.launch(master, setup.server_args(master, ""));
        setup.wait_answering(master);
        setup.launch(
            replica,
            setup.server_args(replica, &format!("--replicaof 127.0.0.1 {master}")),
        );
        setup.wait_answering(replica);
        // The sentinel rewrites its config file: it must be writable, in the temp dir.
        let conf = setup.dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 3000\n",
                dir = setup.dir.path().display(),
            ),
        )
        .expect("sentinel.conf written");
        setup.launch(
            sentinel,
            format!(
                "redis-server {conf} --sentinel --daemonize no --logfile {log}",
                conf = sh_quote(&conf),
                log = sh_quote(&setup.log_path(sentinel)),
            ),
        );
        setup.wait_answering(sentinel);
        setup.wait_until(replica, &["INFO", "replication"], "master_link_status:up");
        setup.wait_until(
            sentinel,
            &["SENTINEL", "REPLICAS", MASTER_NAME],
            &format!("{replica}"),
        );
        setup
    }

    /// `redis+sentinel://127.0.0.1:P/m`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}",
            self.sentinel_port
        )
    }

    /// A plain URL of one of the servers (`redis://127.0.0.1:P`).
    pub fn node_url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}")
    }

    fn log_path(&self, port: u16) -> std::path::PathBuf {
        self.dir.path().join(format!("redis-{port}.log"))
    }

    fn server_args(&self, port: u16, extra: &str) -> String {
        let tmp = self.dir.path();
        let dir = tmp.join(format!("data-{port}"));
        std::fs::create_dir_all(&dir).expect("data dir");
        format!(
            "redis-server --port {port} --save '' --appendonly no --bind 127.0.0.1 --dir {dir} \
             --daemonize no --logfile {log} {extra}",
            dir = sh_quote(&dir),
            log = sh_quote(&self.log_path(port)),
        )
    }

    fn launch(&self, port: u16, server: String) {
        let tmp = self.dir.path();
        let child = spawn_watched(&server, &tmp.join(format!("server-{port}.pid")), tmp);
        self.watchdogs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((port, child));
    }

    fn log(&self, port: u16) -> String {
        std::fs::read_to_string(self.log_path(port)).unwrap_or_default()
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
        self.wait_until(port, &["PING"], "PONG");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// Waits (at most 20 s) until `redis-cli args` on `port` answers something holding `want`.
    fn wait_until(&self, port: u16, args: &[&str], want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.cli(port, args).unwrap_or_default();
            if answer.contains(want) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "redis on port {port} never answered {args:?} with {want:?}: {answer}\n{}",
                    self.log(port)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server on `port` (like a crash).
    pub fn kill(&self, port: u16) {
        let child = {
            let mut watchdogs = self.watchdogs.lock().unwrap_or_else(|e| e.into_inner());
            let at = watchdogs.iter().position(|(p, _)| *p == port);
            at.map(|i| watchdogs.remove(i).1)
        };
        let Some(mut child) = child else { return };
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

    /// Kills every server.
    pub fn stop(&self) {
        for port in [self.sentinel_port, self.replica_port, self.master_port] {
            self.kill(port);
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        self.stop();
    }
}
