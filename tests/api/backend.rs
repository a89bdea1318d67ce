//! SPEC §6, the application's own backend: stable user ids, forward authentication
//! (`/api/auth/check`) and access tokens verified against the published keys, as a proxy and a
//! service in another language would use them.
use crate::helpers::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHECK: &str = "/api/auth/check";

fn is_uuid_v7(s: &str) -> bool {
    s.len() == 36
        && s.as_bytes()[14] == b'7'
        && matches!(s.as_bytes()[19], b'8' | b'9' | b'a' | b'b')
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

async fn check(app: &TestApp, c: &Client, method: Method) -> reqwest::Response {
    c.request(method, app.url(CHECK))
        .send()
        .await
        .expect("request")
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The key set and the claims of `token` as a verifier with a stock JWKS client sees them.
async fn verify(app: &TestApp, token: &str, audience: &str) -> Value {
    let keys: JwkSet = bare()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("a JWK set");
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("a kid");
    let jwk = keys.find(&kid).expect("the token's key is published");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[app.base.as_str()]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // The app's clock runs ahead of the wall clock by what tests advanced it.
    v.leeway = 3600;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).expect("key"), &v)
        .expect("the token verifies")
        .claims
}

async fn mint(app: &TestApp, c: &Client) -> Answer {
    app.post(c, "/api/token", json!({})).await
}

#[tokio::test]
async fn every_account_has_one_user_id_in_every_answer() {
    let app = spawn_app().await;
    let c = browser();
    app.request_code(&c, "/api/register/email-code", "uid@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("uid@example.com").await;
    let reg = app
        .post(
            &c,
            "/api/register",
            json!({"username": "uid", "password": PASSWORD, "email": "uid@example.com", "code": code}),
        )
        .await
        .expect(201, "REGISTERED");
    let id = reg.body["data"]["user_id"]
        .as_str()
        .expect("user_id")
        .to_owned();
    assert!(is_uuid_v7(&id), "a UUIDv7: {id}");
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    assert_eq!(me.body["data"]["user_id"], id.as_str());
    app.advance(Duration::from_secs(61));
    let other = browser();
    let signed = app
        .sign_in(&other, "uid", "uid@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    assert_eq!(
        signed.body["data"]["user_id"],
        id.as_str(),
        "the same account, the same id"
    );
    let someone = app.register("someone", "someone@example.com").await;
    let theirs = app.get(&someone, "/api/me").await.expect(200, "OK");
    assert_ne!(theirs.body["data"]["user_id"], id.as_str());
    // Kept across a restart (it is the account's, not the session's).
    let mut app = app;
    app.restart().await;
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    assert_eq!(me.body["data"]["user_id"], id.as_str());
}

#[tokio::test]
async fn forward_auth_names_the_user_for_every_method_and_refuses_everyone_else() {
    let app = spawn_app().await;
    let c = app.register("fwd", "fwd@example.com").await;
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    let user_id = me.body["data"]["user_id"].as_str().expect("id").to_owned();
    let sessions = app.get(&c, "/api/sessions").await.expect(200, "OK");
    let session_id = sessions.body["data"]["sessions"][0]["id"]
        .as_str()
        .expect("session id")
        .to_owned();
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let a = answer(check(&app, &c, m.clone()).await).await;
        assert_eq!(a.status, 200, "{method}: {:?}", a.body);
        assert_eq!(header(&a, "x-mailcode-user-id"), user_id, "{method}");
        assert_eq!(header(&a, "x-mailcode-username"), "fwd");
        assert_eq!(header(&a, "x-mailcode-email"), "fwd@example.com");
        assert_eq!(header(&a, "x-mailcode-session-id"), session_id);
        if method != "HEAD" {
            assert_eq!(
                a.body["data"],
                json!({"user_id": user_id, "username": "fwd", "email": "fwd@example.com", "session_id": session_id}),
                "{method}"
            );
        }
        let anonymous = answer(check(&app, &bare(), m).await).await;
        assert_eq!(anonymous.status, 401, "{method}");
        assert!(anonymous.headers.get("x-mailcode-user-id").is_none());
        if method != "HEAD" {
            assert_eq!(anonymous.code(), "NOT_LOGGED_IN", "{method}");
        }
    }
    // A bearer session is as good as a cookie.
    let sid = bearer_session(&app, "fwd", "fwd@example.com").await;
    let a = answer(
        bare()
            .get(app.url(CHECK))
            .bearer_auth(&sid)
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "x-mailcode-user-id"), user_id);
    assert_ne!(
        header(&a, "x-mailcode-session-id"),
        session_id,
        "another session"
    );
}

/// A new session of `username` held as a bearer token (the session id, SPEC §2).
async fn bearer_session(app: &TestApp, username: &str, email: &str) -> String {
    app.advance(Duration::from_secs(61));
    app.sign_in(&bare(), username, email)
        .await
        .expect(200, "LOGIN_SUCCESS")
        .session_cookie()
        .expect("the session")
}

#[tokio::test]
async fn forward_auth_reads_no_body_and_answers_at_once() {
    let app = spawn_app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    // A body announced and never sent: the answer must not wait for it.
    s.write_all(
        format!("POST {CHECK} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100000\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("answered without the body")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("NOT_LOGGED_IN"), "{head}");
}

#[tokio::test]
async fn forward_auth_refuses_a_revoked_session_and_a_disabled_user_at_once() {
    let app = spawn_app().await;
    let c = app.register("gone", "gone@example.com").await;
    let other = browser();
    app.sign_in(&other, "gone", "gone@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    assert_eq!(check(&app, &c, Method::GET).await.status(), 200);
    // One session ended from the other.
    let list = app.get(&other, "/api/sessions").await.expect(200, "OK");
    let first = list.body["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    answer(
        other
            .delete(app.url(&format!("/api/sessions/{first}")))
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect(200, "SESSION_REVOKED");
    assert_eq!(check(&app, &c, Method::GET).await.status(), 401, "revoked");
    assert_eq!(check(&app, &other, Method::GET).await.status(), 200);
    let user = app
        .core()
        .find_user("gone")
        .await
        .expect("store")
        .expect("user");
    app.core().disable_user(&user).await.expect("disabled");
    assert_eq!(
        check(&app, &other, Method::GET).await.status(),
        401,
        "disabled"
    );
}

#[tokio::test]
async fn forward_auth_guards_the_applications_state_changing_requests_from_other_origins() {
    let app = spawn_app().await;
    let c = app.register("csrf", "csrf@example.com").await;
    let ask = |method: &'static str, via: &'static str, origin: Option<&str>| {
        let mut r = c.get(app.url(CHECK)).header(via, method);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r
    };
    for via in ["x-original-method", "x-forwarded-method"] {
        let a = answer(
            ask("POST", via, Some("https://evil.example"))
                .send()
                .await
                .expect("r"),
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (403, "ORIGIN_REJECTED"),
            "{via}"
        );
        assert!(a.headers.get("x-mailcode-user-id").is_none());
        let a = answer(ask("DELETE", via, Some(&app.base)).send().await.expect("r")).await;
        assert_eq!(a.status, 200, "own origin, {via}");
        let a = answer(
            ask("GET", via, Some("https://evil.example"))
                .send()
                .await
                .expect("r"),
        )
        .await;
        assert_eq!(a.status, 200, "a safe method from anywhere, {via}");
    }
    let a = answer(
        c.get(app.url(CHECK))
            .header("x-original-method", "PUT")
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!(a.code(), "ORIGIN_REJECTED", "Sec-Fetch-Site without Origin");
    // Bearer requests carry no ambient credential: exempt.
    let sid = bearer_session(&app, "csrf", "csrf@example.com").await;
    let a = answer(
        bare()
            .get(app.url(CHECK))
            .bearer_auth(&sid)
            .header("x-forwarded-method", "POST")
            .header("origin", "https://evil.example")
            .send()
            .await
            .expect("r"),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

#[tokio::test]
async fn forward_auth_is_activity_that_keeps_the_session_alive() {
    let app = spawn_app().await;
    let c = app.register("busy", "busy@example.com").await;
    // 28 minutes idle (and the minute `register` waited), then a check (the application's
    // request), then 29 more: without the renewal the 30-minute idle timeout would have ended
    // the session (SPEC §3 Sessions).
    app.advance(Duration::from_secs(28 * 60));
    assert_eq!(check(&app, &c, Method::GET).await.status(), 200);
    app.advance(Duration::from_secs(29 * 60));
    assert_eq!(check(&app, &c, Method::POST).await.status(), 200);
    app.advance(Duration::from_secs(31 * 60));
    assert_eq!(
        check(&app, &c, Method::GET).await.status(),
        401,
        "idle too long"
    );
}

#[tokio::test]
async fn non_ascii_names_are_percent_encoded_in_headers() {
    let app = spawn_app().await;
    let c = app.register("张伟", "zhang@example.com").await;
    let a = answer(check(&app, &c, Method::GET).await).await;
    assert_eq!(a.status, 200);
    let raw = header(&a, "x-mailcode-username");
    assert_eq!(raw, "%E5%BC%A0%E4%BC%9F");
    assert_eq!(a.body["data"]["username"], "张伟");
}

#[tokio::test]
async fn an_access_token_verifies_with_the_published_keys_and_names_the_user() {
    let app = spawn_app().await;
    let c = app.register("tok", "tok@example.com").await;
    let who = answer(check(&app, &c, Method::GET).await).await;
    let minted = mint(&app, &c).await.expect(200, "OK");
    let data = &minted.body["data"];
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["expires_in"], 300);
    let token = data["access_token"].as_str().expect("token").to_owned();
    let claims = verify(&app, &token, &app.base).await;
    assert_eq!(claims["sub"], who.body["data"]["user_id"]);
    assert_eq!(claims["sid"], who.body["data"]["session_id"]);
    assert_eq!(claims["email"], "tok@example.com");
    assert_eq!(claims["preferred_username"], "tok");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    let again = mint(&app, &c).await.expect(200, "OK");
    let again = verify(
        &app,
        again.body["data"]["access_token"].as_str().unwrap(),
        &app.base,
    )
    .await;
    assert_ne!(again["jti"], claims["jti"], "each token its own jti");
    assert!(
        minted
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            == Some("no-store"),
        "a token is never cached"
    );
    // Not a session credential.
    app.get_bearer(&bare(), "/api/me", &token)
        .await
        .expect(401, "NOT_LOGGED_IN");
    let a = answer(
        bare()
            .get(app.url(CHECK))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 401, "an access token does not pass forward auth");
}

#[tokio::test]
async fn a_token_needs_a_live_session_and_the_origin_rule() {
    let app = spawn_app().await;
    mint(&app, &bare()).await.expect(401, "NOT_LOGGED_IN");
    let c = app.register("org", "org@example.com").await;
    answer(
        c.post(app.url("/api/token"))
            .header("origin", "https://evil.example")
            .send()
            .await
            .expect("r"),
    )
    .await
    .expect(403, "ORIGIN_REJECTED");
    answer(
        c.post(app.url("/api/token"))
            .header("origin", &app.base)
            .send()
            .await
            .expect("r"),
    )
    .await
    .expect(200, "OK");
    app.post(&c, "/api/logout", json!({}))
        .await
        .expect(200, "LOGGED_OUT");
    mint(&app, &c).await.expect(401, "NOT_LOGGED_IN");
    // A bearer session mints too, from any origin (nothing ambient to abuse).
    let sid = bearer_session(&app, "org", "org@example.com").await;
    answer(
        bare()
            .post(app.url("/api/token"))
            .bearer_auth(&sid)
            .header("origin", "https://elsewhere.example")
            .send()
            .await
            .expect("r"),
    )
    .await
    .expect(200, "OK");
}

#[tokio::test]
async fn the_key_set_and_discovery_are_what_stock_clients_read() {
    let app = spawn_app().await;
    let disco = bare()
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("r");
    assert_eq!(disco.status(), 200);
    let doc: Value = disco.json().await.expect("JSON");
    assert_eq!(doc["issuer"], app.base.as_str());
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/.well-known/jwks.json", app.base)
    );
    let keys = bare()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("r");
    let cache = keys
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(cache.contains("max-age="), "cacheable: {cache}");
    let set: Value = keys.json().await.expect("JSON");
    let list = set["keys"].as_array().expect("keys");
    assert_eq!(list.len(), 2, "the signing key and the next one: {set}");
    for k in list {
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert_eq!(
            (k["alg"].as_str(), k["use"].as_str()),
            (Some("ES256"), Some("sig"))
        );
        assert!(k.get("d").is_none(), "no private part");
    }
}

#[tokio::test]
async fn instances_of_one_deployment_share_keys_across_restarts_and_rotation() {
    let mut a = spawn_app().await;
    let shared = a.settings.clone();
    let b = spawn_with(|s| {
        *s = shared.clone();
        s.listen = "127.0.0.1:0".parse().expect("addr");
    })
    .await;
    let c = a.register("two", "two@example.com").await;
    let jwks = |app: &TestApp| {
        let url = app.url("/.well-known/jwks.json");
        async move {
            let set: Value = bare().get(url).send().await.unwrap().json().await.unwrap();
            let mut kids: Vec<String> = set["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect();
            kids.sort();
            kids
        }
    };
    assert_eq!(jwks(&a).await, jwks(&b).await, "one key set per deployment");
    let token = mint(&a, &c).await.expect(200, "OK");
    let token = token.body["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let before = jwks(&a).await;
    a.restart().await;
    assert_eq!(jwks(&a).await, before, "the keys survive a restart");

    let (generation, retires_at) = b.core().rotate_signing_keys().await.expect("rotated");
    assert_eq!(generation, 2);
    // Within the refresh interval every instance signs with the new key, which was published
    // ahead; the old one stays published.
    a.advance(Duration::from_secs(11));
    b.advance(Duration::from_secs(11));
    let token = mint(&a, &c).await.expect(200, "OK");
    let token = token.body["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    assert_ne!(new_kid, first_kid);
    assert!(
        before.contains(&new_kid),
        "the new key was published before it signed"
    );
    let after = jwks(&b).await;
    assert!(after.contains(&first_kid) && after.contains(&new_kid));
    assert_eq!(after.len(), 3, "old, current and next: {after:?}");
    // Once the old key's last token has expired, it is no longer published.
    let now = a.core().now();
    a.advance(Duration::from_millis((retires_at - now + 11_000) as u64));
    let later = jwks(&a).await;
    assert!(!later.contains(&first_kid), "retired: {later:?}");
    assert!(later.contains(&new_kid));
}

#[tokio::test]
async fn token_settings_shape_the_claims_and_bad_ones_stop_start_up() {
    let app = spawn_with(|s| {
        s.tokens.audience = Some("https://api.example.com".into());
        s.tokens.ttl = Duration::from_secs(60);
    })
    .await;
    let c = app.register("aud", "aud@example.com").await;
    let minted = mint(&app, &c).await.expect(200, "OK");
    assert_eq!(minted.body["data"]["expires_in"], 60);
    let claims = verify(
        &app,
        minted.body["data"]["access_token"].as_str().unwrap(),
        "https://api.example.com",
    )
    .await;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .env_remove("MAILCODE_CONFIG")
        .args(["--public-url", "auth.example.com/path", "migrate"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--public-url / MAILCODE_PUBLIC_URL"), "{err}");
    for ttl in ["0", "3601"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailcode"))
            .env_remove("MAILCODE_CONFIG")
            .args(["--access-token-ttl", ttl, "migrate"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ttl {ttl}");
        assert!(
            err.contains("--access-token-ttl / MAILCODE_ACCESS_TOKEN_TTL"),
            "{err}"
        );
    }
}

/// A session written before user ids names only the account's row: the answer still names the
/// user id, read from the account (the flows' rule for every store; shown on the embedded
/// store, whose rows a second client can edit).
#[tokio::test]
async fn a_session_older_than_user_ids_still_names_the_user() {
    if backend() != Backend::Embedded {
        return;
    }
    let app = spawn_app().await;
    let c = app.register("old", "old@example.com").await;
    let me = app.get(&c, "/api/me").await.expect(200, "OK");
    let id = me.body["data"]["user_id"].clone();
    let pool = sqlx::SqlitePool::connect(app.settings.database_url.expose())
        .await
        .expect("the database");
    let n = sqlx::query("UPDATE sessions SET user_public_id = NULL")
        .execute(&pool)
        .await
        .expect("cleared")
        .rows_affected();
    assert!(n >= 1);
    pool.close().await;
    let a = answer(check(&app, &c, Method::GET).await).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["user_id"], id);
    app.get(&c, "/api/me").await.expect(200, "OK");
}
