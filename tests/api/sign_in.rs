//! The seed's flow and its variants: cookie, bearer, registration, passwordless, reset.
use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn seed_flow_with_cookie_signs_in_and_the_session_sticks() {
    let app = spawn_app().await;
    app.register("alice", "alice@example.com").await;
    let c = browser();
    let a = app
        .sign_in(&c, "alice", "alice@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    assert_eq!(a.body["data"]["username"], "alice");
    assert_eq!(a.body["data"]["email"], "alice@example.com");
    assert!(
        a.body["data"]["token"].is_null(),
        "a browser gets no token unless it asks"
    );
    let cookie = a.set_cookie().expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP must not get a Secure cookie: {cookie}"
    );
    for _ in 0..3 {
        let me = app.get(&c, "/api/me").await.expect(200, "OK");
        assert_eq!(me.body["data"]["username"], "alice");
    }
}

#[tokio::test]
async fn seed_flow_with_bearer_token_works_without_cookies() {
    let app = spawn_app().await;
    app.register("bob", "bob@example.com").await;
    let c = bare();
    let sent = app
        .post(
            &c,
            "/api/login/email-code",
            json!({"email": "bob@example.com", "session": "token"}),
        )
        .await
        .expect(200, "CODE_SENT");
    assert!(sent.set_cookie().is_none(), "token mode sets no cookie");
    let pre = sent.body["data"]["session_token"]
        .as_str()
        .expect("session_token")
        .to_owned();
    // A pre-login token is good for its code's status, nothing else.
    app.get_bearer(&c, "/api/login/email-code/status", &pre)
        .await
        .expect(200, "OK");
    app.get_bearer(&c, "/api/me", &pre)
        .await
        .expect(401, "NOT_LOGGED_IN");
    let code = app.read_code("bob@example.com").await;
    let done = app
        .post_bearer(
            &c,
            "/api/login/get-token",
            &pre,
            json!({"username": "bob", "password": PASSWORD, "email": "bob@example.com", "code": code}),
        )
        .await
        .expect(200, "LOGIN_SUCCESS");
    assert!(done.set_cookie().is_none());
    let token = done.body["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_ne!(token, pre);
    app.get_bearer(&c, "/api/me", &token)
        .await
        .expect(200, "OK");
    // The pre-login token stopped working, as the old cookie does.
    app.get_bearer(&c, "/api/login/email-code/status", &pre)
        .await
        .expect(401, "NO_SESSION");
}

#[tokio::test]
async fn a_code_submitted_without_its_session_says_how_to_send_the_cookie() {
    let app = spawn_app().await;
    app.register("carol", "carol@example.com").await;
    let with_cookie = browser();
    app.request_code(&with_cookie, "/api/login/email-code", "carol@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("carol@example.com").await;
    // The SPA forgot credentials: 'include'.
    let a = app
        .post(
            &bare(),
            "/api/login/get-token",
            json!({"username": "carol", "password": PASSWORD, "email": "carol@example.com", "code": code}),
        )
        .await
        .expect(401, "NO_SESSION");
    assert!(a.msg().contains("credentials: 'include'"), "{}", a.msg());
    assert!(a.msg().contains("withCredentials"), "{}", a.msg());
    let zh = answer(
        bare()
            .post(app.url("/api/login/get-token"))
            .header("accept-language", "zh-CN,zh;q=0.9")
            .json(&json!({"username": "carol", "password": PASSWORD, "email": "carol@example.com", "code": code}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(401, "NO_SESSION");
    assert!(zh.msg().contains("会话"), "{}", zh.msg());
    // The code still works from its own session.
    app.post(
        &with_cookie,
        "/api/login/get-token",
        json!({"username": "carol", "password": PASSWORD, "email": "carol@example.com", "code": code}),
    )
    .await
    .expect(200, "LOGIN_SUCCESS");
}

#[tokio::test]
async fn a_forged_session_id_is_never_adopted() {
    let app = spawn_app().await;
    let forged = "A".repeat(43);
    let a = app
        .get_with_cookie("/api/me", &forged)
        .await
        .expect(401, "NOT_LOGGED_IN");
    assert!(a.set_cookie().is_none());
    let a = answer(
        bare()
            .post(app.url("/api/login/get-token"))
            .header("cookie", format!("mailcode_sid={forged}"))
            .json(&json!({"username": "x1", "password": PASSWORD, "email": "x@example.com", "code": "123456"}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(401, "NO_SESSION");
    assert!(a.set_cookie().is_none());
    // A code request with a forged cookie gets a new, different session.
    let a = answer(
        bare()
            .post(app.url("/api/login/email-code"))
            .header("cookie", format!("mailcode_sid={forged}"))
            .json(&json!({"email": "x@example.com"}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "CODE_SENT");
    let sid = a.session_cookie().expect("a new session");
    assert_ne!(sid, forged);
}

#[tokio::test]
async fn the_old_session_id_dies_at_sign_in() {
    let app = spawn_app().await;
    app.register("dave", "dave@example.com").await;
    let c = bare();
    let sent = app
        .request_code(&c, "/api/login/email-code", "dave@example.com")
        .await
        .expect(200, "CODE_SENT");
    let old = sent.session_cookie().expect("pre-login cookie");
    app.get_with_cookie("/api/login/email-code/status", &old)
        .await
        .expect(200, "OK");
    let code = app.read_code("dave@example.com").await;
    let done = answer(
        c.post(app.url("/api/login/get-token"))
            .header("cookie", format!("mailcode_sid={old}"))
            .json(&json!({"username": "dave", "password": PASSWORD, "email": "dave@example.com", "code": code}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "LOGIN_SUCCESS");
    let new = done.session_cookie().expect("a new session id");
    assert_ne!(new, old);
    app.get_with_cookie("/api/me", &new).await.expect(200, "OK");
    app.get_with_cookie("/api/me", &old)
        .await
        .expect(401, "NOT_LOGGED_IN");
    app.get_with_cookie("/api/login/email-code/status", &old)
        .await
        .expect(401, "NO_SESSION");
}

#[tokio::test]
async fn a_wrong_password_consumes_an_attempt_and_says_nothing_about_the_user() {
    let app = spawn_app().await;
    app.register("erin", "erin@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "erin@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("erin@example.com").await;
    let wrong_pw = app
        .post(&c, "/api/login/get-token", json!({"username": "erin", "password": "not the password", "email": "erin@example.com", "code": code}))
        .await
        .expect(401, "LOGIN_FAILED");
    assert_eq!(wrong_pw.body["data"]["attempts_left"], 4);
    let unknown = app
        .post(&c, "/api/login/get-token", json!({"username": "nobody", "password": "not the password", "email": "erin@example.com", "code": code}))
        .await
        .expect(401, "LOGIN_FAILED");
    assert_eq!(unknown.body["data"]["attempts_left"], 3);
    assert_eq!(wrong_pw.msg(), unknown.msg());
    // The right password still works with the same code.
    app.post(&c, "/api/login/get-token", json!({"username": "ERIN", "password": PASSWORD, "email": "erin@example.com", "code": code}))
        .await
        .expect(200, "LOGIN_SUCCESS");
}

#[tokio::test]
async fn registration_refuses_taken_names_only_after_a_valid_code() {
    let app = spawn_app().await;
    app.register("frank", "frank@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/register/email-code", "other@example.com")
        .await
        .expect(200, "CODE_SENT");
    // With a wrong code, nothing about the name is revealed.
    app.post(&c, "/api/register", json!({"username": "Frank", "password": PASSWORD, "email": "other@example.com", "code": "000000"}))
        .await;
    let code = app.read_code("other@example.com").await;
    app.post(&c, "/api/register", json!({"username": "FRANK", "password": PASSWORD, "email": "other@example.com", "code": code}))
        .await
        .expect(409, "USERNAME_TAKEN");
    app.post(&c, "/api/register", json!({"username": "frank2", "password": "password", "email": "other@example.com", "code": code}))
        .await
        .expect(400, "INVALID_INPUT");
    app.post(&c, "/api/register", json!({"username": "frank2", "password": PASSWORD, "email": "other@example.com", "code": code}))
        .await
        .expect(201, "REGISTERED");
    // A registration code for an address in use does not carry a code.
    app.advance(Duration::from_secs(61));
    let c2 = browser();
    app.request_code(&c2, "/api/register/email-code", "frank@example.com")
        .await
        .expect(200, "CODE_SENT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let latest = app
        .get(&bare(), "/dev/outbox/latest?to=frank@example.com")
        .await
        .expect(200, "OK");
    assert!(latest.body["data"]["code"].is_null(), "{:?}", latest.body);
    assert!(latest.body["data"]["text"]
        .as_str()
        .unwrap_or("")
        .contains("already have an account"));
}

#[tokio::test]
async fn passwordless_sign_in_only_when_enabled() {
    let off = spawn_app().await;
    off.post(
        &browser(),
        "/api/login/code",
        json!({"email": "a@example.com", "code": "123456"}),
    )
    .await
    .expect(404, "PASSWORDLESS_DISABLED");

    let app = spawn_with(|s| s.passwordless = true).await;
    app.register("gina", "gina@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "gina@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("gina@example.com").await;
    let a = app
        .post(
            &c,
            "/api/login/code",
            json!({"email": "gina@example.com", "code": code}),
        )
        .await
        .expect(200, "LOGIN_SUCCESS");
    assert_eq!(a.body["data"]["username"], "gina");
    app.get(&c, "/api/me").await.expect(200, "OK");
}

#[tokio::test]
async fn password_reset_ends_every_other_session() {
    let app = spawn_app().await;
    let first = app.register("hank", "hank@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/password/email-code", "hank@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("hank@example.com").await;
    app.post(
        &c,
        "/api/password/reset",
        json!({"email": "hank@example.com", "code": code, "new_password": "a brand new secret"}),
    )
    .await
    .expect(200, "PASSWORD_RESET");
    app.get(&c, "/api/me").await.expect(200, "OK");
    app.get(&first, "/api/me")
        .await
        .expect(401, "NOT_LOGGED_IN");
    // The new password works, the old one does not.
    app.advance(Duration::from_secs(61));
    let d = browser();
    app.request_code(&d, "/api/login/email-code", "hank@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("hank@example.com").await;
    app.post(&d, "/api/login/get-token", json!({"username": "hank", "password": PASSWORD, "email": "hank@example.com", "code": code}))
        .await
        .expect(401, "LOGIN_FAILED");
    app.post(&d, "/api/login/get-token", json!({"username": "hank", "password": "a brand new secret", "email": "hank@example.com", "code": code}))
        .await
        .expect(200, "LOGIN_SUCCESS");
}

#[tokio::test]
async fn a_reset_code_request_answers_the_same_for_unknown_addresses() {
    let app = spawn_app().await;
    app.register("ivy", "ivy@example.com").await;
    let known = app
        .request_code(&browser(), "/api/password/email-code", "ivy@example.com")
        .await
        .expect(200, "CODE_SENT");
    let unknown = app
        .request_code(&browser(), "/api/password/email-code", "ghost@example.com")
        .await
        .expect(200, "CODE_SENT");
    assert_eq!(known.body["msg"], unknown.body["msg"]);
    let keys = |a: &Answer| {
        let mut k: Vec<String> = a.body["data"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&known), keys(&unknown));
    assert_eq!(known.set_cookie().is_some(), unknown.set_cookie().is_some());
}
