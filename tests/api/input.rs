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

/// A Chinese reader learns why the address was refused, in Chinese: the reason is not dropped
/// and not left in English.
#[tokio::test]
async fn an_invalid_email_says_why_in_chinese() {
    let app = spawn_with(|s| s.blocked_domains = vec!["mailinator.com".into()]).await;
    for (email, why) in [
        ("a@@example.com", "邮箱地址无效：地址中有不止一个 @"),
        (
            "a@example",
            "邮箱地址无效：域名至少需要两段，例如 example.com",
        ),
        ("x@mailinator.com", "邮箱地址无效：不接受该邮箱域名"),
    ] {
        let a = answer(
            bare()
                .post(app.url("/api/login/email-code"))
                .header("accept-language", "zh-CN")
                .json(&json!({ "email": email }))
                .send()
                .await
                .expect("request"),
        )
        .await
        .expect(400, "INVALID_EMAIL");
        assert_eq!(a.msg(), why, "{email}");
    }
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

/// SPEC §3 Accounts: names are unique by NFKC_Casefold, so look-alike forms of a name are that
/// name: taken at registration (after a valid code, like any taken name), and the account's
/// own at sign-in.
#[tokio::test]
async fn fullwidth_and_capital_forms_of_a_name_are_that_name() {
    let app = spawn_app().await;
    app.register("alice", "alice@example.com").await;
    let c = browser();
    app.request_code(&c, "/api/register/email-code", "other@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = app.read_code("other@example.com").await;
    for name in ["ａｌｉｃｅ", "ALICE", "ＡＬＩＣＥ", "𝐚𝐥𝐢𝐜𝐞"] {
        app.post(
            &c,
            "/api/register",
            json!({"username": name, "password": PASSWORD, "email": "other@example.com", "code": code}),
        )
        .await
        .expect(409, "USERNAME_TAKEN");
    }
    // Signing in by a fullwidth form is signing in as `alice`.
    let a = app
        .sign_in(&browser(), "ＡＬＩＣＥ", "alice@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    assert_eq!(a.body["data"]["username"], "alice", "shown as registered");
}

/// A name that mixes scripts the way an impersonator would (UTS #39 "highly restrictive") is
/// refused before anything else is looked at, and the message names the rule in both languages.
#[tokio::test]
async fn a_name_mixing_scripts_is_refused_naming_the_rule() {
    let app = spawn_app().await;
    let body = json!({"username": "аlice", "password": PASSWORD, "email": "a@example.com", "code": "123456"});
    let a = app
        .post(&bare(), "/api/register", body.clone())
        .await
        .expect(400, "INVALID_INPUT");
    assert!(a.set_cookie().is_none());
    assert_eq!(a.body["data"]["field"], "username");
    assert_eq!(a.body["data"]["rule"], "mixed_scripts");
    assert_eq!(
        a.msg(),
        "The field `username` is not valid: the username mixes scripts (Cyrillic and Latin) \
         in a way that can imitate another name."
    );
    let zh = answer(
        bare()
            .post(app.url("/api/register"))
            .header("accept-language", "zh-CN")
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect(400, "INVALID_INPUT");
    assert!(
        zh.msg().contains("username")
            && zh.msg().contains("Cyrillic and Latin")
            && zh.msg().contains("冒充"),
        "{}",
        zh.msg()
    );
    // An invisible letter (a Hangul filler) is named by its code point.
    let a = app
        .post(&bare(), "/api/register", json!({"username": "a\u{3164}b", "password": PASSWORD, "email": "a@example.com", "code": "123456"}))
        .await
        .expect(400, "INVALID_INPUT");
    assert_eq!(a.body["data"]["rule"], "invisible_character");
    assert!(a.msg().contains("U+1160"), "{}", a.msg());
}

/// Names in one script, or scripts that are written together, are welcome.
#[tokio::test]
async fn names_in_one_script_are_welcome() {
    let app = spawn_app().await;
    for (i, name) in ["张伟", "Müller", "Алиса", "Ὀδυσσεύς", "山田たろう"]
        .into_iter()
        .enumerate()
    {
        let email = format!("user{i}@example.com");
        app.register(name, &email).await;
        let a = app
            .sign_in(&browser(), name, &email)
            .await
            .expect(200, "LOGIN_SUCCESS");
        assert_eq!(a.body["data"]["username"], name);
    }
    // And in capitals, they are the same names.
    let a = app
        .sign_in(&browser(), "MÜLLER", "user1@example.com")
        .await
        .expect(200, "LOGIN_SUCCESS");
    assert_eq!(a.body["data"]["username"], "Müller");
}
