//! Real SMTP: a code mail reaches a real SMTP server run by the harness; SMTP being down never
//! slows a code request, and the mail goes out once it is back.
use crate::helpers::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_code_mail_reaches_a_real_smtp_server() {
    let sink = SmtpSink::start();
    let url = sink.url();
    let app = spawn_with(|s| s.smtp_url = Some(url)).await;
    let c = browser();
    app.request_code(&c, "/api/register/email-code", "smtp@example.com")
        .await
        .expect(200, "CODE_SENT");
    let code = read_code_from(sink.dir.path(), "smtp@example.com", "eml", &Seen::default()).await;
    // The code from the mail registers the account.
    app.post(
        &c,
        "/api/register",
        serde_json::json!({"username": "smtp", "password": PASSWORD, "email": "smtp@example.com", "code": code}),
    )
    .await
    .expect(201, "REGISTERED");
    // No outbox page with a real transport.
    assert_eq!(
        bare()
            .get(app.url("/dev/outbox"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn smtp_down_does_not_slow_a_code_request_and_mail_goes_out_when_it_returns() {
    let port = free_port();
    let app = spawn_with(|s| s.smtp_url = Some(format!("smtp://127.0.0.1:{port}"))).await;
    let c = browser();
    let t = Instant::now();
    app.request_code(&c, "/api/login/email-code", "later@example.com")
        .await
        .expect(200, "CODE_SENT");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "a code request waited for SMTP"
    );
    // The first attempt fails at once (connection refused): the page can say so right away.
    assert_eq!(app.wait_for_delivery(&c, "failed").await, "failed");
    let sink = SmtpSink::start_on(port);
    let text = read_mail_text(sink.dir.path(), "later@example.com").await;
    assert!(text.contains("no account uses this address"), "{text}");
    assert_eq!(app.wait_for_delivery(&c, "sent").await, "sent");
}

async fn read_mail_text(dir: &std::path::Path, to: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().extension().and_then(|x| x.to_str()) == Some("eml") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if text.contains(to) {
                    return text;
                }
            }
        }
        assert!(Instant::now() < deadline, "no mail to {to} arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
