//! Health, readiness, metrics and the OpenAPI document.
use crate::helpers::*;
use mailcode::app::open_stores;
use mailcode::crypto::Secret;
use std::time::Duration;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    app.get(&bare(), "/healthz").await.expect(200, "OK");
    let r = app.get(&bare(), "/readyz").await.expect(200, "OK");
    assert_eq!(r.body["data"]["sessions"], "ok");
    assert_eq!(r.body["data"]["users"], "ok");
    assert_eq!(r.body["data"]["secret"], "ok");
}

/// The fingerprint `/readyz` shows is the secret file's, and the secret itself is nowhere.
#[tokio::test]
async fn readiness_shows_the_secret_fingerprint_never_the_secret() {
    let app = spawn_app().await;
    let r = app.get(&bare(), "/readyz").await.expect(200, "OK");
    let text = std::fs::read_to_string(&app.settings.secret_file).expect("the secret file");
    let secret = Secret::load_or_create(&app.settings.secret_file).expect("the secret");
    assert_eq!(r.body["data"]["secret_fingerprint"], secret.fingerprint());
    assert_eq!(
        r.body["data"]["deployment_secret_fingerprint"],
        secret.fingerprint()
    );
    assert!(!r.body.to_string().contains(text.trim()));
}

/// Another instance recorded another secret after this one started (a rotation, or a Redis
/// that forgot the record and heard from another instance first): `/readyz` says so, 503, so
/// that the load balancer stops sending visitors whose codes this instance would refuse.
#[tokio::test]
async fn readiness_is_refused_when_another_secret_became_the_deployments() {
    let app = spawn_app().await;
    let ours = app.get(&bare(), "/readyz").await.expect(200, "OK").body["data"]
        ["secret_fingerprint"]
        .as_str()
        .expect("a fingerprint")
        .to_owned();
    // Another instance's view of the same stores.
    let (stores, _) = open_stores(&app.settings, Duration::from_secs(2))
        .await
        .expect("the stores open");
    let other = Secret::random().fingerprint();
    assert_eq!(
        stores.deployment.replace(&other).await.unwrap(),
        Some(ours.clone())
    );
    let r = app
        .get(&bare(), "/readyz")
        .await
        .expect(503, "SECRET_MISMATCH");
    assert_eq!(r.body["data"]["secret"], "mismatch");
    assert_eq!(r.body["data"]["secret_fingerprint"], ours.as_str());
    assert_eq!(r.body["data"]["deployment_secret_fingerprint"], other);
    assert_eq!(r.body["data"]["sessions"], "ok");
    assert!(r.msg().contains("MAILCODE_SECRET_FILE"), "{}", r.msg());
    // This instance's secret made the deployment's again: ready again.
    stores.deployment.replace(&ours).await.unwrap();
    app.get(&bare(), "/readyz").await.expect(200, "OK");
}

#[tokio::test]
async fn metrics_count_codes() {
    let app = spawn_app().await;
    app.request_code(&browser(), "/api/login/email-code", "m@example.com")
        .await
        .expect(200, "CODE_SENT");
    let text = bare()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("mailcode_codes_issued_total"), "{text}");
    assert!(text.contains("mailcode_http_requests_total"));
    assert!(
        text.contains("mailcode_store_duration_seconds"),
        "store latency is measured"
    );
    // Histograms with buckets (they add up across instances), not per-process summaries.
    assert!(
        text.contains("mailcode_http_request_duration_seconds_bucket{le=\"0.005\"}"),
        "{text}"
    );
    assert!(text.contains("mailcode_store_duration_seconds_bucket{"));
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc = app.get(&bare(), "/api/openapi.json").await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().expect("paths");
    for p in [
        "/api/login/email-code",
        "/api/login/get-token",
        "/api/register/email-code",
        "/api/register",
        "/api/login/code",
        "/api/password/email-code",
        "/api/password/reset",
        "/api/me",
        "/api/logout",
        "/api/sessions",
        "/api/sessions/{id}",
        "/api/login/email-code/status",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn messages_follow_accept_language() {
    let app = spawn_app().await;
    let zh = answer(
        bare()
            .get(app.url("/api/me"))
            .header("accept-language", "zh-CN")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let en = answer(
        bare()
            .get(app.url("/api/me"))
            .header("accept-language", "en-US")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let none = answer(bare().get(app.url("/api/me")).send().await.unwrap()).await;
    assert_eq!(zh.code(), "NOT_LOGGED_IN");
    assert_ne!(zh.msg(), en.msg());
    assert_eq!(en.msg(), none.msg());
    assert!(zh.msg().contains("登录"));
}

#[tokio::test]
async fn the_web_page_and_outbox_are_served() {
    let app = spawn_app().await;
    let page = bare().get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/assets/app.js"));
    assert_eq!(
        bare()
            .get(app.url("/assets/app.js"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        bare()
            .get(app.url("/dev/outbox"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn every_answer_names_its_request() {
    let app = spawn_app().await;
    let client = browser();
    let first = app
        .get(&client, "/api/me")
        .await
        .expect(401, "NOT_LOGGED_IN");
    let second = app.get(&client, "/healthz").await.expect(200, "OK");
    let id = |a: &Answer| {
        a.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("x-request-id on every answer")
    };
    let (a, b) = (id(&first), id(&second));
    for v in [&a, &b] {
        assert_eq!(v.len(), 16, "{v}");
        assert!(
            v.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{v}"
        );
    }
    assert_ne!(a, b, "each request gets its own id");
}
