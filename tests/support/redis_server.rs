//! A real, throwaway redis-server for tests: its own port on 127.0.0.1, its own directory in a
//! temp dir, no persistence. `RedisServer::shared()` is one server for a whole test binary (each
//! test isolates itself with its own key prefix); `RedisServer::start()` gives a private one that
//! a test may stop and restart.
//!
//! The server runs behind a small `sh` watchdog that kills it once the test process is gone, so
//! that even the shared server (a `static`, never dropped) does not outlive the tests.
//!
//! Include it with `#[path = "../support/redis_server.rs"] mod redis_server;`.
#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const NOT_FOUND: &str = "redis-server not found: apt-get install -y redis-server";

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// The watchdog shell; the server is its child.
    watchdog: Mutex<Option<Child>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

include!("watchdog.rs");

impl RedisServer {
    /// One server for the whole test binary, started on first use.
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(RedisServer::start)
    }

    /// Starts a server on a free port; returns once it answers PING.
    pub fn start() -> RedisServer {
        match Command::new("redis-server").arg("--version").output() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{NOT_FOUND}"),
            Err(e) => panic!("redis-server cannot run: {e}"),
        }
        let dir = tempfile::Builder::new()
            .prefix("redis-test-")
            .tempdir()
            .expect("temp dir");
        let server = RedisServer {
            port: free_port(),
            dir,
            watchdog: Mutex::new(None),
        };
        server.launch();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (like a crash) and waits until its port is closed.
    pub fn stop(&self) {
        let child = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut child) = child else { return };
        match std::fs::read_to_string(self.dir.path().join("server.pid")) {
            Ok(pid) => {
                let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
            }
            Err(_) => {
                let _ = child.kill();
            }
        }
        // The shell reaps the server and exits right after.
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server from answering (SIGSTOP): connections stay open, nothing comes back,
    /// as with a Redis that hangs. [`RedisServer::thaw`] lets it go on.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server answer again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = std::fs::read_to_string(self.dir.path().join("server.pid"))
            .expect("the server's pid file");
        let ok = Command::new("kill")
            .arg(which)
            .arg(pid.trim())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {which} {} failed", pid.trim());
    }

    /// Starts the server again on the same port (empty: nothing is persisted unless
    /// [`RedisServer::restart_keeping_data`] saved it).
    pub fn restart(&self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        self.launch();
    }

    /// Restarts the server on the same port and directory with its data, as an operator
    /// restarts a Redis that persists: a snapshot (`SAVE`) first, then the server is killed
    /// (closing every client's connection) and started again, loading the snapshot. Returns
    /// once it answers PING.
    pub fn restart_keeping_data(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut answer = [0u8; 5];
        s.write_all(b"SAVE\r\n").expect("send SAVE");
        s.read_exact(&mut answer).expect("SAVE answered");
        assert_eq!(&answer, b"+OK\r\n", "SAVE failed");
        drop(s);
        self.stop();
        self.launch();
    }

    fn launch(&self) {
        let tmp = self.dir.path();
        let _ = std::fs::remove_file(tmp.join("server.pid"));
        let server = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --dir {dir} \
             --daemonize no --logfile {log}",
            port = self.port,
            dir = sh_quote(tmp),
            log = sh_quote(&tmp.join("redis.log")),
        );
        let child = spawn_watched(&server, &tmp.join("server.pid"), tmp);
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.pongs() {
                return;
            }
            let exited = self
                .watchdog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            if exited || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!(
                    "redis-server did not start on port {} ({}):\n{log}",
                    self.port,
                    if exited { "it exited" } else { "timed out" }
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pongs(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
