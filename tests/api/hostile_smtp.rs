//! Mail servers that misbehave (SPEC §3 Robustness): one that accepts and never greets, one that
//! stalls in DATA, one that closes mid-message, one that limits its connections. In each case
//! the mail it holds is delayed alone, for a bounded time, and is retried and delivered (or
//! marked failed once its code expires); every other mail arrives at once.
use crate::helpers::*;
use crate::smtp_peer::{Misbehaviour, Plan, SmtpPeer};
use reqwest::Client;
use std::time::{Duration, Instant};

/// The attempt deadline in these tests (30 s by default): long enough that mails arriving
/// before it shows they did not wait for the held one.
const DEADLINE: Duration = Duration::from_secs(4);

async fn app_behind(peer: &SmtpPeer, deadline: Duration) -> TestApp {
    let url = peer.url();
    spawn_with(|s| {
        s.smtp_url = Some(url.into());
        s.smtp_timeout = deadline;
        // Each visitor its own client address, so the per-IP limit stays out of the way.
        s.trust_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

async fn ask_code(app: &TestApp, visitor: u8, email: &str) -> Client {
    let c = browser();
    let a = c
        .post(app.url("/api/login/email-code"))
        .header("x-forwarded-for", format!("198.51.100.{visitor}"))
        .json(&serde_json::json!({ "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200, "{:?}", a.text().await.ok());
    c
}

fn arrived(sink: &SmtpSink, to: &str) -> bool {
    std::fs::read_dir(sink.dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("eml"))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(to)))
}

async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < until, "{what} (waited {within:?})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metric(app: &TestApp, line_start: &str) -> f64 {
    let text = bare()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The first connection misbehaves; the mail on it is held while three later ones arrive well
/// before its attempt's deadline; then it is retried and delivered, and the page sees each state.
async fn a_held_mail_delays_only_itself(m: Misbehaviour, kind: &str) {
    let sink = SmtpSink::start();
    let peer = SmtpPeer::start(sink.port, Plan::First(1, m)).await;
    let app = app_behind(&peer, DEADLINE).await;
    let failed_before = metric(
        &app,
        &format!("mailcode_mail_attempts_failed_total{{kind=\"{kind}\"}}"),
    )
    .await;
    let held = ask_code(&app, 1, "held@example.com").await;
    wait_until("the worker connects", Duration::from_secs(5), || {
        peer.accepted() >= 1
    })
    .await;
    let t = Instant::now();
    let others = ["one@example.com", "two@example.com", "three@example.com"];
    let mut clients = Vec::new();
    for (i, to) in others.iter().enumerate() {
        clients.push(ask_code(&app, 2 + i as u8, to).await);
    }
    wait_until(
        "the other mails arrive while one is held",
        Duration::from_secs(3),
        || others.iter().all(|to| arrived(&sink, to)),
    )
    .await;
    assert!(
        t.elapsed() < DEADLINE,
        "the other mails waited for the held one"
    );
    for c in &clients {
        assert_eq!(app.wait_for_delivery(c, "sent").await, "sent");
    }
    // The held attempt ends (at its deadline or when the peer closed), counts, and the page
    // says so.
    assert!(!arrived(&sink, "held@example.com"));
    assert_eq!(app.wait_for_delivery(&held, "failed").await, "failed");
    assert!(
        metric(
            &app,
            &format!("mailcode_mail_attempts_failed_total{{kind=\"{kind}\"}}")
        )
        .await
            > failed_before,
        "the failed attempt ({kind}) was not counted"
    );
    // Its retry is due after the backoff: then it goes out over a good connection.
    app.advance(Duration::from_secs(3));
    wait_until(
        "the held mail is retried and delivered",
        Duration::from_secs(10),
        || arrived(&sink, "held@example.com"),
    )
    .await;
    assert_eq!(app.wait_for_delivery(&held, "sent").await, "sent");
}

#[tokio::test]
async fn a_mail_server_that_never_greets_delays_only_the_mail_it_holds() {
    a_held_mail_delays_only_itself(Misbehaviour::NeverGreets, "deadline").await;
}

#[tokio::test]
async fn a_mail_server_that_stalls_in_data_delays_only_the_mail_it_holds() {
    a_held_mail_delays_only_itself(Misbehaviour::StallsInData, "deadline").await;
}

#[tokio::test]
async fn a_mail_server_that_closes_mid_message_delays_only_the_mail_it_holds() {
    a_held_mail_delays_only_itself(Misbehaviour::ClosesMidMessage, "error").await;
}

/// A relay that takes two connections at a time turns the rest away with 421: those attempts
/// fail, are retried, and every mail arrives.
#[tokio::test]
async fn a_relay_that_limits_its_connections_gets_every_mail_in_the_end() {
    let sink = SmtpSink::start();
    let peer = SmtpPeer::start(sink.port, Plan::AtMost(2)).await;
    let app = app_behind(&peer, DEADLINE).await;
    let to: Vec<String> = (0..8).map(|i| format!("limited{i}@example.com")).collect();
    let mut clients = Vec::new();
    for (i, t) in to.iter().enumerate() {
        clients.push(ask_code(&app, 10 + i as u8, t).await);
    }
    let until = Instant::now() + Duration::from_secs(30);
    while !to.iter().all(|t| arrived(&sink, t)) {
        assert!(Instant::now() < until, "not every mail arrived");
        // Retries fall due on the app's clock.
        app.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        peer.turned_away() > 0,
        "the relay never hit its limit: the test proves nothing"
    );
    for c in &clients {
        assert_eq!(app.wait_for_delivery(c, "sent").await, "sent");
    }
}

/// A server that never answers at all: every attempt ends at its deadline, and once the code has
/// expired the mail is dropped, counted, and attempts stop.
#[tokio::test]
async fn a_mail_that_never_gets_through_is_failed_and_dropped_when_its_code_expires() {
    let peer = SmtpPeer::start(free_port(), Plan::Always(Misbehaviour::NeverGreets)).await;
    let app = app_behind(&peer, Duration::from_secs(1)).await;
    let dropped_before = metric(&app, "mailcode_mail_dropped_total").await;
    let c = ask_code(&app, 1, "never@example.com").await;
    assert_eq!(app.wait_for_delivery(&c, "failed").await, "failed");
    // Past the code's lifetime (10 minutes): the next time the mail falls due it is dropped.
    app.advance(Duration::from_secs(11 * 60));
    let until = Instant::now() + Duration::from_secs(10);
    while metric(&app, "mailcode_mail_dropped_total").await <= dropped_before {
        assert!(Instant::now() < until, "the expired mail was never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = peer.accepted();
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.advance(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peer.accepted(), attempts, "a dropped mail was tried again");
}
