//! The harness: `spawn_app()` starts the real app on a free port with its own data directory and
//! a clock the test can move; `SmtpSink` runs a real SMTP server (aiosmtpd). Tests talk HTTP to
//! the app the way a client does.
#![allow(dead_code)]
use mailcode::app::{start, Running};
use mailcode::clock::ManualClock;
use mailcode::config::Settings;
use mailcode::policy::Policy;
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct TestApp {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
    running: Option<Running>,
    /// Mails already read, so that each read returns the newest mail not read yet.
    seen: Seen,
}

pub type Seen = std::sync::Mutex<std::collections::HashSet<PathBuf>>;

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Which stores the black-box suite runs on (`MAILCODE_TEST_BACKEND`): the whole suite runs in
/// each configuration, each test isolated (its own data dir, Redis key prefix, database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite only (the default).
    Embedded,
    /// Redis for sessions, codes, limits and the mail queue; SQLite for users.
    Redis,
    /// Redis, and MariaDB for users.
    RedisMariaDb,
    /// PostgreSQL for everything: users, sessions, codes, limits and the mail queue.
    Postgres,
    /// Redis, and PostgreSQL for users.
    RedisPostgres,
    /// A Redis Cluster of three masters for sessions, codes, limits and mail; SQLite for users.
    /// Opt-in, not in `scripts/test` yet: `codes::the_store_holds_no_raw_session_id` reads Redis
    /// through a single-node client, which cannot open the cluster's list of node URLs.
    RedisCluster,
}

pub fn backend() -> Backend {
    match std::env::var("MAILCODE_TEST_BACKEND").as_deref() {
        Ok("redis") => Backend::Redis,
        Ok("redis-mariadb") => Backend::RedisMariaDb,
        Ok("postgres") => Backend::Postgres,
        Ok("redis-postgres") => Backend::RedisPostgres,
        Ok("redis-cluster") => Backend::RedisCluster,
        Ok("embedded") | Err(_) => Backend::Embedded,
        Ok(other) => {
            panic!("MAILCODE_TEST_BACKEND={other:?}: use embedded, redis, redis-mariadb, postgres, redis-postgres or redis-cluster")
        }
    }
}

#[path = "../support/redis_cluster.rs"]
mod redis_cluster;

pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings::for_data_dir(dir.path().join("data"));
    if backend() == Backend::RedisCluster {
        settings.redis_url = Some(redis_cluster::RedisCluster::shared().url().into());
        settings.redis_prefix = format!("{}:", unique("t"));
    } else if ![Backend::Embedded, Backend::Postgres].contains(&backend()) {
        settings.redis_url = Some(crate::redis_server::RedisServer::shared().url().into());
        settings.redis_prefix = format!("{}:", unique("t"));
    }
    if backend() == Backend::RedisMariaDb {
        settings.database_url = crate::mariadb_server::MariaDb::shared()
            .fresh_database("api")
            .await
            .into();
    }
    if [Backend::Postgres, Backend::RedisPostgres].contains(&backend()) {
        settings.database_url = crate::postgres_server::Postgres::shared()
            .fresh_database("api")
            .await
            .into();
    }
    configure(&mut settings);
    let clock = ManualClock::new();
    let running = start(&settings, clock.clone(), Policy::default())
        .await
        .expect("app starts");
    TestApp {
        base: format!("http://{}", running.addr),
        clock,
        dir,
        settings,
        running: Some(running),
        seen: Seen::default(),
    }
}

/// A response as a test reads it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
    pub fn msg(&self) -> &str {
        self.body["msg"].as_str().unwrap_or("")
    }
    pub fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    /// The session id from Set-Cookie, if one was set (and not cleared).
    pub fn session_cookie(&self) -> Option<String> {
        let c = self.set_cookie()?;
        let first = c.split(';').next()?;
        let (_, v) = first.split_once('=')?;
        (!v.is_empty()).then(|| v.to_owned())
    }
    #[track_caller]
    pub fn expect(self, status: u16, code: &str) -> Self {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "unexpected answer: {:?}",
            self.body
        );
        self
    }
}

pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// A browser-like client: keeps cookies.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

/// A client that keeps no cookies at all.
pub fn bare() -> Client {
    Client::builder().build().expect("client")
}

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, c: &Client, path: &str, body: Value) -> Answer {
        answer(
            c.post(self.url(path))
                .json(&body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn post_bearer(&self, c: &Client, path: &str, token: &str, body: Value) -> Answer {
        answer(
            c.post(self.url(path))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn get(&self, c: &Client, path: &str) -> Answer {
        answer(c.get(self.url(path)).send().await.expect("request")).await
    }

    pub async fn get_bearer(&self, c: &Client, path: &str, token: &str) -> Answer {
        answer(
            c.get(self.url(path))
                .bearer_auth(token)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn get_with_cookie(&self, path: &str, sid: &str) -> Answer {
        answer(
            bare()
                .get(self.url(path))
                .header("cookie", format!("mailcode_sid={sid}"))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn request_code(&self, c: &Client, purpose_path: &str, email: &str) -> Answer {
        self.post(c, purpose_path, json!({ "email": email })).await
    }

    pub fn outbox(&self) -> PathBuf {
        self.settings.data_dir.join("outbox")
    }

    /// The code of the newest mail to `email` in the development outbox, waiting for the worker.
    pub async fn read_code(&self, email: &str) -> String {
        read_code_from(&self.outbox(), email, "json", &self.seen).await
    }

    /// Moves the app's clock.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d)
    }

    /// Registers a user through the API (code, then register) with a fresh browser; returns it
    /// signed in.
    pub async fn register(&self, username: &str, email: &str) -> Client {
        let c = browser();
        self.request_code(&c, "/api/register/email-code", email)
            .await
            .expect(200, "CODE_SENT");
        let code = self.read_code(email).await;
        self.post(
            &c,
            "/api/register",
            json!({"username": username, "password": PASSWORD, "email": email, "code": code}),
        )
        .await
        .expect(201, "REGISTERED");
        // Further codes for this address need the cooldown to have passed.
        self.advance(Duration::from_secs(61));
        c
    }

    /// The seed's flow: a login code, then username + password + email + code.
    /// Works with a cookie-keeping client and with a bare one (the cookie is then sent by hand).
    pub async fn sign_in(&self, c: &Client, username: &str, email: &str) -> Answer {
        let sent = self
            .request_code(c, "/api/login/email-code", email)
            .await
            .expect(200, "CODE_SENT");
        let code = self.read_code(email).await;
        let mut req = c.post(self.url("/api/login/get-token")).json(
            &json!({"username": username, "password": PASSWORD, "email": email, "code": code}),
        );
        if let Some(sid) = sent.session_cookie() {
            req = req.header("cookie", format!("mailcode_sid={sid}"));
        }
        answer(req.send().await.expect("request")).await
    }

    /// Polls the code's delivery status until it reads `want` (at most ~10 s); returns the last
    /// state seen.
    pub async fn wait_for_delivery(&self, c: &Client, want: &str) -> String {
        let mut delivery = String::new();
        for _ in 0..200 {
            let st = self
                .get(c, "/api/login/email-code/status")
                .await
                .expect(200, "OK");
            delivery = st.body["data"]["delivery"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if delivery == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        delivery
    }

    /// Stops the app (graceful) and starts it again on the same data directory.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let mut settings = self.settings.clone();
        settings.listen = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("addr");
        let running = start(&settings, self.clock.clone(), Policy::default())
            .await
            .expect("app restarts");
        self.running = Some(running);
    }

    /// The running app's use cases, for what only an operator does (disable a user).
    pub fn core(&self) -> &Arc<mailcode::flows::Core> {
        &self.running.as_ref().expect("running").core
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Waits for a mail to `email` among the files of `dir` with extension `ext` and returns the
/// six-digit code in its subject.
pub async fn read_code_from(dir: &Path, email: &str, ext: &str, seen: &Seen) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((path, code)) = newest_code(dir, email, ext, seen) {
            if let Ok(mut s) = seen.lock() {
                s.insert(path);
            }
            return code;
        }
        assert!(
            Instant::now() < deadline,
            "no mail with a code to {email} in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn newest_code(dir: &Path, email: &str, ext: &str, seen: &Seen) -> Option<(PathBuf, String)> {
    let mut best: Option<(std::time::SystemTime, PathBuf, String)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        if seen.lock().map(|s| s.contains(&path)).unwrap_or(false) {
            continue;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let to_matches = if ext == "json" {
            serde_json::from_str::<Value>(&text).ok()?["to"] == email
        } else {
            text.lines()
                .any(|l| l.to_ascii_lowercase().starts_with("to:") && l.contains(email))
        };
        if !to_matches {
            continue;
        }
        let subject = if ext == "json" {
            serde_json::from_str::<Value>(&text).ok()?["subject"]
                .as_str()?
                .to_owned()
        } else {
            text.lines().find(|l| l.starts_with("Subject:"))?.to_owned()
        };
        let Some(code) = subject
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .map(str::to_owned)
        else {
            continue;
        };
        let modified = entry.metadata().ok()?.modified().ok()?;
        if best.as_ref().is_none_or(|(t, _, _)| modified > *t) {
            best = Some((modified, path, code));
        }
    }
    best.map(|(_, p, c)| (p, c))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A real SMTP server (aiosmtpd) on a loopback port, writing each message to a directory.
pub struct SmtpSink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    pub fn start_on(port: u16) -> SmtpSink {
        let python = "/usr/bin/python3";
        let ok = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "the SMTP test server needs Debian's aiosmtpd: apt-get install -y python3 python3-aiosmtpd");
        let dir = tempfile::tempdir().expect("temp dir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let child = Command::new(python)
            .arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the SMTP sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the SMTP sink did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink { port, dir, child }
    }

    pub fn start() -> SmtpSink {
        Self::start_on(free_port())
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// How many SMTP connections clients opened so far (the sink logs each `EHLO`).
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("connections"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// How many messages arrived so far.
    pub fn messages(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("eml"))
            .count()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &hex(rand_bytes())[..8])
}

fn rand_bytes() -> [u8; 8] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ((nanos as u64) ^ (n.wrapping_mul(0x9E37_79B9_7F4A_7C15))).to_le_bytes()
}

fn hex(b: [u8; 8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
