//! Sessions survive a restart and a `kill -9` of the process on the same data directory; SIGTERM
//! stops cleanly; the command line's `user disable` ends a user's sessions.
use crate::helpers::*;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn sessions_survive_a_restart() {
    let mut app = spawn_app().await;
    let c = app.register("rita", "rita@example.com").await;
    app.get(&c, "/api/me").await.expect(200, "OK");
    app.restart().await;
    app.get(&c, "/api/me").await.expect(200, "OK");
}

struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_binary(data: &std::path::Path, port: u16) -> Proc {
    spawn_binary_with(data, port, &[])
}

fn spawn_binary_with(data: &std::path::Path, port: u16, flags: &[&str]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .args(flags)
        .env_remove("MAILCODE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mailcode");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mailcode did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

fn cli(data: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailcode");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("mailcode output")
}

async fn sign_in_via(base: &str, outbox: &std::path::Path, user: &str, email: &str) -> String {
    let c = bare();
    let sent = answer(
        c.post(format!("{base}/api/login/email-code"))
            .json(&serde_json::json!({"email": email}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "CODE_SENT");
    let pre = sent.session_cookie().unwrap();
    let code = read_code_from(outbox, email, "json", &Seen::default()).await;
    let done = answer(
        c.post(format!("{base}/api/login/get-token"))
            .header("cookie", format!("mailcode_sid={pre}"))
            .json(&serde_json::json!({"username": user, "password": PASSWORD, "email": email, "code": code}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "LOGIN_SUCCESS");
    done.session_cookie().unwrap()
}

async fn me(base: &str, sid: &str) -> Answer {
    answer(
        bare()
            .get(format!("{base}/api/me"))
            .header("cookie", format!("mailcode_sid={sid}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn sessions_survive_kill_9_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = cli(
        &data,
        &["user", "add", "kurt", "kurt@example.com"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let mut p = spawn_binary(&data, port);
    let sid = sign_in_via(&p.base, &data.join("outbox"), "kurt", "kurt@example.com").await;
    me(&p.base, &sid).await.expect(200, "OK");
    // kill -9: no chance to flush anything.
    p.child.kill().expect("kill -9");
    let _ = p.child.wait();
    let mut p = spawn_binary(&data, port);
    me(&p.base, &sid).await.expect(200, "OK");
    // SIGTERM: a clean stop with status 0.
    let pid = p.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "mailcode did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// Runs `mailcode` on `data` expecting it to refuse to start: its exit status and standard
/// error, within 20 s.
fn refused_start(data: &std::path::Path, flags: &[&str]) -> (std::process::ExitStatus, String) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .args(flags)
        .env_remove("MAILCODE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailcode");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailcode started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

/// The embedded default on one data directory: started again with another secret file, the
/// database it left behind is bound to the first secret (its codes and queued mail), so the
/// start is refused with a message naming MAILCODE_SECRET_FILE, never the secret; after
/// `mailcode secret rotate` the new secret starts and the old one is refused in turn.
#[tokio::test]
async fn a_restart_with_another_secret_file_is_refused_unless_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = spawn_binary(&data, free_port());
    drop(p);
    let first = std::fs::read_to_string(data.join("secret")).expect("the generated secret");
    let other = dir.path().join("other-secret");
    let other_text = hex_secret(0x5a);
    std::fs::write(&other, &other_text).unwrap();
    let other_flag = other.to_str().unwrap();

    let (status, err) = refused_start(&data, &["--secret-file", other_flag]);
    assert!(!status.success(), "{status:?}");
    assert!(err.contains("MAILCODE_SECRET_FILE"), "{err}");
    assert!(err.contains("mailcode secret rotate"), "{err}");
    for secret in [first.trim(), other_text.as_str()] {
        assert!(!err.contains(secret), "the secret was printed: {err}");
    }

    let show = cli(&data, &["--secret-file", other_flag, "secret", "show"], "");
    assert_eq!(show.status.code(), Some(1));
    let out = String::from_utf8_lossy(&show.stdout);
    let fp = |hex_text: &str| {
        let bytes: [u8; 32] = hex::decode(hex_text.trim()).unwrap().try_into().unwrap();
        mailcode::crypto::Secret::from_bytes(bytes).fingerprint()
    };
    assert!(out.contains(&fp(&other_text)), "{out}");
    assert!(out.contains(&fp(&first)), "{out}");

    let rotate = cli(
        &data,
        &["--secret-file", other_flag, "secret", "rotate"],
        "",
    );
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    let out = String::from_utf8_lossy(&rotate.stdout);
    assert!(out.contains(&format!("now {}", fp(&other_text))), "{out}");
    assert!(out.contains("Codes issued under the old secret"), "{out}");
    for secret in [first.trim(), other_text.as_str()] {
        assert!(!out.contains(secret), "the secret was printed: {out}");
    }

    let p = spawn_binary_with(&data, free_port(), &["--secret-file", other_flag]);
    answer(
        bare()
            .get(format!("{}/readyz", p.base))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "OK");
    drop(p);
    let (status, err) = refused_start(&data, &[]);
    assert!(!status.success());
    assert!(err.contains("MAILCODE_SECRET_FILE"), "{err}");
}

fn hex_secret(byte: u8) -> String {
    hex::encode([byte; 32])
}

#[tokio::test]
async fn disabling_a_user_ends_their_live_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = cli(
        &data,
        &["user", "add", "lena", "lena@example.com"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = spawn_binary(&data, free_port());
    let sid = sign_in_via(&p.base, &data.join("outbox"), "lena", "lena@example.com").await;
    me(&p.base, &sid).await.expect(200, "OK");
    let out = cli(&data, &["sessions", "list", "lena"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let out = cli(&data, &["user", "disable", "lena"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ended 1 session"));
    me(&p.base, &sid).await.expect(401, "NOT_LOGGED_IN");
    // A password on the command line is refused as too common.
    let out = cli(
        &data,
        &["user", "add", "mo", "mo@example.com"],
        "password\n",
    );
    assert!(!out.status.success());
}

#[tokio::test]
async fn the_log_explains_a_code_submitted_without_its_session_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mailcode");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mailcode did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = serde_json::json!({"username": "nobody", "password": PASSWORD, "email": "n@example.com", "code": "123456"});
    for _ in 0..3 {
        answer(
            bare()
                .post(format!("http://127.0.0.1:{port}/api/login/get-token"))
                .header("origin", format!("http://127.0.0.1:{port}"))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
        .expect(401, "NO_SESSION");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let hints = text
        .lines()
        .filter(|l| l.contains("credentials: 'include'"))
        .count();
    assert_eq!(
        hints, 1,
        "one rate-limited hint, naming the client setting:\n{text}"
    );
}

/// mailcode serves HTTP on several threads, each with its own socket on the one address
/// (`SO_REUSEPORT`), yet a second instance started on an address in use is refused, as any
/// server's would be, instead of silently taking a share of the first one's connections.
#[tokio::test]
async fn a_second_instance_on_the_same_address_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let first = spawn_binary(a.path(), port);
    let out = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(b.path())
        .env_remove("MAILCODE_CONFIG")
        .output()
        .expect("run mailcode");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    // Every new connection still reaches the first instance.
    for _ in 0..16 {
        let r = answer(
            bare()
                .get(format!("{}/readyz", first.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        r.expect(200, "OK");
    }
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_setting() {
    for (args, setting) in [
        (vec!["--listen", "localhost"], "--listen"),
        (
            vec!["--cookie-same-site", "sometimes"],
            "--cookie-same-site",
        ),
        (vec!["--cors-origin", "*"], "--cors-origin"),
        (vec!["--trust-proxy", "10.0.0.0/99"], "--trust-proxy"),
        (vec!["--database-url", "oracle://x"], "--database-url"),
        (vec!["--http-threads", "0"], "--http-threads"),
        (vec!["--http-threads", "many"], "--http-threads"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mailcode"))
            .args(&args)
            .output()
            .expect("run mailcode");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(setting), "{args:?}: {err}");
    }
}

/// Flags win over `MAILCODE_*`, which win over `mailcode.toml`, which wins over the defaults.
#[tokio::test]
async fn settings_come_from_flags_then_env_then_mailcode_toml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mailcode.toml"),
        "cookie-same-site = \"sometimes\"\ndata-dir = \"from-toml\"\n",
    )
    .unwrap();
    let run = |env: Option<&str>, flag: Option<&str>, port: u16| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailcode"));
        cmd.current_dir(dir.path())
            .env_remove("MAILCODE_COOKIE_SAME_SITE")
            .env_remove("MAILCODE_DATA_DIR")
            .env_remove("MAILCODE_CONFIG")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(v) = env {
            cmd.env("MAILCODE_COOKIE_SAME_SITE", v);
        }
        if let Some(v) = flag {
            cmd.args(["--cookie-same-site", v]);
        }
        cmd
    };
    // The file's bad value is used, and refused, when nothing overrides it.
    let out = run(None, None, free_port()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--cookie-same-site") && err.contains("sometimes"),
        "{err}"
    );

    async fn same_site_of(mut cmd: Command, port: u16) -> String {
        let child = cmd.stderr(Stdio::null()).spawn().unwrap();
        let _p = Proc {
            child,
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mailcode did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = answer(
            bare()
                .post(format!("http://127.0.0.1:{port}/api/login/email-code"))
                // Both runs share the file's data directory: one address each.
                .json(&serde_json::json!({"email": format!("cfg{port}@example.com")}))
                .send()
                .await
                .unwrap(),
        )
        .await
        .expect(200, "CODE_SENT");
        a.set_cookie().unwrap_or_default()
    }
    let port = free_port();
    let cookie = same_site_of(run(Some("strict"), None, port), port).await;
    assert!(
        cookie.contains("SameSite=Strict"),
        "env over the file: {cookie}"
    );
    let port = free_port();
    let cookie = same_site_of(run(Some("strict"), Some("lax"), port), port).await;
    assert!(cookie.contains("SameSite=Lax"), "flag over env: {cookie}");
    // The file's other setting still applies: the data directory it names.
    assert!(dir.path().join("from-toml").join("secret").exists());
}
