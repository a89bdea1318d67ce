//! SPEC §7, one delivery attempt against real receivers on loopback: signed as Standard
//! Webhooks define it (verified with their library), within its deadline whatever the
//! receiver does, redirects not followed. The flows' events end to end: `events.rs`.
use axum::http::{HeaderMap, StatusCode};
use mailcode::domain::UserId;
use mailcode::webhooks::deliver::{Outcome, Sender};
use mailcode::webhooks::secret::WebhookSecret;
use mailcode::webhooks::{Event, EventData, EventKind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn event() -> Event {
    let data = EventData {
        user_id: UserId::new(1_800_000_000_000),
        username: "ada".into(),
        email: "ada@example.com".into(),
        session_id: None,
        ip: None,
        user_agent: None,
    };
    Event::new(
        EventKind::UserCreated,
        chrono::Utc::now().timestamp_millis(),
        &data,
    )
    .expect("JSON")
}

/// A receiver answering `status`, recording whether each request's signature verified.
async fn receiver(status: StatusCode, secret_text: String) -> (String, Arc<Mutex<Vec<bool>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let log = log.clone();
        let secret_text = secret_text.clone();
        async move {
            let ok = standardwebhooks::Webhook::new(&secret_text)
                .map(|w| w.verify(body.as_bytes(), &headers).is_ok())
                .unwrap_or(false);
            log.lock().expect("log").push(ok);
            (
                status,
                [("location", "http://127.0.0.1:9/elsewhere")],
                "x".repeat(10_000),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

fn secret() -> (WebhookSecret, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("webhook-secret");
    let s = WebhookSecret::load_or_create(&path).expect("secret");
    let text = std::fs::read_to_string(&path)
        .expect("file")
        .trim()
        .to_owned();
    (s, text)
}

#[tokio::test]
async fn an_attempt_is_signed_and_judged_by_the_answer_alone() {
    let (s, text) = secret();
    let sender = Sender::new(s, Duration::from_secs(2)).expect("sender");
    let e = event();
    let now = chrono::Utc::now().timestamp_millis();
    let (ok_url, ok_seen) = receiver(StatusCode::NO_CONTENT, text.clone()).await;
    assert_eq!(
        sender.attempt(&ok_url, &e.id_for(0), &e.body, now).await,
        Outcome::Delivered { status: 204 }
    );
    assert_eq!(
        *ok_seen.lock().unwrap(),
        vec![true],
        "the signature verifies"
    );
    for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::FOUND] {
        let (url, seen) = receiver(status, text.clone()).await;
        match sender.attempt(&url, &e.id_for(0), &e.body, now).await {
            Outcome::Failed { reason } => {
                assert!(
                    reason.starts_with(&format!("answered {}", status.as_u16())),
                    "{reason}"
                );
                assert!(
                    reason.len() < 600,
                    "the answer is kept short: {} bytes",
                    reason.len()
                );
            }
            other => panic!("{status}: {other:?}"),
        }
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "{status}: one request, no redirect followed"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_costs_one_deadline() {
    let (s, _) = secret();
    let sender = Sender::new(s, Duration::from_millis(800)).expect("sender");
    // Accepts, reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let e = event();
    let started = Instant::now();
    let out = sender
        .attempt(
            &url,
            &e.id_for(0),
            &e.body,
            chrono::Utc::now().timestamp_millis(),
        )
        .await;
    let took = started.elapsed();
    assert!(
        matches!(&out, Outcome::Failed { reason } if reason.contains("no answer within")),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    held.abort();
}
