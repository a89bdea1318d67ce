//! No secret is ever printed (SPEC §3 Robustness): every configuration path that takes a URL
//! with credentials is driven with a marker password, and a whole sign-up and sign-in runs under
//! `RUST_LOG=trace`; the marker, the passwords, the server secret, the codes, the session ids and
//! the tokens appear nowhere in the process's stdout or stderr.
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Never a real password: what a test looks for in the output.
const MARKER: &str = "Pw4Marker-q7Zx";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A mailcode process whose stdout and stderr go to one file.
struct Proc {
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(args: &[String], env: &[(&str, String)], config: Option<&str>) -> Proc {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(text) = config {
            std::fs::write(dir.path().join("mailcode.toml"), text).expect("config file");
        }
        let log = dir.path().join("output.log");
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailcode"));
        cmd.args(args)
            .current_dir(dir.path())
            .env_remove("MAILCODE_CONFIG")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start mailcode");
        Proc { child, log, dir }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit by itself; its exit status.
    fn exits(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "mailcode still running after {within:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

#[track_caller]
fn assert_absent(output: &str, secrets: &[(&str, &str)]) {
    for (what, value) in secrets {
        assert!(!value.is_empty(), "{what} is empty: the test lost it");
        assert!(
            !output.contains(value),
            "the {what} was printed:\n{}",
            output
                .lines()
                .filter(|l| l.contains(value))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// One start that fails because of a URL with a password: it exits non-zero, names the setting,
/// shows the URL redacted if at all, and never the password.
#[track_caller]
fn refused(args: &[&str], env: &[(&str, String)], config: Option<&str>, names: &str) {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--listen".into(), format!("127.0.0.1:{}", free_port())]);
    let mut p = Proc::spawn(&args, env, config);
    let status = p.exits(Duration::from_secs(30));
    let out = p.output();
    assert_ne!(status, 0, "started although misconfigured:\n{out}");
    assert!(out.contains(names), "{names:?} not named in:\n{out}");
    assert_absent(&out, &[("marker password", MARKER)]);
}

#[test]
fn a_password_in_a_url_never_prints_on_any_configuration_path() {
    let closed = free_port();
    let mysql = format!("mysql://mailcode:{MARKER}@127.0.0.1:{closed}/mailcode");
    let redis = format!("redis://:{MARKER}@127.0.0.1:{closed}/0");
    // Flags.
    refused(
        &["--database-url", &format!("postgresql://u:{MARKER}@db/x")],
        &[],
        None,
        "--database-url",
    );
    refused(
        &["--database-url", &format!("bogus:{MARKER}")],
        &[],
        None,
        "--database-url",
    );
    refused(&["--database-url", &mysql], &[], None, "MySQL");
    refused(&["--redis-url", &redis], &[], None, "Redis");
    refused(
        &[
            "--redis-url",
            &format!("redis+sentinel://:{MARKER}@127.0.0.1:{closed}/mymaster"),
        ],
        &[],
        None,
        "Redis",
    );
    refused(
        &["--redis-url", &format!("memcached://:{MARKER}@127.0.0.1/")],
        &[],
        None,
        "--redis-url",
    );
    refused(
        &["--smtp-url", &format!("pop3://u:{MARKER}@127.0.0.1/")],
        &[],
        None,
        "--smtp-url",
    );
    // Environment variables, with another setting wrong so the start fails.
    refused(
        &["--header-timeout", "soon"],
        &[
            ("MAILCODE_DATABASE_URL", mysql.clone()),
            ("MAILCODE_REDIS_URL", redis.clone()),
        ],
        None,
        "--header-timeout",
    );
    refused(
        &[],
        &[("MAILCODE_DATABASE_URL", mysql.clone())],
        None,
        "MySQL",
    );
    // The configuration file: a bad value elsewhere, and a syntax error on the URL's own line.
    refused(
        &[],
        &[],
        Some(&format!(
            "database-url = \"{mysql}\"\nsmtp-url = \"smtp://u:{MARKER}@127.0.0.1:{closed}\"\nmax-connections = \"many\"\n"
        )),
        "mailcode.toml",
    );
    refused(
        &[],
        &[],
        Some(&format!(
            "database-url = \"{mysql}\" # \"\nredis-url = {redis}\n"
        )),
        "mailcode.toml",
    );
    refused(
        &[],
        &[],
        Some(&format!("database-url = \"{mysql}\"\n")),
        "MySQL",
    );
    // Help shows no value taken from the environment.
    let mut help = Proc::spawn(
        &["--help".into()],
        &[
            ("MAILCODE_DATABASE_URL", mysql.clone()),
            ("MAILCODE_SMTP_URL", format!("smtp://u:{MARKER}@h")),
        ],
        None,
    );
    assert_eq!(help.exits(Duration::from_secs(10)), 0);
    assert!(help.output().contains("--database-url"));
    assert_absent(&help.output(), &[("marker password", MARKER)]);
}

struct Flow {
    http: reqwest::Client,
    base: String,
    outbox: PathBuf,
}

impl Flow {
    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value, String) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .and_then(|c| c.split_once('='))
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body, cookie)
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> u16 {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request").status().as_u16()
    }

    /// The code in the newest development-outbox mail to `email` not read before.
    async fn code(&self, email: &str, seen: &mut Vec<PathBuf>) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((path, code)) = newest_code(&self.outbox, email, seen) {
                seen.push(path);
                return code;
            }
            assert!(Instant::now() < deadline, "no mail to {email}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn newest_code(dir: &Path, email: &str, seen: &[PathBuf]) -> Option<(PathBuf, String)> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if seen.contains(&path) || path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let mail: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
        if mail["to"] != email {
            continue;
        }
        let code = mail["subject"]
            .as_str()?
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)?
            .to_owned();
        return Some((path, code));
    }
    None
}

fn wait_until_listening(port: u16, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mailcode did not start:\n{}",
            p.output()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[tokio::test]
async fn a_whole_sign_up_and_sign_in_under_trace_logging_prints_no_secret() {
    let port = free_port();
    let p = Proc::spawn(&["--listen".into(), format!("127.0.0.1:{port}")], &[], None);
    wait_until_listening(port, &p);
    let flow = Flow {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("client"),
        base: format!("http://127.0.0.1:{port}"),
        outbox: p.data_dir().join("outbox"),
    };
    let email = "carol@example.com";
    let password = format!("{MARKER}-account");
    let mut seen = Vec::new();
    let mut codes = Vec::new();

    // Register with a cookie session.
    let (s, _, pre_cookie) = flow
        .post("/api/register/email-code", None, json!({ "email": email }))
        .await;
    assert_eq!(s, 200);
    let code = flow.code(email, &mut seen).await;
    // A wrong code first: the refusal logs nothing of the code either.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, _, _) = flow
        .post(
            "/api/register",
            None,
            json!({"username": "carol", "password": password, "email": email, "code": wrong}),
        )
        .await;
    assert_eq!(s, 401);
    let (s, _, cookie) = flow
        .post(
            "/api/register",
            None,
            json!({"username": "carol", "password": password, "email": email, "code": code}),
        )
        .await;
    assert_eq!(s, 201);
    codes.push(code);
    assert_eq!(flow.get("/api/me", None).await, 200);

    // Sign in without cookies: a pre-login token, then a session token.
    let bare = Flow {
        http: reqwest::Client::new(),
        base: flow.base.clone(),
        outbox: flow.outbox.clone(),
    };
    let (s, sent, _) = bare
        .post(
            "/api/login/email-code",
            None,
            json!({ "email": email, "session": "token" }),
        )
        .await;
    assert_eq!(s, 200, "{sent}");
    let pre = sent["data"]["session_token"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let code = bare.code(email, &mut seen).await;
    let (s, done, _) = bare
        .post(
            "/api/login/get-token",
            Some(&pre),
            json!({"username": "carol", "password": password, "email": email, "code": code}),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    codes.push(code);
    let token = done["data"]["token"].as_str().unwrap_or("").to_owned();
    assert_eq!(bare.get("/api/me", Some(&token)).await, 200);
    let (s, _, _) = bare.post("/api/logout", Some(&token), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(bare.get("/api/me", Some(&token)).await, 401);

    let secret = std::fs::read_to_string(p.data_dir().join("secret")).expect("data/secret");
    let out = p.output();
    assert!(
        out.contains("TRACE") || out.contains("DEBUG"),
        "no trace or debug lines: was RUST_LOG=trace honoured?\n{out}"
    );
    let mut secrets = vec![
        ("password", password.as_str()),
        ("server secret", secret.trim()),
        ("pre-login session cookie", pre_cookie.as_str()),
        ("session cookie", cookie.as_str()),
        ("pre-login token", pre.as_str()),
        ("session token", token.as_str()),
    ];
    for c in &codes {
        secrets.push(("code", c.as_str()));
    }
    assert_absent(&out, &secrets);
}

#[tokio::test]
async fn a_mail_server_login_that_fails_prints_no_password() {
    // A real SMTP server (aiosmtpd) that offers no AUTH: the relay's login fails on every
    // attempt, and each failure is logged.
    let sink_port = free_port();
    let sink_dir = tempfile::tempdir().expect("temp dir");
    let _sink = Sink(
        Command::new("/usr/bin/python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py"))
            .args(["--port", &sink_port.to_string(), "--dir"])
            .arg(sink_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the SMTP test server needs Debian's aiosmtpd: apt-get install -y python3 python3-aiosmtpd"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", sink_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the SMTP sink did not start (apt-get install -y python3-aiosmtpd)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = free_port();
    let p = Proc::spawn(
        &[
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--smtp-url".into(),
            format!("smtp://mailer:{MARKER}@127.0.0.1:{}", sink_port),
        ],
        &[],
        None,
    );
    wait_until_listening(port, &p);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let resp = http
        .post(format!("{base}/api/login/email-code"))
        .json(&json!({ "email": "dave@example.com" }))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    // Readiness checks the relay too.
    let _ = http.get(format!("{base}/readyz")).send().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !p.output().contains("mail delivery failed") {
        assert!(
            Instant::now() < deadline,
            "no failed attempt logged:\n{}",
            p.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(p.output().contains("mailer:***@") || !p.output().contains("mailer:"));
    assert_absent(&p.output(), &[("SMTP password", MARKER)]);
}

struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn settings_in_debug_output_show_no_password() {
    let args = mailcode::config::ServeArgs {
        database_url: Some(format!("mysql://mc:{MARKER}@db:3306/mailcode").into()),
        redis_url: Some(format!("redis://:{MARKER}@redis:6379/0").into()),
        smtp_url: Some(format!("smtp://mailer:{MARKER}@smtp.example.com:587").into()),
        ..Default::default()
    };
    let debug = format!("{args:?} {args:#?}");
    assert!(debug.contains("mc:***@db"), "{debug}");
    assert_absent(&debug, &[("marker password", MARKER)]);
    let settings = mailcode::config::Settings::from_args(args).expect("valid settings");
    let debug = format!("{settings:?} {settings:#?}");
    assert!(debug.contains("mailer:***@smtp.example.com"), "{debug}");
    assert_absent(&debug, &[("marker password", MARKER)]);
}
