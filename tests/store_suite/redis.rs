//! The suite against Redis (one server per test binary, one key prefix per test), then what only
//! Redis has to prove: TTLs on every key, no secret in the data, one command per load, the
//! memory budget per session, and recovery when the server goes away and comes back.
#[path = "../support/redis_server.rs"]
pub(crate) mod redis_server;

use crate::suite::Backend;
use crate::suite::{code, email, key, session, user_id_for, NOW};
use mailcode::crypto::{new_session_id, session_key, Secret};
use mailcode::domain::{CodePurpose, OneTimeCode, SessionKind, SessionRecord, SessionUser};
use mailcode::store::redis::{session_tag, Keys, RedisStore};
use mailcode::store::{
    CodeCheck, CodeRecord, CodeStore, Health, Limit, LimitCheck, LimitStore, Outbox, Redeem,
    Redeemed, SecretRecord, SessionStore, StoreError,
};
use redis::aio::MultiplexedConnection;
use redis_server::RedisServer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIN: i64 = 60_000;

pub(crate) fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) async fn open_on(
    server: &RedisServer,
    prefix: &str,
    op_timeout: Duration,
) -> RedisStore {
    RedisStore::connect(&server.url(), prefix, op_timeout)
        .await
        .expect("redis connects")
}

async fn sessions() -> Arc<dyn Backend> {
    let server = RedisServer::shared();
    Arc::new(open_on(server, &unique_prefix(), Duration::from_secs(2)).await)
}

crate::session_store_tests!(sessions);

async fn queues() -> (Arc<dyn Outbox>, Arc<dyn Outbox>, Arc<dyn Backend>) {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let a = Arc::new(open_on(server, &prefix, Duration::from_secs(2)).await);
    let b = open_on(server, &prefix, Duration::from_secs(2)).await;
    (a.clone(), Arc::new(b), a)
}

crate::mail_queue_tests!(queues);

async fn secret_records() -> (Arc<dyn SecretRecord>, Arc<dyn SecretRecord>) {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let a = open_on(server, &prefix, Duration::from_secs(2)).await;
    let b = open_on(server, &prefix, Duration::from_secs(2)).await;
    (Arc::new(a), Arc::new(b))
}

crate::secret_record_tests!(secret_records);

/// On one Redis: one script decides the limits and writes the rest (see `redis/code_request.rs`).
#[tokio::test]
async fn a_code_request_writes_all_or_nothing() {
    let s = open_on(
        RedisServer::shared(),
        &unique_prefix(),
        Duration::from_secs(2),
    )
    .await;
    crate::suite::a_code_request_writes_all_or_nothing(
        Arc::new(s.clone()),
        Arc::new(s.clone()),
        Arc::new(s),
    )
    .await
}

pub(crate) async fn raw(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

async fn keys_under(con: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys
}

/// Every key and everything stored under it, as text.
async fn dump(con: &mut MultiplexedConnection, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for k in keys_under(con, prefix).await {
        let kind: String = redis::cmd("TYPE").arg(&k).query_async(con).await.unwrap();
        let value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&k).query_async(con).await.unwrap(),
            "zset" => {
                // Members are raw session keys (32 bytes): shown in hex.
                let members: Vec<(Vec<u8>, i64)> = redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(con)
                    .await
                    .unwrap();
                members
                    .iter()
                    .map(|(m, score)| format!("{} {score}", hex::encode(m)))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            other => panic!("unexpected type {other} at {k}"),
        };
        out.push((k, value));
    }
    out
}

/// Signed-in sessions, their codes, a limit and the user index, written the way the app does.
async fn write_one_of_each(s: &RedisStore) {
    s.create_session(&session(1, None)).await.unwrap();
    s.create_session(&session(2, Some(5))).await.unwrap();
    s.issue_code(&code(1, CodePurpose::Login, "a@example.com", "mac1"))
        .await
        .unwrap();
    s.issue_code(&code(1, CodePurpose::Reset, "a@example.com", "mac2"))
        .await
        .unwrap();
    s.hit_limit("email:a@example.com", 5, Duration::from_secs(3600), NOW)
        .await
        .unwrap();
    let signed_in = s
        .redeem_code(
            &key(1),
            CodePurpose::Login,
            &email("a@example.com"),
            "mac1",
            NOW + 1,
            5,
            Redeem::SignIn {
                new: session(3, Some(5)),
                events: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(signed_in, Redeemed::SignedIn);
    s.issue_code(&code(3, CodePurpose::Register, "b@example.com", "mac3"))
        .await
        .unwrap();
}

#[tokio::test]
async fn every_key_has_a_ttl() {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let s = open_on(server, &prefix, Duration::from_secs(2)).await;
    write_one_of_each(&s).await;
    let mut con = raw(server).await;
    let keys = keys_under(&mut con, &prefix).await;
    let kinds = ["}s", "u:{5}", "l:email:"];
    for kind in kinds {
        assert!(
            keys.iter().any(|k| k.contains(kind)),
            "a {kind} key was written: {keys:?}"
        );
    }
    assert!(
        !keys.iter().any(|k| k.contains("}c:")),
        "codes live in their sessions' records: {keys:?}"
    );
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} has a TTL, got {ttl}");
    }
    // TTLs follow the logical lifetimes, measured from the caller's clock, not Redis' clock.
    let pttl = |k: String| {
        let mut con = con.clone();
        async move {
            let t: i64 = redis::cmd("PTTL")
                .arg(k)
                .query_async(&mut con)
                .await
                .unwrap();
            t
        }
    };
    let names = Keys::new(&prefix);
    let sess = pttl(names.session(&key(2))).await;
    assert!(sess > 29 * MIN && sess <= 30 * MIN, "session: {sess}");
    // A code put into a session's record leaves the session's TTL as it was.
    let with_code = pttl(names.session(&key(3))).await;
    assert!(
        with_code > 29 * MIN && with_code <= 30 * MIN,
        "session with a code: {with_code}"
    );
    let index = pttl(names.index(5)).await;
    assert!(index > 7 * 24 * 60 * MIN - MIN, "index: {index}");
    let limit = pttl(names.limit("email:a@example.com")).await;
    assert!(limit > 59 * MIN && limit <= 60 * MIN, "limit: {limit}");
    // Touching renews the session's TTL to the new idle expiry.
    s.touch_session(&key(2), NOW + 10 * MIN, NOW + 40 * MIN)
        .await
        .unwrap();
    let touched = pttl(names.session(&key(2))).await;
    assert!(
        touched > 29 * MIN && touched <= 30 * MIN,
        "touched: {touched}"
    );
}

/// A mail as a code request queues it, created at `created_at`, its code valid for 10 minutes.
fn queued_mail(mail_ref: &str, created_at: i64) -> mailcode::store::OutgoingMail {
    mailcode::store::OutgoingMail {
        mail_ref: mail_ref.into(),
        code: Some(crate::suite::code_for_key()),
        to: "a@example.com".into(),
        order: "sealed order".into(),
        expires_at: NOW + 10 * MIN,
        created_at,
    }
}

/// A queued mail is an entry of the list of new mails, no key of its own; its delivery state
/// goes into its code (which keeps its TTL), and the queue keys go once they are empty. What an
/// older build queued (a bare reference) or an entry nobody can read is dropped when claimed,
/// without holding up the mails behind it.
#[tokio::test]
async fn a_mail_is_a_queue_entry_and_its_state_lives_in_its_code() {
    use mailcode::store::Delivery;
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let s = open_on(server, &prefix, Duration::from_secs(2)).await;
    let mut con = raw(server).await;
    let names = Keys::new(&prefix);
    let c = CodeRecord {
        mail_ref: "sent1".into(),
        ..code(7, CodePurpose::Login, "a@example.com", "mac")
    };
    s.create_session_with_code(&session(7, None), &c)
        .await
        .unwrap();
    s.enqueue(&mailcode::store::OutgoingMail {
        code: Some(c.key()),
        ..queued_mail("sent1", NOW)
    })
    .await
    .unwrap();
    let mut keys = keys_under(&mut con, &prefix).await;
    keys.sort();
    let mut expected = vec![names.session(&key(7)), names.mail_new()];
    expected.sort();
    assert_eq!(keys, expected, "no key per mail, nor per code");
    assert_eq!(s.delivery(&c).await.unwrap(), Some(Delivery::Queued));
    let claimed = s.claim_due(NOW, NOW + MIN, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].mail.mail_ref, "sent1");
    s.mark_sent(&claimed, NOW + 1).await.unwrap();
    assert_eq!(s.delivery(&c).await.unwrap(), Some(Delivery::Sent));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(names.session(&key(7)))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 29 * MIN, "the session keeps its TTL: {ttl}");
    let mut left = keys_under(&mut con, &prefix).await;
    left.sort();
    expected.retain(|k| *k != names.mail_new());
    assert_eq!(
        left, expected,
        "the mail and its address are gone once sent"
    );
    // A bare reference as builds before this one queued it, an entry nobody can read, then a
    // mail: only the mail comes out, and nothing is left leased.
    let _: () = redis::cmd("RPUSH")
        .arg(names.mail_new())
        .arg("old1")
        .arg("x\u{1f}y")
        .query_async(&mut con)
        .await
        .unwrap();
    let m = queued_mail("new1", NOW);
    s.enqueue(&m).await.unwrap();
    let claimed = s.claim_due(NOW, NOW + MIN, 10).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|q| q.mail.mail_ref.as_str())
            .collect::<Vec<_>>(),
        ["new1"]
    );
    let leased: Vec<String> = redis::cmd("ZRANGE")
        .arg(names.mail_queue())
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        leased,
        [claimed[0].receipt.clone()],
        "only the mail is leased"
    );
}

/// New mails wait in a list, claimed oldest first; a retry that is due is claimed before them;
/// a claimed mail moves to the sorted set under its lease.
#[tokio::test]
async fn new_mails_wait_in_a_list_behind_retries() {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let s = open_on(server, &prefix, Duration::from_secs(2)).await;
    let mut con = raw(server).await;
    let names = Keys::new(&prefix);
    let enqueue = |m: mailcode::store::OutgoingMail| {
        let s = s.clone();
        async move { s.enqueue(&m).await.unwrap() }
    };
    assert_eq!(s.next_due().await.unwrap(), None);
    enqueue(queued_mail("new1", NOW + 5)).await;
    enqueue(queued_mail("new2", NOW + 6)).await;
    assert_eq!(
        s.next_due().await.unwrap(),
        Some(NOW + 5),
        "the oldest new mail"
    );
    let refs = |got: &[mailcode::store::QueuedMail]| {
        got.iter()
            .map(|q| (q.mail.mail_ref.clone(), q.attempts))
            .collect::<Vec<_>>()
    };
    let first = s.claim_due(NOW + 10, NOW + MIN, 1).await.unwrap();
    assert_eq!(refs(&first), [("new1".to_string(), 0)]);
    s.mark_retry(&first[0], NOW + 7, "connection refused")
        .await
        .unwrap();
    assert_eq!(
        s.next_due().await.unwrap(),
        Some(NOW + 6),
        "new2 is older than the retry"
    );
    assert_eq!(
        refs(&s.claim_due(NOW + 10, NOW + MIN, 10).await.unwrap()),
        [("new1".to_string(), 1), ("new2".to_string(), 0)]
    );
    assert_eq!(
        s.next_due().await.unwrap(),
        Some(NOW + MIN),
        "the leases end"
    );
    let leased: Vec<String> = redis::cmd("ZRANGE")
        .arg(names.mail_queue())
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(leased.len(), 2, "every claimed mail is leased: {leased:?}");
    assert!(s
        .claim_due(NOW + 20, NOW + MIN, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn redis_holds_no_session_id_and_no_code() {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let s = open_on(server, &prefix, Duration::from_secs(2)).await;
    let secret = Secret::random();
    let (old_id, new_id) = (new_session_id(), new_session_id());
    let (old, new) = (session_key(&old_id), session_key(&new_id));
    let the_code = OneTimeCode::parse("918273").unwrap();
    let to = email("someone@example.com");
    let mac = secret.code_mac(&old, CodePurpose::Login, &to, &the_code);

    let mut pre = session(0, None);
    pre.key = old.clone();
    s.create_session(&pre).await.unwrap();
    s.issue_code(&CodeRecord {
        session: old.clone(),
        mac: mac.clone(),
        ..code(0, CodePurpose::Login, to.as_str(), "")
    })
    .await
    .unwrap();
    let mut con = raw(server).await;
    let before = dump(&mut con, &prefix).await;
    let mut signed = session(0, Some(77));
    signed.key = new.clone();
    let r = s
        .redeem_code(
            &old,
            CodePurpose::Login,
            &to,
            &mac,
            NOW + 1,
            5,
            Redeem::SignIn {
                new: signed,
                events: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r, Redeemed::SignedIn);
    let after = dump(&mut con, &prefix).await;

    let everything: String = before
        .iter()
        .chain(after.iter())
        .map(|(k, v)| format!("{k}\n{v}\n"))
        .collect();
    for secret_text in [old_id.as_str(), new_id.as_str(), the_code.as_str()] {
        assert!(
            !everything.contains(secret_text),
            "{secret_text:?} found in Redis:\n{everything}"
        );
    }
    // What is there instead: the hashes.
    let names = Keys::new(&prefix);
    let old_session = names.session(&old);
    assert!(before
        .iter()
        .any(|(k, v)| k == &old_session && v.contains(&mac)));
    assert!(after.iter().any(|(k, _)| k == &names.session(&new)));
    assert!(after.iter().any(|(_, v)| v.contains(new.as_str())), "index");
}

/// `calls` per command since the server started, INFO itself left out. Commands that a script
/// runs count too, under their own names.
async fn command_calls(con: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let name = name.strip_prefix("cmdstat_")?;
            let calls = stats
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

fn calls_since(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut d: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    d.sort();
    d
}

#[tokio::test]
async fn loading_a_session_is_one_command() {
    // A private server: the shared one counts every other test's commands too.
    let server = RedisServer::start();
    let s = open_on(&server, "mailcode:", Duration::from_secs(2)).await;
    let mut con = raw(&server).await;
    s.create_session(&session(1, Some(3))).await.unwrap();
    s.touch_session(&key(1), NOW + MIN, NOW + 31 * MIN)
        .await
        .unwrap(); // loads the script once

    let before = command_calls(&mut con).await;
    for _ in 0..10 {
        assert!(s.load_session(&key(1), NOW + MIN).await.unwrap().is_some());
    }
    let after = command_calls(&mut con).await;
    assert_eq!(
        calls_since(&before, &after),
        vec![("get".to_owned(), 10)],
        "one GET per load"
    );

    s.touch_session(&key(1), NOW + 2 * MIN, NOW + 32 * MIN)
        .await
        .unwrap();
    let touched = command_calls(&mut con).await;
    assert_eq!(
        calls_since(&after, &touched),
        vec![
            ("evalsha".to_owned(), 1),
            ("get".to_owned(), 1),
            ("set".to_owned(), 1)
        ],
        "one EVALSHA per renewal (its GET and SET run inside Redis)"
    );
}

#[tokio::test]
async fn the_limits_of_a_code_request_are_one_command() {
    let server = RedisServer::start();
    let s = open_on(&server, "mailcode:", Duration::from_secs(2)).await;
    let mut con = raw(&server).await;
    let hour = Duration::from_secs(3600);
    let checks = |n: u32| {
        [
            LimitCheck::hit(format!("ip:code:203.0.113.{n}"), 30, hour),
            LimitCheck::peek(format!("guess:{n}@example.com"), 10),
            LimitCheck::hit(format!("email:{n}@example.com"), 5, hour)
                .spaced("login", Duration::from_secs(60)),
        ]
    };
    s.hit_limits(&checks(1), NOW).await.unwrap(); // loads the script once

    // A client and an address new in this window: each counted limit is written by one
    // `SET … NX GET`, with nothing to read first.
    let before = command_calls(&mut con).await;
    assert_eq!(s.hit_limits(&checks(2), NOW).await.unwrap(), Limit::Allowed);
    let fresh = command_calls(&mut con).await;
    assert_eq!(
        calls_since(&before, &fresh),
        vec![
            ("evalsha".to_owned(), 1),
            ("get".to_owned(), 1),
            ("set".to_owned(), 2)
        ],
        "one EVALSHA for all three limits (its commands run inside Redis), the cooldown in \
         the address's record, a new record written without reading first"
    );
    let ip_record: String = redis::cmd("GET")
        .arg("mailcode:l:ip:code:203.0.113.2")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(ip_record, format!("1:{}", NOW + 3_600_000));
    let email_record: String = redis::cmd("GET")
        .arg("mailcode:l:email:2@example.com")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        email_record,
        format!("1:{},login={}", NOW + 3_600_000, NOW + 60_000)
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("mailcode:l:email:2@example.com")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 3_590_000 && ttl <= 3_600_000, "{ttl}");

    // Both counted again a minute later: the `SET … NX GET` finds each record and writes
    // nothing, the count goes on from it.
    let fresh = command_calls(&mut con).await;
    assert_eq!(
        s.hit_limits(&checks(2), NOW + 61_000).await.unwrap(),
        Limit::Allowed
    );
    let again = command_calls(&mut con).await;
    assert_eq!(
        calls_since(&fresh, &again),
        vec![
            ("evalsha".to_owned(), 1),
            ("get".to_owned(), 1),
            ("set".to_owned(), 4)
        ],
    );
    let ip_record: String = redis::cmd("GET")
        .arg("mailcode:l:ip:code:203.0.113.2")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(ip_record, format!("2:{}", NOW + 3_600_000));
    // Within the cooldown: refused by the spacing, counted nowhere past it.
    assert_eq!(
        s.hit_limits(&checks(2), NOW + 62_000).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 59_000
        }
    );
}

/// A signed-in browser session: a typical user, or one with long names and an IPv6 address.
fn browser_session(n: u32, ua: &str, long: bool) -> SessionRecord {
    let (id, name, ip) = if long {
        (
            1_234_567,
            "margaret.hamilton",
            "2001:db8:85a3::8a2e:370:7334",
        )
    } else {
        (42, "alice", "203.0.113.7")
    };
    SessionRecord {
        key: key(n),
        kind: SessionKind::Cookie,
        user: Some(SessionUser {
            id,
            username: name.into(),
            email: format!("{name}@example.com"),
            public_id: Some(user_id_for(id)),
        }),
        created_at: NOW,
        last_seen_at: NOW + 17 * MIN + 123,
        idle_expires_at: NOW + 47 * MIN + 123,
        absolute_expires_at: NOW + 7 * 24 * 60 * MIN,
        user_agent: ua.into(),
        ip: ip.into(),
    }
}

/// `MEMORY USAGE` of a key, in bytes (0 when there is no such key).
async fn memory_usage(con: &mut MultiplexedConnection, name: &str) -> i64 {
    let bytes: Option<i64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(name)
        .arg("SAMPLES")
        .arg(0)
        .query_async(con)
        .await
        .unwrap();
    bytes.unwrap_or(0)
}

/// At most 300 bytes of Redis per signed-in session of a typical user, counting the
/// user's session index it is the only entry of (the worst case: the index's own overhead is
/// not shared with another session). With long names and an IPv6 address the session key alone
/// stays within 300 bytes, and within 320 with its index.
#[tokio::test]
async fn a_signed_in_session_fits_in_300_bytes() {
    let server = RedisServer::shared();
    let prefix = "mailcode:"; // the default prefix, with unique keys
    let s = open_on(server, prefix, Duration::from_secs(2)).await;
    let names = Keys::new(prefix);
    let mut con = raw(server).await;
    let agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
        "curl/8.5.0",
    ];
    let base = 0x5e55_0000 + (std::process::id() % 0x1000) * 32;
    let cases = agents.iter().flat_map(|ua| [(*ua, false), (*ua, true)]);
    for (i, (ua, long)) in cases.enumerate() {
        let mut rec = browser_session(base + i as u32, ua, long);
        // A key like the app's (SHA-256 output), not one that is mostly zeros.
        rec.key = session_key(&new_session_id());
        let user = rec.user.as_ref().expect("signed in").id;
        let index = names.index(user);
        let _: () = redis::cmd("DEL")
            .arg(&index)
            .query_async(&mut con)
            .await
            .unwrap();
        s.create_session(&rec).await.unwrap();
        let entries: i64 = redis::cmd("ZCARD")
            .arg(&index)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(entries, 1, "the user's only session");
        let session_bytes = memory_usage(&mut con, &names.session(&rec.key)).await;
        let index_bytes = memory_usage(&mut con, &index).await;
        let total = session_bytes + index_bytes;
        let record: i64 = redis::cmd("STRLEN")
            .arg(names.session(&rec.key))
            .query_async(&mut con)
            .await
            .unwrap();
        let who = if long { "long names, IPv6" } else { "typical" };
        eprintln!(
            "MEMORY USAGE {session_bytes:>3} + {index_bytes:>3} index = {total:>3} bytes \
             ({who:>16}, record {record:>3} bytes), {ua}"
        );
        assert!(session_bytes > 0 && index_bytes > 0, "both keys written");
        assert!(session_bytes <= 300, "{session_bytes} bytes for {ua}");
        // The user id (SPEC §6, 22 characters of base 62) took the record across an allocator
        // size class: a typical session from 288 to 304-320 bytes with this test's index, a
        // long one to 336-352 (448 before the compact encoding) (docs/benchmarks.md). Kept from
        // growing.
        let budget = if long { 352 } else { 320 };
        assert!(total <= budget, "{total} bytes with the index for {ua}");
        assert_eq!(
            s.load_session(&rec.key, NOW).await.unwrap(),
            Some(rec.clone())
        );
        assert_eq!(
            s.list_user_sessions(user, NOW).await.unwrap(),
            vec![rec.clone()]
        );
        assert!(s.delete_session(&rec.key, &[]).await.unwrap());
        assert_eq!(
            memory_usage(&mut con, &index).await,
            0,
            "index gone with it"
        );
    }
}

#[tokio::test]
async fn a_lost_final_write_of_a_sign_in_is_repaired_and_an_uncommitted_one_is_not_a_session() {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let s = open_on(server, &prefix, Duration::from_secs(2)).await;
    let mut con = raw(server).await;
    s.create_session(&session(1, None)).await.unwrap();
    s.issue_code(&code(1, CodePurpose::Login, "a@example.com", "right"))
        .await
        .unwrap();
    let r = s
        .redeem_code(
            &key(1),
            CodePurpose::Login,
            &email("a@example.com"),
            "right",
            NOW + 1,
            5,
            Redeem::SignIn {
                new: session(2, Some(8)),
                events: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(r, Redeemed::SignedIn);
    // Put the new record back in the state a crash after the commit script leaves behind:
    // pending, with the marker written by the script.
    let names = Keys::new(&prefix);
    let name = names.session(&key(2));
    let marker = names.marker(&key(1));
    let active: String = redis::cmd("GET")
        .arg(&name)
        .query_async(&mut con)
        .await
        .unwrap();
    let pending = format!("~{}\u{1f}{active}", session_tag(&key(1)));
    let set_pending = |con: &mut MultiplexedConnection| {
        let mut con = con.clone();
        let pending = pending.clone();
        let name = name.clone();
        async move {
            let _: () = redis::cmd("SET")
                .arg(&name)
                .arg(&pending)
                .arg("KEEPTTL")
                .query_async(&mut con)
                .await
                .unwrap();
        }
    };
    set_pending(&mut con).await;
    let _: () = redis::cmd("SET")
        .arg(&marker)
        .arg(session_tag(&key(2)))
        .arg("PX")
        .arg(60_000)
        .query_async(&mut con)
        .await
        .unwrap();
    // A code put into the record while it is pending stays through its activation.
    s.issue_code(&code(2, CodePurpose::Reset, "user8@example.com", "kept"))
        .await
        .unwrap();
    assert_eq!(s.list_user_sessions(8, NOW + 1).await.unwrap().len(), 1);
    assert!(s.load_session(&key(2), NOW + 1).await.unwrap().is_some());
    let now_active: String = redis::cmd("GET")
        .arg(&name)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        now_active.starts_with(&format!("{active}\n")),
        "activated by the first read: {now_active:?}"
    );
    let e8 = email("user8@example.com");
    assert_eq!(
        s.check_code(&key(2), CodePurpose::Reset, &e8, "kept", NOW + 1, 5)
            .await
            .unwrap(),
        CodeCheck::Right
    );

    // Without the marker (the script never ran or another request won): not a session.
    set_pending(&mut con).await;
    let _: () = redis::cmd("DEL")
        .arg(&marker)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(s.load_session(&key(2), NOW + 1).await.unwrap().is_none());
    assert!(s.list_user_sessions(8, NOW + 1).await.unwrap().is_empty());
    s.touch_session(&key(2), NOW + 2, NOW + 31 * MIN)
        .await
        .unwrap();
    assert!(s.load_session(&key(2), NOW + 2).await.unwrap().is_none());
    assert_eq!(s.revoke_user_sessions(8, None, &[]).await.unwrap(), 1);
}

/// A session's codes live in its record, one key: a new visitor's session and first code are
/// written whole; a code put later keeps the others and the session's TTL, replaces its own
/// purpose's and drops one an hour past its expiry; touching keeps them; a user agent cannot
/// forge one; a session gone gets none.
#[tokio::test]
async fn a_session_keeps_its_codes_in_its_record() {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let s = open_on(server, &prefix, Duration::from_secs(2)).await;
    let mut con = raw(server).await;
    let names = Keys::new(&prefix);
    let a = email("a@example.com");
    let check = |n: u32, purpose: CodePurpose, mac: &'static str, now: i64| {
        let s = s.clone();
        let a = a.clone();
        async move {
            s.check_code(&key(n), purpose, &a, mac, now, 5)
                .await
                .unwrap()
        }
    };

    s.create_session_with_code(
        &session(5, None),
        &code(5, CodePurpose::Login, "a@example.com", "login1"),
    )
    .await
    .unwrap();
    assert_eq!(
        keys_under(&mut con, &prefix).await,
        [names.session(&key(5))],
        "one key for a new visitor's session and code"
    );
    s.issue_code(&code(5, CodePurpose::Reset, "a@example.com", "reset1"))
        .await
        .unwrap();
    assert_eq!(keys_under(&mut con, &prefix).await.len(), 1);
    assert_eq!(
        check(5, CodePurpose::Login, "nope", NOW).await,
        CodeCheck::Wrong { attempts_left: 4 }
    );
    assert_eq!(
        check(5, CodePurpose::Reset, "nope", NOW).await,
        CodeCheck::Wrong { attempts_left: 4 },
        "each code counts its own attempts"
    );
    s.touch_session(&key(5), NOW + MIN, NOW + 31 * MIN)
        .await
        .unwrap();
    assert_eq!(
        check(5, CodePurpose::Login, "login1", NOW + MIN).await,
        CodeCheck::Right
    );
    assert_eq!(
        check(5, CodePurpose::Reset, "reset1", NOW + MIN).await,
        CodeCheck::Right
    );
    let loaded = s.load_session(&key(5), NOW + MIN).await.unwrap().unwrap();
    assert_eq!(
        loaded.user_agent, "test/1.0",
        "the codes are not the session's"
    );
    // An hour past its expiry, a login code is dropped when another code is put.
    let late = NOW + 10 * MIN + 61 * MIN;
    assert_eq!(
        check(5, CodePurpose::Login, "login1", late).await,
        CodeCheck::Expired
    );
    s.issue_code(&CodeRecord {
        created_at: late,
        expires_at: late + 10 * MIN,
        ..code(5, CodePurpose::Register, "a@example.com", "reg1")
    })
    .await
    .unwrap();
    assert_eq!(
        check(5, CodePurpose::Login, "login1", late).await,
        CodeCheck::Missing
    );
    assert_eq!(
        check(5, CodePurpose::Register, "reg1", late).await,
        CodeCheck::Right
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(names.session(&key(5)))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 29 * MIN && ttl <= 31 * MIN,
        "the session's TTL: {ttl}"
    );

    // A user agent shaped like a code is stored as text and forges none.
    let forged =
        "x\nlogin\u{1f}0\u{1f}99999999999999\u{1f}0\u{1f}0\u{1f}a@example.com\u{1f}forged\u{1f}r";
    s.create_session_with_code(
        &SessionRecord {
            user_agent: forged.into(),
            ..session(6, None)
        },
        &code(6, CodePurpose::Reset, "a@example.com", "real"),
    )
    .await
    .unwrap();
    assert_eq!(
        check(6, CodePurpose::Login, "forged", NOW).await,
        CodeCheck::Missing
    );
    assert_eq!(
        check(6, CodePurpose::Reset, "real", NOW).await,
        CodeCheck::Right
    );
    let loaded = s.load_session(&key(6), NOW).await.unwrap().unwrap();
    assert_eq!(loaded.user_agent, forged.replace('\n', " "));

    // No session, no code: nothing written.
    s.issue_code(&code(9, CodePurpose::Login, "a@example.com", "m"))
        .await
        .unwrap();
    assert!(s.current_code(&key(9), NOW).await.unwrap().is_none());
    assert_eq!(keys_under(&mut con, &prefix).await.len(), 2);
}

#[tokio::test]
async fn corrupt_data_is_an_internal_error() {
    let server = RedisServer::shared();
    let prefix = unique_prefix();
    let s = open_on(server, &prefix, Duration::from_secs(2)).await;
    let mut con = raw(server).await;
    let names = Keys::new(&prefix);
    // A session whose record reads, with a code in it that does not.
    s.create_session(&session(2, None)).await.unwrap();
    let _: () = redis::cmd("APPEND")
        .arg(names.session(&key(2)))
        .arg("\nlogin\u{1f}junk")
        .query_async(&mut con)
        .await
        .unwrap();
    for (name, junk) in [
        (names.session(&key(1)), "not a session"),
        (names.limit("k"), "1:x"),
        (names.limit("gaps"), "1:99999999999999,login"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(name)
            .arg(junk)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let internal = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Internal(_)));
    assert!(internal(s.load_session(&key(1), NOW).await.map(drop)));
    assert!(internal(s.touch_session(&key(1), NOW, NOW + MIN).await));
    let e = email("a@example.com");
    assert!(internal(
        s.check_code(&key(2), CodePurpose::Login, &e, "m", NOW, 5)
            .await
            .map(drop)
    ));
    assert!(internal(s.current_code(&key(2), NOW).await.map(drop)));
    assert!(
        s.load_session(&key(2), NOW).await.unwrap().is_some(),
        "the session itself still reads"
    );
    assert!(internal(s.peek_limit("k", 1, NOW).await.map(drop)));
    let check = [
        LimitCheck::hit("ok", 5, Duration::from_secs(60)),
        LimitCheck::peek("k", 1),
    ];
    assert!(internal(s.hit_limits(&check, NOW).await.map(drop)));
    assert!(internal(
        s.hit_limit("k", 1, Duration::from_secs(1), NOW)
            .await
            .map(drop)
    ));
    assert!(internal(
        s.hit_limit("gaps", 5, Duration::from_secs(1), NOW)
            .await
            .map(drop)
    ));
    // A corrupt session can still be deleted.
    assert!(s.delete_session(&key(1), &[]).await.unwrap());
    assert!(s.delete_session(&key(2), &[]).await.unwrap());
}

/// Runs `op` until it succeeds or `within` has passed.
async fn eventually<T, F, Fut>(within: Duration, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + within;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_away_answers_unavailable_quickly_and_recovers_by_itself() {
    let server = RedisServer::start();
    let s = open_on(&server, "mailcode:", Duration::from_millis(1500)).await;
    s.create_session(&session(1, Some(4))).await.unwrap();
    assert!(s.load_session(&key(1), NOW).await.unwrap().is_some());

    server.stop();
    for round in 0..3 {
        let e = email("a@example.com");
        let timed = |r: Result<(), StoreError>, started: Instant| (r, started.elapsed());
        let mut results = Vec::new();
        let t = Instant::now();
        results.push(timed(s.load_session(&key(1), NOW).await.map(drop), t));
        let t = Instant::now();
        let w = Duration::from_secs(60);
        results.push(timed(s.hit_limit("k", 5, w, NOW).await.map(drop), t));
        let t = Instant::now();
        let new = session(2, Some(4));
        let signin = Redeem::SignIn {
            new,
            events: Vec::new(),
        };
        let k = key(1);
        let r = s.redeem_code(&k, CodePurpose::Login, &e, "m", NOW, 5, signin);
        results.push(timed(r.await.map(drop), t));
        let t = Instant::now();
        results.push(timed(s.ping().await, t));
        for (r, took) in results {
            assert!(
                matches!(r, Err(StoreError::Unavailable(_))),
                "round {round}: {r:?}"
            );
            assert!(
                took < Duration::from_secs(2),
                "round {round}: took {took:?}"
            );
        }
    }

    server.restart();
    let started = Instant::now();
    eventually(Duration::from_secs(10), || s.ping()).await;
    eprintln!("recovered {:?} after the restart", started.elapsed());
    // The data went with the old process; the store works again, same RedisStore.
    assert_eq!(s.load_session(&key(1), NOW).await.unwrap(), None);
    s.create_session(&session(3, Some(4))).await.unwrap();
    assert!(s.load_session(&key(3), NOW).await.unwrap().is_some());
    assert_eq!(
        s.hit_limit("k", 1, Duration::from_secs(60), NOW)
            .await
            .unwrap(),
        Limit::Allowed
    );
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let started = Instant::now();
    let r = RedisStore::connect(
        &format!("redis://127.0.0.1:{port}"),
        "mailcode:",
        Duration::from_millis(1500),
    )
    .await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The ids of the clients connected to `server`, and the last command of each, the caller's
/// own connection left out.
async fn clients(con: &mut MultiplexedConnection) -> Vec<(u64, String)> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(con)
        .await
        .unwrap();
    let field = |line: &str, name: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    list.lines()
        .map(|l| (field(l, "id=").parse().unwrap(), field(l, "cmd=")))
        .filter(|(_, cmd)| cmd != "client|list")
        .collect()
}

async fn connections_received(con: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has total_connections_received")
}

/// An HTTP thread (its own single-threaded runtime, `mailcode::threads::spawn`) gets a
/// Redis connection of its own, connected in the background after its first command, and the
/// store works the same through it; the connection goes away with the thread. Other threads use
/// the shared one.
#[test]
fn a_thread_with_its_own_runtime_gets_its_own_connection() {
    let server = RedisServer::start();
    let main = tokio::runtime::Runtime::new().unwrap();
    let s = main.block_on(open_on(&server, "mailcode:", Duration::from_secs(2)));
    let mut con = main.block_on(raw(&server));
    main.block_on(s.create_session(&session(1, Some(3))))
        .unwrap();
    let shared = main.block_on(clients(&mut con));
    assert_eq!(shared.len(), 1, "the shared connection: {shared:?}");

    let before = main.block_on(connections_received(&mut con));
    let on_thread = s.clone();
    let (url, shared_id) = (server.url(), shared[0].0);
    mailcode::threads::spawn("http-thread".into(), move || {
        async move {
            // The first load still goes over the shared connection and starts connecting.
            assert!(on_thread
                .load_session(&key(1), NOW + MIN)
                .await
                .unwrap()
                .is_some());
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(on_thread
                .load_session(&key(1), NOW + MIN)
                .await
                .unwrap()
                .is_some());
            assert!(on_thread
                .load_session(&key(2), NOW + MIN)
                .await
                .unwrap()
                .is_none());
            let mut con = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let own: Vec<_> = clients(&mut con)
                .await
                .into_iter()
                .filter(|c| c.0 > shared_id && c.1 == "get")
                .collect();
            assert_eq!(
                own.len(),
                1,
                "the loads went over the thread's own connection"
            );
        }
    })
    .unwrap()
    .join()
    .unwrap();
    // While the thread ran, two connections more were opened: its own and the test's look at
    // the clients; both are gone with the thread.
    assert_eq!(
        main.block_on(connections_received(&mut con)),
        before + 2,
        "one connection of its own, not one per command"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = main.block_on(clients(&mut con));
        if now.iter().map(|c| c.0).eq(shared.iter().map(|c| c.0)) {
            break;
        }
        assert!(Instant::now() < deadline, "still connected: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The shared connection is untouched by all this.
    assert!(main
        .block_on(s.load_session(&key(1), NOW + MIN))
        .unwrap()
        .is_some());
}

/// A connection that gave up reconnecting while Redis was down (its retries spent, ~5 s) still
/// serves the first command once Redis is back: refused a connection, that command was never
/// sent, and the store sends it once more on the connection being made anew. (Without that, the
/// first request on each HTTP thread after such an outage was answered 503.)
#[tokio::test]
async fn the_first_command_after_a_long_outage_is_served() {
    let server = RedisServer::start();
    let s = open_on(&server, "mailcode:", Duration::from_secs(2)).await;
    s.create_session(&session(1, None)).await.unwrap();
    server.stop();
    // A request during the outage fails and starts the reconnection; none comes after it (as
    // on an HTTP thread that no request reaches) until its retries (50 ms doubling up to 1 s,
    // 8 of them) are spent.
    assert!(s.load_session(&key(1), NOW).await.is_err(), "Redis is down");
    tokio::time::sleep(Duration::from_secs(8)).await;
    server.restart();
    // Empty after the restart (nothing is persisted), but answering.
    assert_eq!(s.load_session(&key(1), NOW).await.unwrap(), None);
}

/// Over RESP2 (`?protocol=resp2`: no notice when Redis closes a connection) the first command
/// after a restart meets the dead socket. A read is then sent again on the connection made
/// anew, and served; a counting script is not, since the first one may have run (`Resend`).
/// Over RESP3, the default, the closed connection is replaced before anything meets it, so
/// even a count goes through.
#[tokio::test]
async fn after_a_restart_reads_are_sent_again_and_counts_only_over_a_new_connection() {
    let server = RedisServer::start();
    let minute = Duration::from_secs(60);
    let resp2 = RedisStore::connect(
        &format!("{}/?protocol=resp2", server.url()),
        "mailcode:",
        Duration::from_secs(2),
    )
    .await
    .expect("redis connects over RESP2");
    let resp3 = open_on(&server, "mailcode:", Duration::from_secs(2)).await;
    resp2.create_session(&session(1, Some(3))).await.unwrap();
    assert_eq!(
        resp2.hit_limit("k", 9, minute, NOW).await.unwrap(),
        Limit::Allowed
    );
    assert_eq!(
        resp3.hit_limit("k", 9, minute, NOW).await.unwrap(),
        Limit::Allowed
    );

    server.restart_keeping_data();
    assert!(
        resp2.load_session(&key(1), NOW).await.unwrap().is_some(),
        "a read is sent again"
    );
    server.restart_keeping_data();
    let counted = resp2.hit_limit("k", 9, minute, NOW).await;
    assert!(
        matches!(counted, Err(StoreError::Unavailable(_))),
        "a count is not sent again: {counted:?}"
    );
    assert_eq!(
        resp2.hit_limit("k", 9, minute, NOW).await.unwrap(),
        Limit::Allowed
    );

    server.restart_keeping_data();
    // The moment in which the connection's reader sees the end and a new one is made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        resp3.hit_limit("k", 9, minute, NOW).await.unwrap(),
        Limit::Allowed
    );
    // Four counts ran, two before the restarts and two after (the refused one reached no
    // server): the fifth is over a limit of four. Nothing was counted twice.
    assert_eq!(
        resp3.hit_limit("k", 4, minute, NOW).await.unwrap(),
        Limit::Limited {
            retry_after_ms: 60_000
        }
    );
}
