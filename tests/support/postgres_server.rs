//! A real, throwaway PostgreSQL server for tests: its own data directory in a temp dir, its own
//! port on 127.0.0.1, the `postgres` superuser trusted without a password. `Postgres::shared()` is
//! one server for a whole test binary (each test makes its own database on it);
//! `Postgres::start()` gives a private one that a test may stop and restart.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, `initdb` and `postgres` run as
//! the `postgres` user that Debian's package creates (through `setpriv`, which execs in place, so
//! the pid the watchdog knows is the server's own). The server is spawned behind the `sh`
//! watchdog of `watchdog.rs`, which kills it once the test process is gone.
//!
//! Include it with `#[path = "../support/postgres_server.rs"] mod postgres_server;`.
#![allow(dead_code)]
use sqlx::{Connection, Executor, PgConnection};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The watchdog shell; the server is its child.
    watchdog: Mutex<Option<Child>>,
}

const NOT_FOUND: &str = "PostgreSQL not found: apt-get install -y postgresql";

/// Settings that keep a test server small and quick. A stop is an immediate shutdown, like a
/// crash, and the restart recovers from the WAL: each commit's WAL must reach the kernel before
/// the commit returns (`synchronous_commit` stays on), while `fsync=off` only skips the flush to
/// disk, which no test needs since the machine does not go down.
const SERVER_ARGS: &[&str] = &[
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c full_page_writes=off",
    "-c max_connections=500",
    "-c shared_buffers=32MB",
    "-c log_min_messages=warning",
];

/// The directory holding `initdb`, `postgres` and `pg_isready`: Debian keeps them out of PATH,
/// under /usr/lib/postgresql/<major>/bin (15 on Debian 12; the newest one present wins).
fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_server = |d: &Path| d.join("postgres").is_file() && d.join("initdb").is_file();
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|d| has_server(d))
            .collect();
        versions.sort_by_key(|d| {
            d.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        let path = std::env::var_os("PATH").unwrap_or_default();
        versions
            .pop()
            .or_else(|| std::env::split_paths(&path).find(|d| has_server(d)))
            .expect(NOT_FOUND)
    })
    .clone()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` as the user PostgreSQL runs as: ourselves, or `postgres` when we are root.
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Hands `path` (recursively) to the `postgres` user when we are root.
fn give_to_server_user(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("chown runs");
        assert!(
            status.success(),
            "cannot give {path:?} to the postgres user (Debian's postgresql package creates it: \
             apt-get install -y postgresql)"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

include!("watchdog.rs");

/// An initialised data directory to copy: `initdb` takes seconds on a busy machine, a copy a few
/// milliseconds. Made once per PostgreSQL build in the system's temp dir (which the `postgres`
/// user can reach, unlike a checkout under a private home) and shared by test processes: built
/// aside and renamed into place, so a reader only ever sees a complete one.
fn template(bin: &Path) -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let base = std::env::temp_dir();
            let meta = std::fs::metadata(bin.join("postgres")).expect(NOT_FOUND);
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let ready = base.join(format!("postgres-template-v1-{}-{mtime}", meta.len()));
            if ready.join("data").is_dir() {
                return ready;
            }
            std::fs::create_dir_all(&base).expect("temp dir");
            let building = tempfile::Builder::new()
                .prefix("postgres-template-building-")
                .tempdir_in(&base)
                .expect("temp dir");
            init(bin, building.path());
            let building = building.keep();
            if std::fs::rename(&building, &ready).is_err() {
                // Another test process got there first.
                let _ = std::fs::remove_dir_all(&building);
                assert!(
                    ready.join("data").is_dir(),
                    "no PostgreSQL template at {ready:?}"
                );
            }
            ready
        })
        .clone()
}

/// `initdb` into `dir/data`: superuser `postgres`, trusted on loopback (the server listens
/// nowhere else), UTF-8 without a locale's collation rules.
fn init(bin: &Path, dir: &Path) {
    give_to_server_user(dir);
    let out = as_server_user(&bin.join("initdb"))
        .arg("--pgdata")
        .arg(dir.join("data"))
        .args([
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .expect("initdb runs");
    assert!(
        out.status.success(),
        "initdb failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// One server for the whole test binary, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// Creates a data directory and starts a server on a free port; returns once it accepts
    /// connections.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let template = template(&bin);
        let dir = tempfile::Builder::new()
            .prefix("postgres-test-")
            .tempdir()
            .expect("temp dir");
        // `-a`: the files stay the postgres user's, with the modes the server insists on.
        let status = Command::new("cp")
            .arg("-a")
            .arg(template.join("data"))
            .arg(dir.path().join("data"))
            .status()
            .expect("cp runs");
        assert!(
            status.success(),
            "cannot copy the PostgreSQL data directory"
        );
        give_to_server_user(dir.path());
        let server = Postgres {
            port: free_port(),
            dir,
            bin,
            watchdog: Mutex::new(None),
        };
        server.launch();
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database on this server.
    pub async fn create_database(&self, name: &str) {
        let mut conn = PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to the test PostgreSQL");
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
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

    /// Stops the server at once, by its pid (SIGQUIT: PostgreSQL's immediate shutdown, which
    /// ends every backend and skips the checkpoint, as a crash would), and waits until it is gone.
    pub fn stop(&self) {
        let child = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = child {
            match std::fs::read_to_string(self.dir.path().join("server.pid")) {
                Ok(pid) => {
                    let _ = Command::new("kill").arg("-QUIT").arg(pid.trim()).status();
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
        let mut server = Vec::new();
        if running_as_root() {
            server.push("setpriv --reuid=postgres --regid=postgres --init-groups".to_owned());
        }
        server.extend([
            sh_quote(&self.bin.join("postgres")),
            format!("-D {}", sh_quote(&tmp.join("data"))),
            // The socket directory: the server's own, not /var/run/postgresql.
            format!("-c unix_socket_directories={}", sh_quote(tmp)),
            format!("-p {}", self.port),
        ]);
        server.extend(SERVER_ARGS.iter().map(|s| s.to_string()));
        server.push(format!("2>> {}", sh_quote(&tmp.join("server.log"))));
        let child = spawn_watched(&server.join(" "), &tmp.join("server.pid"), tmp);
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready();
    }

    /// Waits until the server accepts connections (`pg_isready`: past recovery, not starting up).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.accepts() {
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
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                panic!(
                    "PostgreSQL did not start on port {} ({}):\n{log}",
                    self.port,
                    if exited { "it exited" } else { "timed out" }
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn accepts(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-t", "2", "-U", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
