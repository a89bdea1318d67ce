//! SPEC §3 Cross-origin and CSRF, and trusted proxies (client IP and Secure).
use crate::helpers::*;
use serde_json::json;

const SPA: &str = "http://localhost:5173";

async fn post_from(app: &TestApp, origin: &str, path: &str, body: serde_json::Value) -> Answer {
    answer(
        bare()
            .post(app.url(path))
            .header("origin", origin)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn cors_answers_preflight_with_credentials_only_for_allowed_origins() {
    let app = spawn_with(|s| s.cors_origins = vec![SPA.into()]).await;
    let pre = bare()
        .request(reqwest::Method::OPTIONS, app.url("/api/login/email-code"))
        .header("origin", SPA)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success());
    let h = pre.headers();
    assert_eq!(h.get("access-control-allow-origin").unwrap(), SPA);
    assert_eq!(h.get("access-control-allow-credentials").unwrap(), "true");
    let evil = bare()
        .request(reqwest::Method::OPTIONS, app.url("/api/login/email-code"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let a = post_from(
        &app,
        SPA,
        "/api/login/email-code",
        json!({"email": "spa@example.com"}),
    )
    .await
    .expect(200, "CODE_SENT");
    assert_eq!(a.headers.get("access-control-allow-origin").unwrap(), SPA);
    assert_ne!(a.headers.get("access-control-allow-origin").unwrap(), "*");
}

#[tokio::test]
async fn state_changing_requests_from_other_origins_are_rejected() {
    let app = spawn_with(|s| s.cors_origins = vec![SPA.into()]).await;
    let a = post_from(
        &app,
        "http://evil.example",
        "/api/login/email-code",
        json!({"email": "v@example.com"}),
    )
    .await
    .expect(403, "ORIGIN_REJECTED");
    assert!(a.msg().contains("--cors-origin"), "{}", a.msg());
    assert_eq!(
        a.body["data"]["own_origin"],
        app.base.as_str(),
        "says what it took for its own origin"
    );
    assert!(a.set_cookie().is_none());
    post_from(&app, "http://evil.example", "/api/logout", json!({}))
        .await
        .expect(403, "ORIGIN_REJECTED");
    // The service's own origin is fine.
    let own = app.base.clone();
    post_from(
        &app,
        &own,
        "/api/login/email-code",
        json!({"email": "own@example.com"}),
    )
    .await
    .expect(200, "CODE_SENT");
    // Without Origin, Sec-Fetch-Site and Referer decide.
    let a = answer(
        bare()
            .post(app.url("/api/logout"))
            .header("sec-fetch-site", "cross-site")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    a.expect(403, "ORIGIN_REJECTED");
    let a = answer(
        bare()
            .post(app.url("/api/logout"))
            .header("referer", "http://evil.example/page")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    a.expect(403, "ORIGIN_REJECTED");
}

#[tokio::test]
async fn bearer_requests_are_exempt_from_the_origin_check() {
    let app = spawn_app().await;
    app.register("tom", "tom@example.com").await;
    let signed = app
        .sign_in(&bare(), "tom", "tom@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    let sid = signed.session_cookie().unwrap();
    let a = answer(
        bare()
            .post(app.url("/api/logout"))
            .header("origin", "http://elsewhere.example")
            .bearer_auth(&sid)
            .send()
            .await
            .unwrap(),
    )
    .await;
    a.expect(200, "LOGGED_OUT");
}

async fn code_request_via_proxy(app: &TestApp, xff: &str, proto: &str) -> Answer {
    answer(
        bare()
            .post(app.url("/api/login/email-code"))
            .header("x-forwarded-for", xff)
            .header("x-forwarded-proto", proto)
            .json(&json!({"email": format!("{}@example.com", unique("p"))}))
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200, "CODE_SENT")
}

#[tokio::test]
async fn forwarded_headers_are_honoured_from_trusted_proxies() {
    let app = spawn_with(|s| s.trust_proxy = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let a = code_request_via_proxy(&app, "198.51.100.7", "https").await;
    let cookie = a.set_cookie().unwrap();
    assert!(cookie.starts_with("__Host-mailcode_sid="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // The client IP is the forwarded one: it has its own rate-limit budget.
    for _ in 0..29 {
        code_request_via_proxy(&app, "198.51.100.7", "https").await;
    }
    let refused = answer(
        bare()
            .post(app.url("/api/login/email-code"))
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({"email": "last@example.com"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused.expect(429, "RATE_LIMITED");
    code_request_via_proxy(&app, "198.51.100.8", "https").await;
}

#[tokio::test]
async fn forwarded_headers_are_ignored_from_untrusted_peers() {
    let app = spawn_app().await;
    let a = code_request_via_proxy(&app, "198.51.100.7", "https").await;
    let cookie = a.set_cookie().unwrap();
    assert!(cookie.starts_with("mailcode_sid="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // Spoofed addresses all count against the real peer.
    for i in 0..29 {
        code_request_via_proxy(&app, &format!("203.0.113.{i}"), "http").await;
    }
    let refused = answer(
        bare()
            .post(app.url("/api/login/email-code"))
            .header("x-forwarded-for", "203.0.113.200")
            .json(&json!({"email": "last@example.com"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused.expect(429, "RATE_LIMITED");
}

#[tokio::test]
async fn same_site_none_forces_secure() {
    let app = spawn_with(|s| s.cookie_same_site = mailcode::http::cookies::SameSite::None).await;
    let a = app
        .request_code(&bare(), "/api/login/email-code", "none@example.com")
        .await
        .expect(200, "CODE_SENT");
    let cookie = a.set_cookie().unwrap();
    assert!(
        cookie.contains("SameSite=None") && cookie.contains("Secure"),
        "{cookie}"
    );
}

/// CORS headers go where they mean something: answers to requests that send `Origin`, and the
/// assets (cacheable, so they always vary by origin). Other answers (`no-store`) carry none.
#[tokio::test]
async fn cors_headers_only_where_a_browser_reads_them() {
    let app = spawn_with(|s| s.cors_origins = vec![SPA.into()]).await;
    let plain = bare().get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(plain.status(), 401);
    for h in [
        "vary",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
    ] {
        assert!(plain.headers().get(h).is_none(), "{h} without Origin");
    }
    let cross = bare()
        .get(app.url("/api/me"))
        .header("origin", SPA)
        .send()
        .await
        .unwrap();
    let h = cross.headers();
    assert_eq!(h.get("access-control-allow-origin").unwrap(), SPA);
    assert_eq!(h.get("access-control-allow-credentials").unwrap(), "true");
    assert!(h.get("vary").unwrap().to_str().unwrap().contains("origin"));
    let asset = bare().get(app.url("/assets/app.js")).send().await.unwrap();
    assert_eq!(asset.status(), 200);
    assert!(asset
        .headers()
        .get("vary")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("origin"));
}

/// `GET /api/me` without `Origin` skips the router (`App::route`: docs/benchmarks.md, workload 1); with one it goes
/// through CORS and the router. Both answer alike, signed in or not, in either language: only
/// the CORS headers differ.
#[tokio::test]
async fn me_answers_alike_with_and_without_origin() {
    let app = spawn_with(|s| s.cors_origins = vec![SPA.into()]).await;
    let user = unique("alike");
    let email = format!("{user}@example.com");
    let signed_in = app.register(&user, &email).await;
    for (client, status, code) in [(&signed_in, 200, "OK"), (&bare(), 401, "NOT_LOGGED_IN")] {
        for lang in ["en", "zh-CN"] {
            let get = |origin: Option<&str>| {
                let mut req = client
                    .get(app.url("/api/me"))
                    .header("accept-language", lang);
                if let Some(o) = origin {
                    req = req.header("origin", o);
                }
                async move { answer(req.send().await.expect("request")).await }
            };
            let direct = get(None).await.expect(status, code);
            let routed = get(Some(SPA)).await.expect(status, code);
            assert_eq!(direct.body, routed.body, "{lang}");
            if status == 200 {
                assert_eq!(direct.body["data"]["username"], user.as_str());
                assert_eq!(direct.body["data"]["email"], email.as_str());
            }
            for h in ["content-type", "cache-control", "set-cookie"] {
                assert_eq!(direct.headers.get(h), routed.headers.get(h), "{h}");
            }
            assert_eq!(direct.headers["cache-control"], "no-store");
            for a in [&direct, &routed] {
                let id = a.headers["x-request-id"].to_str().unwrap();
                assert!(
                    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{id}"
                );
            }
            assert!(direct.headers.get("access-control-allow-origin").is_none());
            assert_eq!(routed.headers["access-control-allow-origin"], SPA);
        }
    }
    // The router still has the route for the other methods: HEAD answers, POST is refused.
    let head = signed_in.head(app.url("/api/me")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    app.post(&signed_in, "/api/me", json!({}))
        .await
        .expect(405, "METHOD_NOT_ALLOWED");
}
