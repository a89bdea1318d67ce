//! SPEC §3 Codes: bound to session, email and purpose; single use under races; few attempts;
//! short lifetime; a new code replaces the old one.
use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

fn login(username: &str, email: &str, code: &str) -> serde_json::Value {
    json!({"username": username, "password": PASSWORD, "email": email, "code": code})
}

#[tokio::test]
async fn a_code_from_another_session_is_rejected() {
    let app = spawn_app().await;
    app.register("amy", "amy@example.com").await;
    let owner = browser();
    app.request_code(&owner, "/api/login/email-code", "amy@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("amy@example.com").await;
    // The attacker has a session of their own (with a code for another address).
    let attacker = browser();
    app.request_code(&attacker, "/api/login/email-code", "mallory@example.com")
        .await
        .expect(200, "CODE_SENT");
    app.post(
        &attacker,
        "/api/login/get-token",
        login("amy", "amy@example.com", &code),
    )
    .await
    .expect(401, "CODE_INVALID");
    app.post(
        &owner,
        "/api/login/get-token",
        login("amy", "amy@example.com", &code),
    )
    .await
    .expect(200, "LOGIN_SUCCESS");
}

#[tokio::test]
async fn a_code_for_another_email_is_rejected() {
    let app = spawn_app().await;
    app.register("ben", "ben@example.com").await;
    app.register("ben2", "ben2@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "ben2@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("ben2@example.com").await;
    app.post(
        &c,
        "/api/login/get-token",
        login("ben", "ben@example.com", &code),
    )
    .await
    .expect(401, "CODE_INVALID");
}

#[tokio::test]
async fn a_code_for_another_purpose_is_rejected() {
    let app = spawn_app().await;
    let c = browser();
    app.request_code(&c, "/api/register/email-code", "cat@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("cat@example.com").await;
    app.post(
        &c,
        "/api/password/reset",
        json!({"email": "cat@example.com", "code": code, "new_password": "whatever it is"}),
    )
    .await
    .expect(401, "CODE_INVALID");
    app.post(
        &c,
        "/api/login/get-token",
        login("cat", "cat@example.com", &code),
    )
    .await
    .expect(401, "CODE_INVALID");
    app.post(&c, "/api/register", login("cat", "cat@example.com", &code))
        .await
        .expect(201, "REGISTERED");
}

#[tokio::test]
async fn twenty_concurrent_submissions_of_the_right_code_give_exactly_one_success() {
    let app = spawn_app().await;
    app.register("dan", "dan@example.com").await;
    let c = bare();
    let sid = app
        .request_code(&c, "/api/login/email-code", "dan@example.com")
        .await
        .expect(200, "CODE_SENT")
        .session_cookie()
        .expect("session");
    let code = app.read_code("dan@example.com").await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = app.url("/api/login/get-token");
            let sid = sid.clone();
            let body = login("dan", "dan@example.com", &code);
            tokio::spawn(async move {
                let r = bare()
                    .post(url)
                    .header("cookie", format!("mailcode_sid={sid}"))
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                answer(r).await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        let a = t.await.expect("task");
        match a.code() {
            "LOGIN_SUCCESS" => wins += 1,
            "CODE_INVALID" | "NO_SESSION" => {}
            other => panic!("unexpected {other}: {:?}", a.body),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn five_wrong_codes_kill_the_code() {
    let app = spawn_app().await;
    app.register("eve", "eve@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "eve@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("eve@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        let a = app
            .post(
                &c,
                "/api/login/get-token",
                login("eve", "eve@example.com", wrong),
            )
            .await
            .expect(401, "CODE_INVALID");
        assert_eq!(a.body["data"]["attempts_left"], left);
    }
    app.post(
        &c,
        "/api/login/get-token",
        login("eve", "eve@example.com", &code),
    )
    .await
    .expect(401, "CODE_ATTEMPTS_EXCEEDED");
}

#[tokio::test]
async fn a_code_works_once() {
    let app = spawn_app().await;
    app.register("fay", "fay@example.com").await;
    let c = bare();
    let sid = app
        .request_code(&c, "/api/login/email-code", "fay@example.com")
        .await
        .session_cookie()
        .expect("sid");
    let code = app.read_code("fay@example.com").await;
    let send = |sid: String| {
        let url = app.url("/api/login/get-token");
        let body = login("fay", "fay@example.com", &code);
        async move {
            answer(
                bare()
                    .post(url)
                    .header("cookie", format!("mailcode_sid={sid}"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let first = send(sid.clone()).await.expect(200, "LOGIN_SUCCESS");
    let new_sid = first.session_cookie().expect("new sid");
    send(new_sid).await.expect(401, "CODE_INVALID");
}

#[tokio::test]
async fn a_code_expires_after_ten_minutes() {
    let app = spawn_app().await;
    app.register("gus", "gus@example.com").await;
    let c = browser();
    let sent = app
        .request_code(&c, "/api/login/email-code", "gus@example.com")
        .await
        .expect(200, "CODE_SENT");
    let expires = sent.body["data"]["expires_at"].as_str().unwrap().to_owned();
    let resend = sent.body["data"]["resend_available_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let exp = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    let res = chrono::DateTime::parse_from_rfc3339(&resend).unwrap();
    assert_eq!(
        (exp - res).num_seconds(),
        540,
        "10 min lifetime, 60 s cooldown"
    );
    let code = app.read_code("gus@example.com").await;
    app.advance(Duration::from_secs(601));
    app.post(
        &c,
        "/api/login/get-token",
        login("gus", "gus@example.com", &code),
    )
    .await
    .expect(401, "CODE_EXPIRED");
}

#[tokio::test]
async fn a_new_code_replaces_the_previous_one() {
    let app = spawn_app().await;
    app.register("hal", "hal@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "hal@example.com")
        .await
        .expect(200, "CODE_SENT");
    let first = app.read_code("hal@example.com").await;
    // Within the cooldown: refused, from this or any other session.
    let again = app
        .request_code(&browser(), "/api/login/email-code", "hal@example.com")
        .await
        .expect(429, "RATE_LIMITED");
    let wait: u64 = again.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&wait),
        "the cooldown's rest, not the hour's: {wait}"
    );
    // The cooldown is per purpose: a registration code for the address may go out meanwhile.
    app.request_code(&browser(), "/api/register/email-code", "hal@example.com")
        .await
        .expect(200, "CODE_SENT");
    app.advance(Duration::from_secs(61));
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.request_code(&c, "/api/login/email-code", "hal@example.com")
        .await
        .expect(200, "CODE_SENT");
    let second = loop {
        let c2 = app.read_code("hal@example.com").await;
        if c2 != first {
            break c2;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.post(
        &c,
        "/api/login/get-token",
        login("hal", "hal@example.com", &first),
    )
    .await
    .expect(401, "CODE_INVALID");
    app.post(
        &c,
        "/api/login/get-token",
        login("hal", "hal@example.com", &second),
    )
    .await
    .expect(200, "LOGIN_SUCCESS");
}

#[tokio::test]
async fn the_status_route_reports_delivery() {
    let app = spawn_app().await;
    let c = browser();
    app.get(&c, "/api/login/email-code/status")
        .await
        .expect(401, "NO_SESSION");
    app.request_code(&c, "/api/login/email-code", "ida@example.com")
        .await
        .expect(200, "CODE_SENT");
    assert_eq!(app.wait_for_delivery(&c, "sent").await, "sent");
}

#[tokio::test]
async fn the_store_holds_no_raw_session_id() {
    let app = spawn_app().await;
    app.register("jo", "jo@example.com").await;
    let signed = app
        .sign_in(&bare(), "jo", "jo@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    let sid = signed.session_cookie().expect("sid");
    app.get_with_cookie("/api/me", &sid).await.expect(200, "OK");
    let hay = store_bytes(&app).await;
    let signed_in_key =
        mailcode::crypto::session_key(&mailcode::domain::SessionId::parse(&sid).expect("an id"));
    // What the store keeps of it: the key (SQLite), its tag in the key names (Redis).
    let trace = match &app.settings.redis_url {
        None => signed_in_key.as_str().to_owned(),
        Some(_) => mailcode::store::redis::session_tag(&signed_in_key),
    };
    assert!(
        hay.contains(&trace),
        "the test reads the real session store"
    );
    assert!(!hay.contains(&sid), "a raw session id is in the store");
}

/// SPEC §3 Codes: stored only as a keyed hash. The queued mail carries the code in clear, so it
/// is sealed while it waits (and while a delivered one waits for the sweep, in SQL).
#[tokio::test]
async fn the_store_holds_no_code_not_even_in_the_mail_queue() {
    let app = spawn_app().await;
    app.request_code(&browser(), "/api/register/email-code", "kim@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("kim@example.com").await;
    let hay = store_bytes(&app).await;
    assert!(
        hay.contains("kim@example.com"),
        "the test reads the real store"
    );
    assert!(
        !hay.contains(&code),
        "the code {code} is in the store in clear"
    );
    assert!(
        !hay.contains("is your mailcode"),
        "a mail is in the store in clear"
    );
}

/// Everything the session store holds (and, embedded, the whole database), as text.
async fn store_bytes(app: &TestApp) -> String {
    let hay = match &app.settings.redis_url {
        None if app.settings.database_url.starts_with("postgres") => {
            postgres_rows(app.settings.database_url.expose()).await
        }
        None => {
            let mut hay = Vec::new();
            for f in ["mailcode.db", "mailcode.db-wal"] {
                hay.extend(std::fs::read(app.settings.data_dir.join(f)).unwrap_or_default());
            }
            hay
        }
        Some(urls) => {
            // Every node (one, or each master of a cluster) holds its own keys.
            let mut hay = Vec::new();
            for url in urls.expose().split(',') {
                let client = redis::Client::open(url).expect("redis url");
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("redis");
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}*", app.settings.redis_prefix))
                    .query_async(&mut conn)
                    .await
                    .expect("KEYS");
                for k in keys {
                    hay.extend(k.as_bytes());
                    let dump: Vec<u8> = redis::cmd("DUMP")
                        .arg(&k)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    hay.extend(dump);
                }
            }
            hay
        }
    };
    String::from_utf8_lossy(&hay).into_owned()
}

/// Every row of every table of a PostgreSQL database, each as its text form.
async fn postgres_rows(url: &str) -> Vec<u8> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("the test PostgreSQL");
    let mut hay = Vec::new();
    for table in [
        "users",
        "sessions",
        "codes",
        "limits",
        "mail_queue",
        "deployment",
    ] {
        // A row's text form shows BYTEA as hex: the byte columns are added as they are.
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&mut conn)
            .await
            .expect("reads a table");
        for r in rows {
            hay.extend(r.into_bytes());
        }
    }
    let names: Vec<Vec<u8>> = sqlx::query_scalar("SELECT username FROM users")
        .fetch_all(&mut conn)
        .await
        .expect("reads users");
    hay.extend(names.concat());
    hay
}

/// A reader of Chinese gets the code mail in Chinese, the code in its subject (mail previews show
/// it), and the development outbox still finds that code.
#[tokio::test]
async fn a_chinese_code_mail_shows_the_code_in_its_subject() {
    let app = spawn_app().await;
    let c = browser();
    answer(
        c.post(app.url("/api/register/email-code"))
            .header("accept-language", "zh-CN")
            .json(&json!({ "email": "li@example.com" }))
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect(200, "CODE_SENT");
    let code = app.read_code("li@example.com").await;
    let latest = app
        .get(&bare(), "/dev/outbox/latest?to=li@example.com")
        .await
        .expect(200, "OK");
    assert_eq!(
        latest.body["data"]["subject"],
        format!("【mailcode】注册验证码：{code}")
    );
    assert_eq!(latest.body["data"]["code"], code.as_str());
}
