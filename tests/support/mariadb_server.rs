//! A real, throwaway MariaDB server for tests: its own data directory in a temp dir, its own port
//! on 127.0.0.1, root without a password. `MariaDb::shared()` is one server for a whole test
//! binary (each test makes its own database on it); `MariaDb::start()` gives a private one that a
//! test may stop and restart.
//!
//! The server is spawned behind a small `sh` watchdog that kills it once the test process is gone,
//! so that even the shared server (a `static`, never dropped) does not outlive the tests.
//!
//! Include it with `#[path = "../support/mariadb_server.rs"] mod mariadb_server;`.
#![allow(dead_code)]
use sqlx::{Connection, Executor, MySqlConnection};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct MariaDb {
    pub port: u16,
    dir: tempfile::TempDir,
    mariadbd: PathBuf,
    /// The watchdog shell; the server is its child.
    watchdog: Mutex<Option<Child>>,
}

const NOT_FOUND: &str = "MariaDB not found: apt-get install -y mariadb-server";

/// Settings that keep a test server small and quick to start; durability is not needed.
const SERVER_ARGS: &[&str] = &[
    "--bind-address=127.0.0.1",
    "--skip-networking=0",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=2",
    "--skip-innodb-doublewrite",
    "--performance-schema=OFF",
    "--skip-log-bin",
    "--max-connections=1000",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_unicode_ci",
];

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
            .into_iter()
            .map(PathBuf::from),
    );
    let dirs: Vec<PathBuf> = dirs.collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

include!("watchdog.rs");

/// An initialised data directory to copy: `mariadb-install-db` takes seconds on a busy machine
/// (it bootstraps the system tables with fsyncs), a copy a few milliseconds. Made once per
/// MariaDB build in Cargo's temp dir for integration tests, and shared by test processes: it is
/// built aside and renamed into place, so a reader only ever sees a complete one.
fn template(mariadbd: &Path) -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let base = option_env!("CARGO_TARGET_TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let meta = std::fs::metadata(mariadbd).expect(NOT_FOUND);
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let ready = base.join(format!("mariadb-template-v1-{}-{mtime}", meta.len()));
            if ready.join("data").is_dir() {
                return ready;
            }
            std::fs::create_dir_all(&base).expect("temp dir");
            let building = tempfile::Builder::new()
                .prefix("mariadb-template-building-")
                .tempdir_in(&base)
                .expect("temp dir");
            install(&building.path().join("data"));
            let building = building.keep();
            if std::fs::rename(&building, &ready).is_err() {
                // Another test process got there first.
                let _ = std::fs::remove_dir_all(&building);
                assert!(
                    ready.join("data").is_dir(),
                    "no MariaDB template at {ready:?}"
                );
            }
            ready
        })
        .clone()
}

fn install(data: &Path) {
    let install = find(&["mariadb-install-db", "mysql_install_db"]).expect(NOT_FOUND);
    let mut cmd = Command::new(&install);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg("--skip-name-resolve")
        .arg("--innodb-buffer-pool-size=32M")
        .arg("--innodb-log-file-size=8M");
    if running_as_root() {
        cmd.arg("--user=root");
    }
    let out = cmd.output().expect("mariadb-install-db runs");
    assert!(
        out.status.success(),
        "mariadb-install-db failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl MariaDb {
    /// One server for the whole test binary, started on first use.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(MariaDb::start)
    }

    /// Creates a data directory and starts a server on a free port; returns once it accepts
    /// connections.
    pub fn start() -> MariaDb {
        let mariadbd = find(&["mariadbd", "mysqld"]).expect(NOT_FOUND);
        let template = template(&mariadbd);
        let dir = tempfile::Builder::new()
            .prefix("mariadb-test-")
            .tempdir()
            .expect("temp dir");
        let status = Command::new("cp")
            .arg("-R")
            .arg(template.join("data"))
            .arg(dir.path().join("data"))
            .status()
            .expect("cp runs");
        assert!(status.success(), "cannot copy the MariaDB data directory");
        let server = MariaDb {
            port: free_port(),
            dir,
            mariadbd,
            watchdog: Mutex::new(None),
        };
        server.launch();
        server
    }

    /// `mysql://root@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database on this server.
    pub async fn create_database(&self, name: &str) {
        let mut conn = MySqlConnection::connect(&self.url("mysql"))
            .await
            .expect("connect to the test MariaDB");
        conn.execute(format!("CREATE DATABASE `{name}`").as_str())
            .await
            .expect("CREATE DATABASE");
        conn.close().await.ok();
    }

    /// A fresh database with a unique name; returns its URL.
    pub async fn fresh_database(&self, prefix: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}_{}_{n}", std::process::id());
        self.create_database(&name).await;
        self.url(&name)
    }

    /// Kills the server (like a crash) and waits until it is gone.
    pub fn stop(&self) {
        let child = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = child {
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
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&self) {
        self.stop();
        self.launch();
    }

    fn launch(&self) {
        let tmp = self.dir.path();
        let _ = std::fs::remove_file(tmp.join("server.pid"));
        let mut server = vec![
            sh_quote(&self.mariadbd),
            "--no-defaults".to_owned(),
            format!("--datadir={}", sh_quote(&tmp.join("data"))),
            format!("--socket={}", sh_quote(&tmp.join("sock"))),
            format!("--pid-file={}", sh_quote(&tmp.join("mariadbd.pid"))),
            format!("--log-error={}", sh_quote(&tmp.join("error.log"))),
            format!("--port={}", self.port),
        ];
        server.extend(SERVER_ARGS.iter().map(|s| s.to_string()));
        if running_as_root() {
            server.push("--user=root".to_owned());
        }
        let child = spawn_watched(&server.join(" "), &tmp.join("server.pid"), tmp);
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready();
    }

    /// Waits until the server sends its handshake (protocol 10) on a new connection.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.greets() {
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
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                panic!(
                    "MariaDB did not start on port {} ({}):\n{log}",
                    self.port,
                    if exited { "it exited" } else { "timed out" }
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn greets(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut head = [0u8; 5];
        s.read_exact(&mut head).is_ok() && head[4] == 10
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}
