//! SPEC §3 Rate limits and the per-email guess budget: 429 with Retry-After.
use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

fn retry_after(a: &Answer) -> u64 {
    a.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header")
}

#[tokio::test]
async fn five_codes_per_email_per_hour() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.request_code(&browser(), "/api/login/email-code", "rate@example.com")
            .await
            .expect(200, "CODE_SENT");
        app.advance(Duration::from_secs(61));
    }
    let a = app
        .request_code(&browser(), "/api/login/email-code", "rate@example.com")
        .await
        .expect(429, "RATE_LIMITED");
    let secs = retry_after(&a);
    assert!(secs > 60 && secs <= 3600, "{secs}");
    assert_eq!(a.body["data"]["retry_after"], secs);
    app.advance(Duration::from_secs(secs));
    app.request_code(&browser(), "/api/login/email-code", "rate@example.com")
        .await
        .expect(200, "CODE_SENT");
}

#[tokio::test]
async fn thirty_code_requests_per_ip_per_hour() {
    let app = spawn_app().await;
    for i in 0..30 {
        app.request_code(
            &browser(),
            "/api/login/email-code",
            &format!("ip{i}@example.com"),
        )
        .await
        .expect(200, "CODE_SENT");
    }
    let a = app
        .request_code(&browser(), "/api/login/email-code", "ip99@example.com")
        .await
        .expect(429, "RATE_LIMITED");
    assert!(retry_after(&a) > 0);
}

#[tokio::test]
async fn sixty_login_attempts_per_ip_per_hour() {
    let app = spawn_app().await;
    let body = json!({"username": "who", "password": PASSWORD, "email": "who@example.com", "code": "123456"});
    for _ in 0..60 {
        app.post(&bare(), "/api/login/get-token", body.clone())
            .await
            .expect(401, "NO_SESSION");
    }
    let a = app
        .post(&bare(), "/api/login/get-token", body)
        .await
        .expect(429, "RATE_LIMITED");
    assert!(retry_after(&a) > 0);
}

#[tokio::test]
async fn the_guess_budget_per_email_survives_resends_and_new_sessions() {
    let app = spawn_app().await;
    app.register("guess", "guess@example.com").await;
    let body = |code: &str| json!({"username": "guess", "password": PASSWORD, "email": "guess@example.com", "code": code});
    for _round in 0..2 {
        let c = browser();
        app.request_code(&c, "/api/login/email-code", "guess@example.com")
            .await
            .expect(200, "CODE_SENT");
        let code = app.read_code("guess@example.com").await;
        let wrong = if code == "000000" { "111111" } else { "000000" };
        for _ in 0..5 {
            app.post(&c, "/api/login/get-token", body(wrong))
                .await
                .expect(401, "CODE_INVALID");
        }
        app.advance(Duration::from_secs(61));
    }
    // Ten wrong guesses: a fresh code from a fresh session buys no fresh guesses.
    let a = app
        .request_code(&browser(), "/api/login/email-code", "guess@example.com")
        .await
        .expect(429, "RATE_LIMITED");
    assert!(retry_after(&a) > 0);
    app.advance(Duration::from_secs(3600));
    let c = browser();
    app.request_code(&c, "/api/login/email-code", "guess@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("guess@example.com").await;
    app.post(&c, "/api/login/get-token", body(&code))
        .await
        .expect(200, "LOGIN_SUCCESS");
}
