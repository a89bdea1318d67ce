//! SPEC §3 Robustness: bad input gets a clear 4xx and changes nothing.
use crate::helpers::*;
use serde_json::json;

async fn raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Answer {
    answer(
        bare()
            .post(app.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = spawn_app().await;
    let a = raw(
        &app,
        "/api/login/email-code",
        "application/json",
        "{\"email\": ",
    )
    .await
    .expect(400, "INVALID_JSON");
    assert!(a.set_cookie().is_none());
    raw(&app, "/api/login/email-code", "application/json", "")
        .await
        .expect(400, "INVALID_JSON");
    raw(
        &app,
        "/api/login/email-code",
        "application/json",
        "{\"email\":\"a@example.com\"} trailing",
    )
    .await
    .expect(400, "INVALID_JSON");
}

#[tokio::test]
async fn a_twenty_kib_body_is_413() {
    let app = spawn_app().await;
    let big = format!("{{\"email\": \"{}@example.com\"}}", "a".repeat(20 * 1024));
    raw(&app, "/api/login/email-code", "application/json", big)
        .await
        .expect(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn cr_lf_in_an_email_is_400_invalid_email() {
    let app = spawn_app().await;
    for email in [
        "a@example.com\r\nBcc: victim@example.com",
        "a@example.com\n",
        " a@example.com",
        "a@@example.com",
        "a@example",
        "",
    ] {
        let a = app
            .post(&bare(), "/api/login/email-code", json!({ "email": email }))
            .await
            .expect(400, "INVALID_EMAIL");
        assert_eq!(a.body["data"]["field"], "email");
    }
}

#[tokio::test]
async fn an_array_instead_of_a_string_is_400_invalid_input_naming_the_field() {
    let app = spawn_app().await;
    let a = app
        .post(
            &bare(),
            "/api/login/email-code",
            json!({ "email": ["a@example.com"] }),
        )
        .await
        .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "email");
    let a = app
        .post(
            &bare(),
            "/api/login/get-token",
            json!({"username": "u1", "password": PASSWORD, "email": "a@example.com"}),
        )
        .await
        .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "code");
    let a = app
        .post(&bare(), "/api/login/get-token", json!({"username": "u1", "password": PASSWORD, "email": "a@example.com", "code": "12ab56"}))
        .await
        .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "code");
}

#[tokio::test]
async fn duplicate_keys_are_400() {
    let app = spawn_app().await;
    let a = raw(
        &app,
        "/api/login/email-code",
        "application/json",
        r#"{"email":"a@example.com","email":"b@example.com"}"#,
    )
    .await
    .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["field"], "email");
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = spawn_app().await;
    raw(
        &app,
        "/api/login/email-code",
        "text/plain",
        r#"{"email":"a@example.com"}"#,
    )
    .await
    .expect(415, "UNSUPPORTED_MEDIA_TYPE");
    raw(
        &app,
        "/api/login/email-code",
        "application/x-www-form-urlencoded",
        "email=a%40example.com",
    )
    .await
    .expect(415, "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn internationalised_domains_are_one_address() {
    let app = spawn_app().await;
    app.request_code(
        &browser(),
        "/api/register/email-code",
        "anna@bücher.example",
    )
    .await
    .expect(200, "CODE_SENT");
    // The same address in punycode is under the same cooldown.
    app.request_code(
        &browser(),
        "/api/register/email-code",
        "Anna@xn--bcher-kva.example",
    )
    .await
    .expect(429, "RATE_LIMITED");
    let code = app.read_code("anna@xn--bcher-kva.example").await;
    assert_eq!(code.len(), 6);
}

#[tokio::test]
async fn blocked_domains_are_invalid_email() {
    let app = spawn_with(|s| s.blocked_domains = vec!["mailinator.com".into()]).await;
    app.post(
        &bare(),
        "/api/login/email-code",
        json!({"email": "x@mailinator.com"}),
    )
    .await
    .expect(400, "INVALID_EMAIL");
    app.post(
        &bare(),
        "/api/login/email-code",
        json!({"email": "x@example.com"}),
    )
    .await
    .expect(200, "CODE_SENT");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope() {
    let app = spawn_app().await;
    app.get(&bare(), "/api/nothing")
        .await
        .expect(404, "NOT_FOUND");
    app.get(&bare(), "/api/login/get-token")
        .await
        .expect(405, "METHOD_NOT_ALLOWED");
}
