//! Real SMTP: a code mail reaches a real SMTP server run by the harness; SMTP being down never
//! slows a code request, and the mail goes out once it is back.
use crate::helpers::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_code_mail_reaches_a_real_smtp_server() {
    let sink = SmtpSink::start();
    let url = sink.url();
    let app = spawn_with(|s| s.smtp_url = Some(url.into())).await;
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
    let app = spawn_with(|s| s.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into())).await;
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

/// A stream of mails goes out over connections that stay open, not one connection (and one
/// `QUIT`) per mail: a relay that counts connections must not see a connect storm. 80 mails fall
/// due together; the worker sends as many at once as `--mail-concurrency` allows, each over its
/// own connection, and the next mails reuse them.
#[tokio::test]
async fn a_burst_of_mail_reuses_its_smtp_connections() {
    const MAILS: usize = 80;
    let port = free_port();
    let app = spawn_with(|s| {
        s.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
        // Each visitor its own client address, so the per-IP limit does not stop the burst.
        s.trust_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    // SMTP is down while the codes are asked for: every mail fails once and waits for its retry,
    // so that all of them fall due together once the clock moves on.
    let mut visitors = Vec::new();
    for i in 0..MAILS {
        let c = browser();
        // Strict: a code request never waits for the worker's attempts (SPEC §3 Robustness).
        let a = c
            .post(app.url("/api/login/email-code"))
            .header("x-forwarded-for", format!("198.51.100.{}", i + 1))
            .json(&serde_json::json!({ "email": format!("burst{i}@example.com") }))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 200, "{:?}", a.text().await.ok());
        visitors.push(c);
    }
    for c in &visitors {
        assert_eq!(app.wait_for_delivery(c, "failed").await, "failed");
    }
    let sink = SmtpSink::start_on(port);
    app.advance(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.messages() < MAILS {
        assert!(
            Instant::now() < deadline,
            "{} of {MAILS} mails arrived",
            sink.messages()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in &visitors {
        assert_eq!(app.wait_for_delivery(c, "sent").await, "sent");
    }
    let opened = sink.connections();
    let slots = app.settings.mail_concurrency;
    assert!(
        (1..=slots).contains(&opened),
        "{MAILS} mails opened {opened} SMTP connections (at most {slots} expected: one per delivery slot, kept for the next mail)"
    );
}
