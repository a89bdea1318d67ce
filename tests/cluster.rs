//! Many instances on one Redis and one MariaDB, or on PostgreSQL alone (SPEC §1: scaling out is
//! more instances on the same stores), and real faults. Every server here is real (redis-server,
//! mariadbd, postgres, aiosmtpd) and started by the harness on free loopback ports.
#[path = "api/helpers.rs"]
mod helpers;
#[path = "support/mariadb_server.rs"]
mod mariadb_server;
#[path = "support/postgres_server.rs"]
mod postgres_server;
#[path = "support/redis_server.rs"]
mod redis_server;

use helpers::*;
use mariadb_server::MariaDb;
use postgres_server::Postgres;
use redis_server::RedisServer;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One mailcode process.
struct Instance {
    child: Child,
    base: String,
    port: u16,
    args: Vec<String>,
}

impl Instance {
    fn start(args: &[String]) -> Instance {
        let port = free_port();
        Self::start_on(port, args)
    }

    fn start_on(port: u16, args: &[String]) -> Instance {
        let child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mailcode");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mailcode did not start with {args:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Instance {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            args: args.to_vec(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A deployment: one Redis (or none), one SQL database, one SMTP sink, one shared secret; any
/// number of instances.
struct Deployment {
    redis: Option<RedisServer>,
    db_url: String,
    sink: SmtpSink,
    dir: tempfile::TempDir,
    seen: Seen,
}

impl Deployment {
    async fn new() -> Deployment {
        Self::with(
            RedisServer::start(),
            MariaDb::shared().fresh_database("cluster").await,
        )
        .await
    }

    async fn with(redis: RedisServer, db_url: String) -> Deployment {
        Self::on(Some(redis), db_url)
    }

    /// Everything on one PostgreSQL database: no Redis.
    async fn on_postgres(db_url: String) -> Deployment {
        Self::on(None, db_url)
    }

    fn on(redis: Option<RedisServer>, db_url: String) -> Deployment {
        Deployment {
            redis,
            db_url,
            sink: SmtpSink::start(),
            dir: tempfile::tempdir().expect("temp dir"),
            seen: Seen::default(),
        }
    }

    fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("a deployment with Redis")
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            self.dir.path().join("data").display().to_string(),
            "--database-url".into(),
            self.db_url.clone(),
            "--smtp-url".into(),
            self.sink.url(),
        ];
        if let Some(redis) = &self.redis {
            args.extend(["--redis-url".into(), redis.url()]);
        }
        args
    }

    fn instance(&self) -> Instance {
        Instance::start(&self.args())
    }

    fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
            .args(self.args())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mailcode");
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin.as_bytes());
        }
        child.wait_with_output().expect("output")
    }

    fn add_user(&self, name: &str, email: &str) {
        let out = self.cli(&["user", "add", name, email], &format!("{PASSWORD}\n"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn code(&self, email: &str) -> String {
        read_code_from(self.sink.dir.path(), email, "eml", &self.seen).await
    }

    fn mails_to(&self, email: &str) -> usize {
        std::fs::read_dir(self.sink.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("eml"))
            .filter(|e| {
                std::fs::read_to_string(e.path())
                    .map(|t| t.contains(email))
                    .unwrap_or(false)
            })
            .count()
    }
}

async fn post(url: String, sid: Option<&str>, body: serde_json::Value) -> Answer {
    let mut req = bare().post(url).json(&body);
    if let Some(s) = sid {
        req = req.header("cookie", format!("mailcode_sid={s}"));
    }
    answer(req.send().await.expect("request")).await
}

async fn get(url: String, sid: &str) -> Answer {
    answer(
        bare()
            .get(url)
            .header("cookie", format!("mailcode_sid={sid}"))
            .send()
            .await
            .expect("request"),
    )
    .await
}

fn login(user: &str, email: &str, code: &str) -> serde_json::Value {
    json!({"username": user, "password": PASSWORD, "email": email, "code": code})
}

/// Asks `a` for a login code; returns the pre-login session id.
async fn ask_code(a: &Instance, email: &str) -> String {
    post(
        a.url("/api/login/email-code"),
        None,
        json!({ "email": email }),
    )
    .await
    .expect(200, "CODE_SENT")
    .session_cookie()
    .expect("a session cookie")
}

/// What a sign-in through the real flow leaves: the pre-login session, the code, the session.
struct SignIn {
    pre: String,
    code: String,
    sid: String,
}

/// Asks `asked` for a login code, reads it from the mail, submits it to `submitted`.
async fn sign_in(
    d: &Deployment,
    asked: &Instance,
    submitted: &Instance,
    user: &str,
    email: &str,
) -> SignIn {
    let pre = ask_code(asked, email).await;
    let code = d.code(email).await;
    let sid = post(
        submitted.url("/api/login/get-token"),
        Some(&pre),
        login(user, email, &code),
    )
    .await
    .expect(200, "LOGIN_SUCCESS")
    .session_cookie()
    .expect("a session cookie");
    SignIn { pre, code, sid }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_sent_by_one_instance_verifies_on_another_and_logout_is_everywhere() {
    code_sent_by_one_instance_verifies_on_another(Deployment::new().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_code_sent_by_one_instance_verifies_on_another_and_logout_is_everywhere() {
    let url = Postgres::shared().fresh_database("cluster").await;
    code_sent_by_one_instance_verifies_on_another(Deployment::on_postgres(url).await).await
}

async fn code_sent_by_one_instance_verifies_on_another(d: Deployment) {
    d.add_user("ann", "ann@example.com");
    let a = d.instance();
    let b = d.instance();
    let SignIn { sid, .. } = sign_in(&d, &a, &b, "ann", "ann@example.com").await;
    get(a.url("/api/me"), &sid).await.expect(200, "OK");
    get(b.url("/api/me"), &sid).await.expect(200, "OK");
    post(a.url("/api/logout"), Some(&sid), json!({}))
        .await
        .expect(200, "LOGGED_OUT");
    get(b.url("/api/me"), &sid)
        .await
        .expect(401, "NOT_LOGGED_IN");
    // Both workers ran; the mail went out once.
    assert_eq!(d.mails_to("ann@example.com"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_guesses_alternating_between_instances_are_capped_at_five() {
    wrong_guesses_alternating_are_capped(Deployment::new().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_guesses_alternating_between_instances_are_capped_at_five() {
    let url = Postgres::shared().fresh_database("cluster").await;
    wrong_guesses_alternating_are_capped(Deployment::on_postgres(url).await).await
}

async fn wrong_guesses_alternating_are_capped(d: Deployment) {
    d.add_user("bea", "bea@example.com");
    let a = d.instance();
    let b = d.instance();
    let pre = ask_code(&a, "bea@example.com").await;
    let code = d.code("bea@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for i in 0..5 {
        let at = if i % 2 == 0 { &a } else { &b };
        let r = post(
            at.url("/api/login/get-token"),
            Some(&pre),
            login("bea", "bea@example.com", wrong),
        )
        .await
        .expect(401, "CODE_INVALID");
        assert_eq!(r.body["data"]["attempts_left"], 4 - i);
    }
    post(
        b.url("/api/login/get-token"),
        Some(&pre),
        login("bea", "bea@example.com", &code),
    )
    .await
    .expect(401, "CODE_ATTEMPTS_EXCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_codes_racing_on_two_instances_give_exactly_one_success() {
    right_codes_racing_give_one_success(Deployment::new().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_right_codes_racing_give_exactly_one_success() {
    let url = Postgres::shared().fresh_database("cluster").await;
    right_codes_racing_give_one_success(Deployment::on_postgres(url).await).await
}

async fn right_codes_racing_give_one_success(d: Deployment) {
    d.add_user("cy", "cy@example.com");
    let a = d.instance();
    let b = d.instance();
    let pre = ask_code(&a, "cy@example.com").await;
    let code = d.code("cy@example.com").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = if i % 2 == 0 {
                a.url("/api/login/get-token")
            } else {
                b.url("/api/login/get-token")
            };
            let pre = pre.clone();
            let body = login("cy", "cy@example.com", &code);
            tokio::spawn(async move { post(url, Some(&pre), body).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.code() {
            "LOGIN_SUCCESS" => wins += 1,
            "CODE_INVALID" | "NO_SESSION" => {}
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert_eq!(wins, 1);
}

/// Polls `f` until it returns the wanted status, for at most `within`.
async fn answered_within(
    within: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Answer,
    want: (u16, &str),
) {
    let t = Instant::now();
    let a = f().await;
    assert!(t.elapsed() < within, "{what}: took {:?}", t.elapsed());
    assert_eq!((a.status.as_u16(), a.code()), want, "{what}: {:?}", a.body);
}

/// `GET /api/me` and a code request, each answered 503 `STORE_UNAVAILABLE` within `within`.
async fn me_and_code_request_unavailable_within(within: Duration, a: &Instance, sid: &str) {
    answered_within(
        within,
        "GET /api/me",
        async || get(a.url("/api/me"), sid).await,
        (503, "STORE_UNAVAILABLE"),
    )
    .await;
    answered_within(
        within,
        "POST /api/login/email-code",
        async || {
            post(
                a.url("/api/login/email-code"),
                None,
                json!({"email": "x@example.com"}),
            )
            .await
        },
        (503, "STORE_UNAVAILABLE"),
    )
    .await;
}

async fn recovers(what: &str, mut f: impl AsyncFnMut() -> Answer, want: (u16, &str)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = f().await;
        if (a.status.as_u16(), a.code()) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not recover: {:?}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_gives_503_within_two_seconds_and_the_service_recovers() {
    let d = Deployment::new().await;
    d.add_user("dot", "dot@example.com");
    let a = d.instance();
    let SignIn { pre, code, sid } = sign_in(&d, &a, &a, "dot", "dot@example.com").await;
    d.redis().stop();
    let two = Duration::from_secs(2);
    me_and_code_request_unavailable_within(two, &a, &sid).await;
    answered_within(
        two,
        "POST /api/login/get-token",
        async || {
            post(
                a.url("/api/login/get-token"),
                Some(&pre),
                login("dot", "dot@example.com", &code),
            )
            .await
        },
        (503, "STORE_UNAVAILABLE"),
    )
    .await;
    let ready = answer(bare().get(a.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 503);
    // Redis comes back (empty: it ran without persistence): the service recovers by itself.
    d.redis().restart();
    recovers(
        "POST /api/login/email-code",
        async || {
            post(
                a.url("/api/login/email-code"),
                None,
                json!({"email": "y@example.com"}),
            )
            .await
        },
        (200, "CODE_SENT"),
    )
    .await;
    recovers(
        "GET /readyz",
        async || answer(bare().get(a.url("/readyz")).send().await.unwrap()).await,
        (200, "OK"),
    )
    .await;
    // Each HTTP thread has a Redis connection of its own, and every one came back: new
    // connections (spread over the threads by the kernel) all succeed.
    for n in 0..16 {
        post(
            a.url("/api/login/email-code"),
            None,
            json!({"email": format!("back{n}@example.com")}),
        )
        .await
        .expect(200, "CODE_SENT");
    }
}

/// A Redis that stops answering, its connections still open (no error for the client to see):
/// every operation is bounded by the store timeout alone (`bounded`; the Redis client sets no
/// response timeout of its own: docs/benchmarks.md), so answers still come within two seconds, and the
/// same connections serve again once Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_hangs_gives_503_within_two_seconds_and_the_service_recovers() {
    let d = Deployment::new().await;
    d.add_user("hal", "hal@example.com");
    let a = d.instance();
    let SignIn { sid, .. } = sign_in(&d, &a, &a, "hal", "hal@example.com").await;
    get(a.url("/api/me"), &sid).await.expect(200, "OK");
    d.redis().freeze();
    for _ in 0..3 {
        me_and_code_request_unavailable_within(Duration::from_secs(2), &a, &sid).await;
    }
    d.redis().thaw();
    recovers(
        "GET /api/me",
        async || get(a.url("/api/me"), &sid).await,
        (200, "OK"),
    )
    .await;
    for n in 0..16 {
        post(
            a.url("/api/login/email-code"),
            None,
            json!({"email": format!("thawed{n}@example.com")}),
        )
        .await
        .expect(200, "CODE_SENT");
    }
}

/// The connections Redis lists (`CLIENT LIST`) but the one asking.
async fn redis_clients(url: &str) -> Vec<String> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis-server");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .map(str::to_owned)
        .collect()
}

/// A Redis restart costs nothing once Redis answers again. Each HTTP thread has a Redis
/// connection of its own (`store/redis/per_thread.rs`), which Redis closes when it goes; it is
/// made anew as soon as the thread sees it closed (RESP3), and a read that meets it before is
/// sent again. The first request on each thread used to meet the dead socket and answer 503.
/// Redis keeps its data across this restart (a snapshot, as a persisting Redis does), so the
/// session signed in before still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_fails_no_request_on_any_http_thread_once_redis_answers() {
    const THREADS: usize = 3;
    let d = Deployment::new().await;
    d.add_user("rae", "rae@example.com");
    let mut args = d.args();
    args.extend(["--http-threads".into(), THREADS.to_string()]);
    let a = Instance::start(&args);
    let SignIn { sid, .. } = sign_in(&d, &a, &a, "rae", "rae@example.com").await;
    // Warm every thread: its first request starts connecting its own connection. The instance
    // then holds the shared connection and one per thread.
    let url = d.redis().url();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for _ in 0..8 {
            get(a.url("/api/me"), &sid).await.expect(200, "OK");
        }
        let clients = redis_clients(&url).await;
        if clients.len() == THREADS + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every HTTP thread has its own connection: {clients:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    d.redis().restart_keeping_data();

    // New connections each (`bare`), which the kernel spreads over the threads: every thread
    // serves several of the 60. Reads (`GET /api/me`, the hot path) and code requests (a
    // script that counts, never sent twice) alike.
    let mut failed = Vec::new();
    for n in 0..60 {
        let r = if n % 6 == 5 {
            post(
                a.url("/api/login/email-code"),
                None,
                json!({"email": format!("after{n}@example.com")}),
            )
            .await
        } else {
            get(a.url("/api/me"), &sid).await
        };
        if !r.status.is_success() {
            failed.push(format!("request {n}: {} {:?}", r.status, r.body));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 60 requests failed after Redis was back: {failed:#?}",
        failed.len()
    );
    // Every connection came back, used or not.
    let clients = redis_clients(&url).await;
    assert_eq!(clients.len(), THREADS + 1, "{clients:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_down_gives_503_within_two_seconds_and_the_service_recovers() {
    let db = MariaDb::start();
    let url = db.fresh_database("down").await;
    let d = Deployment::with(RedisServer::start(), url).await;
    d.add_user("eli", "eli@example.com");
    let a = d.instance();
    db.stop();
    let two = Duration::from_secs(2);
    answered_within(
        two,
        "POST /api/login/email-code",
        async || {
            post(
                a.url("/api/login/email-code"),
                None,
                json!({"email": "eli@example.com"}),
            )
            .await
        },
        (503, "STORE_UNAVAILABLE"),
    )
    .await;
    let ready = answer(bare().get(a.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 503);
    db.restart();
    // A request refused while the database was down spent no quota: the same address works.
    recovers(
        "POST /api/login/email-code",
        async || {
            post(
                a.url("/api/login/email-code"),
                None,
                json!({"email": "eli@example.com"}),
            )
            .await
        },
        (200, "CODE_SENT"),
    )
    .await;
}

/// Two instances on PostgreSQL alone, under a steady load of `GET /api/me` and code requests on
/// both, while PostgreSQL is stopped and started again: every answer is the right one or 503
/// `STORE_UNAVAILABLE`, always within 2 s; the service recovers by itself; the session signed in
/// before survives, and every code request answered `CODE_SENT` gets its mail, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_under_load_gives_503_in_time_and_recovers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let db = Arc::new(tokio::task::spawn_blocking(Postgres::start).await.unwrap());
    db.create_database("load").await;
    let d = Deployment::on_postgres(db.url("load")).await;
    d.add_user("pat", "pat@example.com");
    d.add_user("quy", "quy@example.com");
    let a = Arc::new(d.instance());
    let b = Arc::new(d.instance());
    let SignIn { sid, .. } = sign_in(&d, &a, &b, "pat", "pat@example.com").await;

    let stop = Arc::new(AtomicBool::new(false));
    let two = Duration::from_secs(2);
    // Readers: the session on both instances, as fast as they answer.
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let (at, stop, sid) = (
                if i % 2 == 0 { &a } else { &b }.clone(),
                stop.clone(),
                sid.clone(),
            );
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = get(at.url("/api/me"), &sid).await;
                    seen.push((r.status.as_u16(), r.code().to_owned(), t.elapsed()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            })
        })
        .collect();
    // Code requests, a few a second, each for an address of its own (SPEC §3: 30 an hour per
    // client IP, so a dozen in all).
    let requester = {
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for n in 0..12 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let at = if n % 2 == 0 { &a } else { &b };
                let email = format!("load{n}@example.com");
                let t = Instant::now();
                let r = post(
                    at.url("/api/register/email-code"),
                    None,
                    json!({ "email": email }),
                )
                .await;
                seen.push((email, r.status.as_u16(), r.code().to_owned(), t.elapsed()));
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            seen
        })
    };

    tokio::time::sleep(Duration::from_millis(800)).await;
    let server = db.clone();
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    me_and_code_request_unavailable_within(two, &b, &sid).await;
    let ready = answer(bare().get(a.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 503);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = db.clone();
    tokio::task::spawn_blocking(move || server.restart())
        .await
        .unwrap();
    for at in [&a, &b] {
        recovers(
            "GET /api/me",
            async || get(at.url("/api/me"), &sid).await,
            (200, "OK"),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);

    let mut outage_seen = false;
    for r in readers {
        for (status, code, took) in r.await.expect("reader") {
            assert!(took < two, "GET /api/me took {took:?}");
            match (status, code.as_str()) {
                (200, "OK") => {}
                (503, "STORE_UNAVAILABLE") => outage_seen = true,
                other => panic!("GET /api/me answered {other:?}"),
            }
        }
    }
    assert!(outage_seen, "the readers saw the outage");
    let mut sent = Vec::new();
    for (email, status, code, took) in requester.await.expect("requester") {
        assert!(took < two, "a code request took {took:?}");
        match (status, code.as_str()) {
            (200, "CODE_SENT") => sent.push(email),
            (503, "STORE_UNAVAILABLE") => {}
            other => panic!("a code request answered {other:?}"),
        }
    }
    assert!(!sent.is_empty(), "some code requests were served");
    // Nothing half-done: a code request that answered CODE_SENT had its mail queued, and the
    // queue outlived the restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    for email in &sent {
        while d.mails_to(email) == 0 {
            assert!(Instant::now() < deadline, "no mail to {email}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for email in &sent {
        assert_eq!(d.mails_to(email), 1, "one mail to {email}");
    }
    // And signing in works again, across the instances (another account: pat's address waits
    // out its 60 s between codes, SPEC §3).
    let again = sign_in(&d, &b, &a, "quy", "quy@example.com").await;
    get(b.url("/api/me"), &again.sid).await.expect(200, "OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_session_and_redis_holds_no_raw_secret() {
    let d = Deployment::new().await;
    d.add_user("fox", "fox@example.com");
    d.add_user("fay", "fay@example.com");
    let mut a = d.instance();
    let SignIn { pre, code, sid } = sign_in(&d, &a, &a, "fox", "fox@example.com").await;
    a.kill9();
    let a = Instance::start_on(a.port, &a.args.clone());
    get(a.url("/api/me"), &sid).await.expect(200, "OK");
    // A fresh pending code, then a scan of every key and value.
    let pre2 = ask_code(&a, "fay@example.com").await;
    let code2 = d.code("fay@example.com").await;
    let client = redis::Client::open(d.redis().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let text = format!("{k} {}", String::from_utf8_lossy(&dump));
        for secret in [&sid, &pre, &pre2, &code, &code2] {
            assert!(
                !text.contains(secret.as_str()),
                "key {k} holds a raw secret"
            );
        }
    }
}

/// Every key and value in Redis, as text (`DUMP` of each key).
async fn redis_dump(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut text = String::new();
    for k in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        text += &format!("{k} {}\n", String::from_utf8_lossy(&dump));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_never_slows_a_code_request_and_the_mail_goes_out_once_it_is_back() {
    let port = free_port();
    let redis = RedisServer::start();
    let db = MariaDb::shared().fresh_database("smtp").await;
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = vec![
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--database-url".into(),
        db,
        "--redis-url".into(),
        redis.url(),
        "--smtp-url".into(),
        format!("smtp://127.0.0.1:{port}"),
    ];
    let a = Instance::start(&args);
    let b = Instance::start(&args);
    let t = Instant::now();
    // A registration code: gil has no account yet, so this mail carries a code.
    let pre = post(
        a.url("/api/register/email-code"),
        None,
        json!({ "email": "gil@example.com" }),
    )
    .await
    .expect(200, "CODE_SENT")
    .session_cookie()
    .expect("a session cookie");
    assert!(t.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The mail waits in Redis, next to its code, sealed: a dump taken now holds no code.
    let waiting = redis_dump(&redis.url()).await;
    assert!(
        waiting.contains("{mail}n") || waiting.contains("{mail}q"),
        "the mail is queued in Redis (new, or waiting for its retry): {waiting:.2000}"
    );
    let sink = SmtpSink::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let count = |p: &Path| {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("eml"))
            .count()
    };
    while count(sink.dir.path()) == 0 {
        assert!(Instant::now() < deadline, "the mail never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    get(b.url("/api/login/email-code/status"), &pre)
        .await
        .expect(200, "OK");
    let code = read_code_from(sink.dir.path(), "gil@example.com", "eml", &Seen::default()).await;
    assert!(
        !waiting.contains(code.as_str()),
        "the queued mail's code was readable in Redis"
    );
    // Two workers were retrying: still one mail.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(sink.dir.path()), 1);
    let _: PathBuf = sink.dir.path().to_path_buf();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_ends_their_live_sessions_on_every_instance() {
    let d = Deployment::new().await;
    d.add_user("hal", "hal@example.com");
    let a = d.instance();
    let b = d.instance();
    let SignIn { sid, .. } = sign_in(&d, &a, &a, "hal", "hal@example.com").await;
    get(b.url("/api/me"), &sid).await.expect(200, "OK");
    let out = d.cli(&["user", "disable", "hal"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    get(a.url("/api/me"), &sid)
        .await
        .expect(401, "NOT_LOGGED_IN");
    get(b.url("/api/me"), &sid)
        .await
        .expect(401, "NOT_LOGGED_IN");
}

/// A secret file of `byte` repeated, and its fingerprint as instances report it.
fn secret_file(d: &Deployment, name: &str, byte: u8) -> (String, String, String) {
    let path = d.dir.path().join(name);
    let text = hex::encode([byte; 32]);
    std::fs::write(&path, &text).expect("write the secret file");
    let fp = mailcode::crypto::Secret::from_bytes([byte; 32]).fingerprint();
    (path.display().to_string(), text, fp)
}

/// Starts an instance that must refuse to start: its exit status and standard error.
fn refused(args: &[String]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailcode"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailcode");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailcode started with {args:?} instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status, err)
}

fn with_secret(d: &Deployment, file: &str) -> Vec<String> {
    let mut args = d.args();
    args.extend(["--secret-file".to_owned(), file.to_owned()]);
    args
}

/// Two instances on one Redis and MariaDB, each with its own secret file (the classic "each
/// generated its own data/secret"): the second refuses to start, naming MAILCODE_SECRET_FILE
/// and never the secret. With the same file both start and a code sent through one signs in
/// through the other. `mailcode secret rotate` changes the deployment's secret on purpose:
/// instances still on the old one answer /readyz 503 SECRET_MISMATCH and cannot start again;
/// instances on the new one start and share codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_different_secrets_refuse_to_start_and_rotation_is_on_purpose() {
    let d = Deployment::new().await;
    d.add_user("ida", "ida@example.com");
    d.add_user("jo", "jo@example.com");
    let (file_a, text_a, fp_a) = secret_file(&d, "secret-a", 0xa1);
    let (file_b, text_b, fp_b) = secret_file(&d, "secret-b", 0xb2);
    let a = Instance::start(&with_secret(&d, &file_a));

    let (status, err) = refused(&with_secret(&d, &file_b));
    assert!(!status.success(), "{status:?}");
    assert!(err.contains("MAILCODE_SECRET_FILE"), "{err}");
    assert!(err.contains(&fp_a) && err.contains(&fp_b), "{err}");
    for secret in [&text_a, &text_b] {
        assert!(
            !err.contains(secret.as_str()),
            "the secret was printed: {err}"
        );
    }
    let ready = answer(bare().get(a.url("/readyz")).send().await.unwrap()).await;
    let ready = ready.expect(200, "OK");
    assert_eq!(ready.body["data"]["secret_fingerprint"], fp_a.as_str());

    // The same file: both start, and a code sent through one signs in through the other.
    let b = Instance::start(&with_secret(&d, &file_a));
    sign_in(&d, &a, &b, "ida", "ida@example.com").await;

    // On purpose: the new file is on every instance, then `secret rotate` once.
    let mut rotate_args = vec!["--secret-file", file_b.as_str()];
    rotate_args.extend(["secret", "rotate"]);
    let out = d.cli(&rotate_args, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("now {fp_b}")) && said.contains(&fp_a),
        "{said}"
    );
    for at in [&a, &b] {
        let r = answer(bare().get(at.url("/readyz")).send().await.unwrap()).await;
        let r = r.expect(503, "SECRET_MISMATCH");
        assert_eq!(
            r.body["data"]["deployment_secret_fingerprint"],
            fp_b.as_str()
        );
    }
    let (status, err) = refused(&with_secret(&d, &file_a));
    assert!(!status.success());
    assert!(err.contains("MAILCODE_SECRET_FILE"), "{err}");
    drop((a, b));
    let a = Instance::start(&with_secret(&d, &file_b));
    let b = Instance::start(&with_secret(&d, &file_b));
    for at in [&a, &b] {
        answer(bare().get(at.url("/readyz")).send().await.unwrap())
            .await
            .expect(200, "OK");
    }
    sign_in(&d, &b, &a, "jo", "jo@example.com").await;
}

// ---- webhooks (SPEC §7): durable across SIGKILL, once per event across instances ----

/// A receiver on `port` that answers 200 and records each request's webhook-id and type.
async fn hook_receiver(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: String| {
        let log = log.clone();
        async move {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let kind = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .unwrap_or_default();
            log.lock().expect("log").push((id, kind));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the receiver");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_queued_before_a_sigkill_is_delivered_after_restart_and_once_by_two_instances() {
    let d = Deployment::new().await;
    d.add_user("wes", "wes@example.com");
    // The receiver is down at first: the sign-in's event waits in the outbox.
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hooks");
    let mut args = d.args();
    args.extend(["--webhook-url".into(), hook]);
    let mut a = Instance::start(&args);
    let pre = ask_code(&a, "wes@example.com").await;
    let code = d.code("wes@example.com").await;
    post(
        a.url("/api/login/get-token"),
        Some(&pre),
        login("wes", "wes@example.com", &code),
    )
    .await
    .expect(200, "LOGIN_SUCCESS");
    // Killed between the change and its delivery (the first attempt was refused).
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill9();
    let seen = hook_receiver(port).await;
    // Two instances now; the event reaches the receiver once, after its retry is due (5 s on
    // the schedule, or once the dead instance's lease has ended).
    let b = Instance::start(&args);
    let c = Instance::start(&args);
    let deadline = Instant::now() + Duration::from_secs(50);
    while seen.lock().expect("log").is_empty() {
        assert!(Instant::now() < deadline, "the event was never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // More sign-ins through both instances, each on its own account (the resend cooldown is
    // per address): each event arrives once.
    for i in 0..4 {
        let (name, email) = (format!("wes{i}"), format!("wes{i}@example.com"));
        d.add_user(&name, &email);
        let (asked, submitted) = if i % 2 == 0 { (&b, &c) } else { (&c, &b) };
        let pre = ask_code(asked, &email).await;
        let code = d.code(&email).await;
        post(
            submitted.url("/api/login/get-token"),
            Some(&pre),
            login(&name, &email, &code),
        )
        .await
        .expect(200, "LOGIN_SUCCESS");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("log").len() < 5 {
        assert!(Instant::now() < deadline, "{:?}", seen.lock().expect("log"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both workers poll the same outbox: nothing more arrives, nothing twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = seen.lock().expect("log").clone();
    let mut ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), seen.len()), (5, 5), "{seen:?}");
    assert!(
        seen.iter().all(|(_, kind)| kind == "user.signed_in"),
        "{seen:?}"
    );
}
