//! SPEC §7 end to end: the flows write their events into the outbox with the change, and the
//! webhook worker delivers them to a real HTTP receiver on loopback, signed (verified with the
//! Standard Webhooks library), with the same `webhook-id` on every retry, through 500s and
//! timeouts; given-up deliveries are listed and sent again. On every store configuration of the
//! suite (`MAILCODE_TEST_BACKEND`).
use crate::helpers::*;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    body: Value,
    verified: bool,
    answered: u16,
    /// When it arrived.
    at: std::time::Instant,
}

/// How the receiver answers the n-th attempt (1-based) of one webhook-id.
type Script = Arc<dyn Fn(usize, &Value) -> Behaviour + Send + Sync>;

#[derive(Clone, Copy)]
enum Behaviour {
    Answer(u16),
    /// Accepts the request and answers only after this long (past the deadline).
    Hang(Duration),
    /// Answers 200 after this long (within the deadline).
    Slow(Duration),
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(secret_file: &std::path::Path, script: Script) -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let log = seen.clone();
        let secret_file = secret_file.to_owned();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
            let (log, script, secret_file) = (log.clone(), script.clone(), secret_file.clone());
            async move {
                let secret = std::fs::read_to_string(&secret_file).unwrap_or_default();
                let verified = standardwebhooks::Webhook::new(secret.trim())
                    .map(|w| w.verify(body.as_bytes(), &headers).is_ok())
                    .unwrap_or(false);
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let n = {
                    let log = log.lock().expect("log");
                    log.iter().filter(|s| s.id == id).count() + 1
                };
                let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let behaviour = script(n, &value);
                // Logged before any wait: the sender gives up on a hanging answer, and the
                // server then drops this handler.
                let answered = match behaviour {
                    Behaviour::Answer(s) => s,
                    Behaviour::Hang(_) => 0,
                    Behaviour::Slow(_) => 200,
                };
                log.lock().expect("log").push(Seen {
                    id,
                    body: value,
                    verified,
                    answered,
                    at: std::time::Instant::now(),
                });
                if let Behaviour::Hang(d) | Behaviour::Slow(d) = behaviour {
                    tokio::time::sleep(d).await;
                }
                StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }

    /// Waits (up to ~8 s) until `done` holds for what was seen.
    async fn wait(&self, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        for _ in 0..160 {
            let seen = self.seen();
            if done(&seen) {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: the receiver saw {:#?}", self.seen());
    }
}

/// The delivered events' types, in the order they were delivered.
fn delivered_types(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| (200..300).contains(&s.answered))
        .map(|s| s.body["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Registers without moving the clock afterwards (unlike `TestApp::register`): the retry
/// schedule runs on the app's clock, which these tests move themselves.
async fn register_now(app: &TestApp, username: &str, email: &str) -> reqwest::Client {
    let c = browser();
    app.request_code(&c, "/api/register/email-code", email)
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code(email).await;
    app.post(
        &c,
        "/api/register",
        json!({"username": username, "password": PASSWORD, "email": email, "code": code}),
    )
    .await
    .expect(201, "REGISTERED");
    c
}

async fn app_with_receiver(script: Script) -> (TestApp, Receiver) {
    // The receiver reads the secret the app generates, on each request.
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = dir.path().join("webhook-secret");
    let receiver = Receiver::start(&secret_file, script).await;
    let url = receiver.url.clone();
    let app = spawn_with(move |s| {
        s.webhook_urls = vec![url.as_str().into()];
        s.webhook_secret_file = secret_file;
        s.webhook_timeout = Duration::from_secs(1);
    })
    .await;
    // Kept with the app: the secret file lives in it.
    std::mem::forget(dir);
    (app, receiver)
}

#[tokio::test]
async fn a_registration_is_reported_signed_with_one_id_through_a_500_and_a_timeout() {
    // Each event: 500, then no answer within the deadline, then 200.
    let (app, rx) = app_with_receiver(Arc::new(|n, _| match n {
        1 => Behaviour::Answer(500),
        2 => Behaviour::Hang(Duration::from_secs(3)),
        _ => Behaviour::Answer(204),
    }))
    .await;
    let c = register_now(&app, "ada", "ada@example.com").await;
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    let user_id = me.body["data"]["user_id"]
        .as_str()
        .expect("user_id")
        .to_owned();
    let per_id = |seen: &[Seen]| {
        let mut n: HashMap<String, usize> = HashMap::new();
        for s in seen {
            *n.entry(s.id.clone()).or_default() += 1;
        }
        n
    };
    // user.created and user.signed_in, each tried once and answered 500.
    rx.wait("first attempts", |s| per_id(s).len() == 2 && s.len() == 2)
        .await;
    // The receiver logs a request before it answers: let the sender read the answer and
    // schedule the retry before the clock moves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The first retry comes within 10 s (SPEC §7): 5 s on the schedule.
    app.advance(Duration::from_secs(6));
    rx.wait("second attempts", |s| s.len() == 4).await;
    // Past the 1 s deadline of those attempts, then the second retry (30 s).
    tokio::time::sleep(Duration::from_millis(1700)).await;
    app.advance(Duration::from_secs(31));
    let seen = rx
        .wait("delivered", |s| delivered_types(s).len() == 2)
        .await;
    let counts = per_id(&seen);
    assert_eq!(counts.len(), 2, "{seen:#?}");
    assert!(
        counts.values().all(|&n| n == 3),
        "one id, three attempts each: {counts:?}"
    );
    assert!(
        seen.iter().all(|s| s.verified),
        "every request verifies: {seen:#?}"
    );
    let mut types = delivered_types(&seen);
    types.sort();
    assert_eq!(types, ["user.created", "user.signed_in"]);
    for s in &seen {
        let data = &s.body["data"];
        assert_eq!(data["user_id"], user_id.as_str());
        assert_eq!(data["username"], "ada");
        assert_eq!(data["email"], "ada@example.com");
        assert!(s.body["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        let text = s.body.to_string();
        assert!(!text.contains("password") && !text.contains("code") && !text.contains("token"));
    }
    let signed_in = seen
        .iter()
        .find(|s| s.body["type"] == "user.signed_in")
        .expect("signed_in");
    let sessions = app.get(&c, "/api/sessions").await.expect(200, "OK");
    let listed = sessions.body["data"].to_string();
    let sid = signed_in.body["data"]["session_id"]
        .as_str()
        .expect("session_id");
    assert!(
        listed.contains(sid),
        "the public session id: {sid} in {listed}"
    );
    // No other delivery is pending: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.seen().len(), 6);
}

#[tokio::test]
async fn a_users_next_event_waits_until_the_one_before_was_answered() {
    // The receiver takes its time over `user.created`: `user.signed_in`, written in the same
    // step, is sent only once that answer came.
    let (app, rx) = app_with_receiver(Arc::new(|_, body: &Value| {
        if body["type"] == "user.created" {
            Behaviour::Slow(Duration::from_millis(500))
        } else {
            Behaviour::Answer(200)
        }
    }))
    .await;
    register_now(&app, "dee", "dee@example.com").await;
    let seen = rx.wait("both", |s| s.len() == 2).await;
    assert_eq!(delivered_types(&seen), ["user.created", "user.signed_in"]);
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(
        gap >= Duration::from_millis(450),
        "sent before the first was answered: {gap:?}"
    );
}

#[tokio::test]
async fn each_account_change_reports_its_events_and_a_failed_sign_in_none() {
    let (app, rx) = app_with_receiver(Arc::new(|_, _| Behaviour::Answer(200))).await;
    let first = register_now(&app, "bea", "bea@example.com").await;
    let seen = rx.wait("registration", |s| s.len() == 2).await;
    // One user's events at one URL arrive in the order they happened.
    assert_eq!(delivered_types(&seen), ["user.created", "user.signed_in"]);
    // Past the resend cooldown, once the deliveries are marked sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.advance(Duration::from_secs(61));

    // A wrong password: no event.
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "bea@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("bea@example.com").await;
    app.post(
        &c,
        "/api/login/get-token",
        json!({"username": "bea", "password": "not the password", "email": "bea@example.com", "code": code}),
    )
    .await
    .expect(401, "LOGIN_FAILED");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(rx.seen().len(), 2, "a failed sign-in reports nothing");

    // A sign-in, then its logout.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.advance(Duration::from_secs(61));
    let second = browser();
    app.sign_in(&second, "bea", "bea@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    let second_sid =
        app.get(&second, "/api/me").await.expect(200, "OK").body["data"]["session_id"].clone();
    app.post(&second, "/api/logout", json!({}))
        .await
        .expect(200, "LOGGED_OUT");
    let seen = rx.wait("sign-in and logout", |s| s.len() == 4).await;
    assert_eq!(
        delivered_types(&seen)[2..].to_vec(),
        ["user.signed_in", "session.ended"]
            .map(String::from)
            .to_vec()
    );
    let ended = &seen[3].body["data"]["session_id"];
    assert_eq!(ended, &seen[2].body["data"]["session_id"]);
    if !second_sid.is_null() {
        assert_eq!(ended, &second_sid);
    }

    // A password reset: signed in on a new session, the old one ended. The clock moves past
    // the deliveries' leases only once they are marked sent (else they go again: at least once).
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.advance(Duration::from_secs(61));
    let third = browser();
    app.request_code(&third, "/api/password/email-code", "bea@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("bea@example.com").await;
    app.post(
        &third,
        "/api/password/reset",
        json!({"email": "bea@example.com", "code": code, "new_password": "a brand new secret"}),
    )
    .await
    .expect(200, "PASSWORD_RESET");
    app.get(&first, "/api/me")
        .await
        .expect(401, "NOT_LOGGED_IN");
    let seen = rx.wait("reset", |s| s.len() == 7).await;
    let reset: Vec<String> = delivered_types(&seen)[4..].to_vec();
    let mut sorted = reset.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["session.ended", "user.password_reset", "user.signed_in"]
    );
    let at = |t: &str| reset.iter().position(|x| x == t);
    assert!(at("user.password_reset") < at("session.ended"), "{reset:?}");

    // Disabled by the operator: user.disabled and the end of the last session.
    let user = app
        .core()
        .find_user("bea")
        .await
        .expect("store")
        .expect("bea");
    assert_eq!(app.core().disable_user(&user).await.expect("disable"), 1);
    app.get(&third, "/api/me")
        .await
        .expect(401, "NOT_LOGGED_IN");
    let seen = rx.wait("disable", |s| s.len() == 9).await;
    let disabled: Vec<String> = delivered_types(&seen)[7..].to_vec();
    assert_eq!(disabled, ["user.disabled", "session.ended"]);

    // Every id once: nothing was delivered twice.
    let mut ids: Vec<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 9);
    assert!(seen.iter().all(|s| s.verified));
}

#[tokio::test]
async fn a_delivery_given_up_after_a_day_is_listed_and_sent_again_with_its_id() {
    let accept = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = accept.clone();
    let (app, rx) = app_with_receiver(Arc::new(move |_, _| {
        if open.load(std::sync::atomic::Ordering::SeqCst) {
            Behaviour::Answer(200)
        } else {
            Behaviour::Answer(503)
        }
    }))
    .await;
    let c = register_now(&app, "cy", "cy@example.com").await;
    drop(c);
    rx.wait("first attempts", |s| s.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app
        .core()
        .failed_webhooks()
        .await
        .expect("store")
        .is_empty());
    // A day later the next attempt fails too, and that was the last.
    app.advance(Duration::from_secs(25 * 3600));
    rx.wait("last attempts", |s| s.len() == 4).await;
    let mut failed = Vec::new();
    for _ in 0..100 {
        failed = app.core().failed_webhooks().await.expect("store");
        if failed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().all(|f| f.to == rx.url && f.attempts == 2),
        "{failed:?}"
    );
    // Sent again by the operator, accepted now, with the id it always had.
    accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let id = failed[0].id.clone();
    assert!(app.core().retry_webhook(&id).await.expect("retry"));
    assert!(!app
        .core()
        .retry_webhook("msg_nonexistent")
        .await
        .expect("retry"));
    let seen = rx.wait("retried", |s| s.len() == 5).await;
    assert_eq!(seen[4].id, id);
    assert_eq!(seen[4].answered, 200);
    let left = app.core().failed_webhooks().await.expect("store");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].id, id);
}

#[tokio::test]
async fn a_webhook_url_that_is_not_absolute_http_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().expect("dir");
    for bad in [
        "hooks.example.com/in",
        "ftp://hooks.example.com/in",
        "/hooks/relative",
        "http://",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailcode"))
            .env_remove("MAILCODE_CONFIG")
            .args(["--data-dir", &dir.path().display().to_string()])
            .args(["--webhook-url", bad, "migrate"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            err.contains("--webhook-url / MAILCODE_WEBHOOK_URLS"),
            "{err}"
        );
    }
    // A password in a URL never prints, not even in the refusal.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .env_remove("MAILCODE_CONFIG")
        .args(["--data-dir", &dir.path().display().to_string()])
        .env(
            "MAILCODE_WEBHOOK_URLS",
            "https://ok.example.com/a,gopher://u:SECRET99@x/y",
        )
        .arg("migrate")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("MAILCODE_WEBHOOK_URLS") && !err.contains("SECRET99"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .env_remove("MAILCODE_CONFIG")
        .args(["--data-dir", &dir.path().display().to_string()])
        .args(["--webhook-timeout", "0", "migrate"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--webhook-timeout"));
}
