//! SPEC §3 Sessions: created only when needed, idle and absolute timeouts, logout and
//! revocation for cookie and bearer alike, the caller's session list.
use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn anonymous_requests_set_no_cookie() {
    let app = spawn_app().await;
    let c = bare();
    for path in [
        "/",
        "/register",
        "/api/me",
        "/api/sessions",
        "/healthz",
        "/readyz",
        "/api/login/email-code/status",
        "/nope",
    ] {
        let a = app.get(&c, path).await;
        assert!(a.set_cookie().is_none(), "GET {path} set a cookie");
    }
    let a = app
        .post(&c, "/api/logout", json!({}))
        .await
        .expect(200, "LOGGED_OUT");
    assert!(a.set_cookie().is_none());
    let a = app
        .post(
            &c,
            "/api/login/email-code",
            json!({"email": "not an email"}),
        )
        .await
        .expect(400, "INVALID_EMAIL");
    assert!(
        a.set_cookie().is_none(),
        "a refused code request keeps nothing"
    );
    let a = app
        .post(&c, "/api/login/get-token", json!({"username": "zed", "password": PASSWORD, "email": "z@example.com", "code": "123456"}))
        .await
        .expect(401, "NO_SESSION");
    assert!(a.set_cookie().is_none());
}

#[tokio::test]
async fn every_api_answer_carries_no_store() {
    let app = spawn_app().await;
    for path in ["/api/me", "/healthz", "/api/openapi.json"] {
        let a = app.get(&bare(), path).await;
        assert_eq!(
            a.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn logout_ends_the_cookie_session() {
    let app = spawn_app().await;
    app.register("kim", "kim@example.com").await;
    let signed = app
        .sign_in(&bare(), "kim", "kim@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    let sid = signed.session_cookie().expect("sid");
    app.get_with_cookie("/api/me", &sid).await.expect(200, "OK");
    let out = answer(
        bare()
            .post(app.url("/api/logout"))
            .header("cookie", format!("mailcode_sid={sid}"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "LOGGED_OUT");
    assert!(
        out.set_cookie().unwrap_or_default().contains("Max-Age=0"),
        "the cookie is cleared"
    );
    // Replaying the old cookie does not work: the session is gone server-side.
    app.get_with_cookie("/api/me", &sid)
        .await
        .expect(401, "NOT_LOGGED_IN");
}

#[tokio::test]
async fn logout_ends_the_bearer_session() {
    let app = spawn_app().await;
    app.register("lee", "lee@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "lee@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("lee@example.com").await;
    let done = app
        .post(&c, "/api/login/get-token", json!({"username": "lee", "password": PASSWORD, "email": "lee@example.com", "code": code, "session": "token"}))
        .await
        .expect(200, "LOGIN_SUCCESS");
    let token = done.body["data"]["token"]
        .as_str()
        .expect("asked for a token")
        .to_owned();
    app.get_bearer(&bare(), "/api/me", &token)
        .await
        .expect(200, "OK");
    app.post_bearer(&bare(), "/api/logout", &token, json!({}))
        .await
        .expect(200, "LOGGED_OUT");
    app.get_bearer(&bare(), "/api/me", &token)
        .await
        .expect(401, "NOT_LOGGED_IN");
}

#[tokio::test]
async fn the_cookie_and_the_token_are_one_session() {
    let app = spawn_app().await;
    app.register("max", "max@example.com").await;
    let signed = app
        .sign_in(&bare(), "max", "max@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    let sid = signed.session_cookie().expect("sid");
    // The cookie's value works as a bearer token, and logging out by bearer ends the cookie.
    app.get_bearer(&bare(), "/api/me", &sid)
        .await
        .expect(200, "OK");
    app.post_bearer(&bare(), "/api/logout", &sid, json!({}))
        .await
        .expect(200, "LOGGED_OUT");
    app.get_with_cookie("/api/me", &sid)
        .await
        .expect(401, "NOT_LOGGED_IN");
}

#[tokio::test]
async fn an_idle_session_ends_after_thirty_minutes_and_activity_renews_it() {
    let app = spawn_app().await;
    let c = app.register("ned", "ned@example.com").await;
    for _ in 0..3 {
        app.advance(Duration::from_secs(20 * 60));
        app.get(&c, "/api/me").await.expect(200, "OK");
    }
    app.advance(Duration::from_secs(31 * 60));
    app.get(&c, "/api/me").await.expect(401, "NOT_LOGGED_IN");
}

#[tokio::test]
async fn a_session_ends_after_seven_days_whatever_the_activity() {
    let app = spawn_app().await;
    let c = app.register("oli", "oli@example.com").await;
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    assert!(me.body["data"]["session"]["expires_at"].is_string());
    // Active every 25 minutes for 7 days.
    let mut alive_until_the_end = true;
    for _ in 0..(7 * 24 * 60 / 25) {
        app.advance(Duration::from_secs(25 * 60));
        if app.get(&c, "/api/me").await.status != 200 {
            alive_until_the_end = false;
            break;
        }
    }
    assert!(alive_until_the_end, "an active session lives 7 days");
    app.advance(Duration::from_secs(25 * 60));
    app.get(&c, "/api/me").await.expect(401, "NOT_LOGGED_IN");
}

#[tokio::test]
async fn users_list_and_revoke_their_own_sessions() {
    let app = spawn_app().await;
    let first = app.register("pat", "pat@example.com").await;
    let second = browser();
    app.sign_in(&second, "pat", "pat@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    let list = app.get(&first, "/api/sessions").await.expect(200, "OK");
    let sessions = list.body["data"]["sessions"]
        .as_array()
        .expect("list")
        .clone();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(sessions.iter().all(|s| s["ip"] == "127.0.0.1"));
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .expect("other session");
    let id = other["id"].as_str().unwrap();
    // Someone else cannot revoke it.
    let stranger = app.register("quinn", "quinn@example.com").await;
    answer(
        stranger
            .delete(app.url(&format!("/api/sessions/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(404, "SESSION_NOT_FOUND");
    answer(
        first
            .delete(app.url(&format!("/api/sessions/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "SESSION_REVOKED");
    app.get(&second, "/api/me")
        .await
        .expect(401, "NOT_LOGGED_IN");
    app.get(&first, "/api/me").await.expect(200, "OK");
}
