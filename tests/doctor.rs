//! `mailcode doctor` against real, deliberately misconfigured mailcode processes (SPEC §4): it
//! finds each misconfiguration, names the fix, exits 1; it is silent (no `✗`) and exits 0 on a
//! correct deployment; a usage error exits 2.
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A mailcode process on a free loopback port with its own data directory.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(flags: &[&str]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(flags)
        .current_dir(dir.path())
        .env_remove("MAILCODE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mailcode");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mailcode did not start");
        thread::sleep(Duration::from_millis(30));
    }
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        data: dir.path().join("data"),
        _dir: dir,
    }
}

struct Report {
    status: i32,
    out: String,
}

impl Report {
    #[track_caller]
    fn expect(&self, status: i32) -> &Self {
        assert_eq!(self.status, status, "exit status; output:\n{}", self.out);
        self
    }
    #[track_caller]
    fn says(&self, text: &str) -> &Self {
        assert!(self.out.contains(text), "{text:?} not in:\n{}", self.out);
        self
    }
    #[track_caller]
    fn no_problem(&self) -> &Self {
        assert!(!self.out.contains('✗'), "a problem reported:\n{}", self.out);
        self.says("no problems found")
    }
}

fn doctor(args: &[&str]) -> Report {
    let out = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("doctor")
        .args(args)
        .env_remove("MAILCODE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run mailcode doctor");
    Report {
        status: out.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A reverse proxy on a free port that adds `X-Forwarded-Proto: https` to every request for
/// `upstream`, one request per connection: the misconfigured proxy of the classic stack.
fn https_claiming_proxy(upstream: &str) -> String {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
    let port = listener.local_addr().expect("proxy address").port();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            thread::spawn(move || relay(client, &upstream));
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// A load balancer on a free port that sends each connection to the next of `upstreams` in
/// turn, one request per connection, adding nothing else.
fn round_robin_proxy(upstreams: &[&str]) -> String {
    let upstreams: Vec<String> = upstreams
        .iter()
        .map(|u| u.trim_start_matches("http://").to_owned())
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
    let port = listener.local_addr().expect("proxy address").port();
    thread::spawn(move || {
        for (n, client) in listener.incoming().flatten().enumerate() {
            let upstream = upstreams[n % upstreams.len()].clone();
            thread::spawn(move || forward(client, &upstream, b""));
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn relay(client: TcpStream, upstream: &str) -> io::Result<()> {
    forward(client, upstream, b"X-Forwarded-Proto: https\r\n")
}

/// Relays one request to `upstream`, with `extra` header lines after the request line.
fn forward(mut client: TcpStream, upstream: &str, extra: &[u8]) -> io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let mut request_line = Vec::new();
    let mut byte = [0u8; 1];
    while !request_line.ends_with(b"\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        request_line.push(byte[0]);
    }
    server.write_all(&request_line)?;
    server.write_all(extra)?;
    server.write_all(b"Connection: close\r\n")?;
    let (mut from_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    thread::spawn(move || {
        let _ = io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut server, &mut client);
    client.shutdown(Shutdown::Both)
}

#[test]
fn a_correct_deployment_has_no_problem() {
    let s = start(&[]);
    doctor(&[&s.base])
        .expect(0)
        .no_problem()
        .says("✓ reachable")
        .says("✓ session cookie: mailcode_sid; HttpOnly; SameSite=Lax; not Secure")
        .says("✓ cookie round trip")
        .says("✓ one secret: the deployment's (fingerprint ")
        .says("! mail goes to the development outbox");
}

/// The deployment's secret was rotated while an instance kept running with the old one.
#[test]
fn an_instance_whose_secret_is_not_the_deployments_is_a_problem() {
    let s = start(&[]);
    doctor(&[&s.base]).expect(0);
    let other = s.data.join("new-secret");
    std::fs::write(&other, "ab".repeat(32)).expect("a new secret file");
    let rotated = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--data-dir")
        .arg(&s.data)
        .arg("--secret-file")
        .arg(&other)
        .args(["secret", "rotate"])
        .env_remove("MAILCODE_CONFIG")
        .output()
        .expect("run mailcode secret rotate");
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    doctor(&[&s.base, "--email", "rotated@example.com"])
        .expect(1)
        .says("✗ an instance's server secret (fingerprint ")
        .says("is not the deployment's")
        .says("401 CODE_INVALID")
        .says("MAILCODE_SECRET_FILE")
        .says("mailcode secret rotate");
}

/// Two instances behind one load balancer, each with its own data directory (so each its own
/// secret and its own record of it): each is content with itself, and only the answers side
/// by side show two secrets.
#[test]
fn instances_with_different_secrets_behind_one_url_are_a_problem() {
    let (a, b) = (start(&[]), start(&[]));
    let proxy = round_robin_proxy(&[&a.base, &b.base]);
    doctor(&[&proxy])
        .expect(1)
        .says("✗ the instances behind this URL use different server secrets")
        .says("MAILCODE_SECRET_FILE");
}

#[test]
fn a_correct_deployment_for_a_page_on_another_origin_has_no_problem() {
    let s = start(&["--cors-origin", "http://127.0.0.1:5173"]);
    doctor(&[&s.base, "--origin", "http://127.0.0.1:5173"])
        .expect(0)
        .no_problem()
        .says("✓ CORS with credentials for http://127.0.0.1:5173")
        .says("credentials: 'include'");
}

#[test]
fn an_origin_not_allowed_names_the_flag() {
    let s = start(&[]);
    doctor(&[&s.base, "--origin", "http://127.0.0.1:5999"])
        .expect(1)
        .says("✗ code request from http://127.0.0.1:5999 rejected: 403 ORIGIN_REJECTED")
        .says("--cors-origin http://127.0.0.1:5999")
        .says("1 problem found");
}

#[test]
fn same_site_none_over_plain_http_is_a_dropped_secure_cookie() {
    let s = start(&["--cookie-same-site", "none"]);
    doctor(&[&s.base])
        .expect(1)
        .says("✗ the session cookie __Host-mailcode_sid is Secure but")
        .says("is plain http://: the browser drops it")
        .says("`--cookie-same-site none` forces Secure");
}

#[test]
fn a_proxy_claiming_https_for_a_plain_http_site_is_explained() {
    let s = start(&["--trust-proxy", "127.0.0.1/32"]);
    let proxy = https_claiming_proxy(&s.base);
    doctor(&[&proxy])
        .expect(1)
        // mailcode believes its own origin is https://…, so its own page's requests are refused…
        .says("✗ code request from the URL's own origin")
        .says("X-Forwarded-Proto: https")
        // …and the cookie it sets is Secure, which a browser drops over http://.
        .says("is plain http://: the browser drops it")
        .says("--trust-proxy");
}

#[test]
fn a_page_on_another_site_with_same_site_lax_is_reported() {
    let s = start(&["--cors-origin", "http://spa.test:8080"]);
    doctor(&[&s.base, "--origin", "http://spa.test:8080"])
        .expect(1)
        .says("✗ the page on http://spa.test:8080 is on another site")
        .says("SameSite=Lax cookie is not sent")
        .says("--cookie-same-site none")
        .says("✓ CORS with credentials for http://spa.test:8080");
}

#[test]
fn the_report_speaks_chinese() {
    let s = start(&[]);
    doctor(&[&s.base, "--lang", "zh"])
        .expect(0)
        .says("✓ 可访问")
        .says("未发现问题");
    doctor(&[
        &s.base,
        "--lang",
        "zh",
        "--origin",
        "http://127.0.0.1:5999",
        "--email",
        "zh@example.com",
    ])
    .expect(1)
    .says("被拒绝")
    .says("修复：用 `--cors-origin http://127.0.0.1:5999`")
    .says("发现 1 个问题");
}

#[test]
fn a_rate_limited_probe_is_a_warning_not_a_problem() {
    let s = start(&[]);
    doctor(&[&s.base]).expect(0);
    // A second code for the same address within 60 s is refused, as it should be.
    doctor(&[&s.base])
        .expect(0)
        .says("! code request rate-limited: 429 RATE_LIMITED")
        .says("--email")
        .says("the cookie checks could not run");
}

#[test]
fn an_unreachable_url_is_a_problem() {
    let port = free_port();
    doctor(&[&format!("http://127.0.0.1:{port}")])
        .expect(1)
        .says(&format!("✗ cannot reach http://127.0.0.1:{port}/healthz"))
        .says("--listen")
        .says("1 problem found");
}

#[test]
fn something_else_than_mailcode_is_a_problem() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("port");
    let port = listener.local_addr().expect("address").port();
    thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found",
            );
        }
    });
    doctor(&[&format!("http://127.0.0.1:{port}")])
        .expect(1)
        .says("not mailcode's {code, msg, data}");
}

#[test]
fn usage_errors_exit_2() {
    doctor(&["not a url"]).expect(2);
    doctor(&["ftp://127.0.0.1:3000"]).expect(2);
    doctor(&[
        "http://127.0.0.1:3000",
        "--origin",
        "http://127.0.0.1:5173/app",
    ])
    .expect(2);
    doctor(&["http://127.0.0.1:3000", "--lang", "fr"]).expect(2);
    doctor(&["http://127.0.0.1:3000", "--email", "nobody"]).expect(2);
}
