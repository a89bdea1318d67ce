//! PostgreSQL (a real server started by `support/postgres_server.rs`): the whole suite, each test
//! in its own database on one shared server; then what only a networked SQL store has to show:
//! several instances sharing the mail queue, and surviving the server going away.
#[path = "../support/postgres_server.rs"]
mod postgres_server;

use mailcode::domain::CodePurpose;
use mailcode::store::sql::pg_store::PostgresStore;
use mailcode::store::*;
use postgres_server::Postgres;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::suite::{new_user, session, Backend, Users, NOW};

/// The app's default store timeout (`Policy::store_timeout`).
const TIMEOUT: Duration = Duration::from_millis(1500);
const MIN: i64 = 60_000;

async fn open_on(url: &str) -> PostgresStore {
    PostgresStore::open(url, TIMEOUT)
        .await
        .expect("the PostgreSQL store opens")
}

async fn open() -> PostgresStore {
    let url = Postgres::shared().fresh_database("suite").await;
    open_on(&url).await
}

async fn sessions() -> Arc<dyn Backend> {
    Arc::new(open().await)
}
async fn users() -> Arc<dyn Users> {
    Arc::new(open().await)
}
async fn queue() -> (Arc<dyn Backend>, Arc<dyn Outbox>) {
    let store = open().await;
    (Arc::new(store.clone()), Arc::new(store))
}

crate::session_store_tests!(sessions);
crate::sql_store_tests!(users, queue);

/// Two stores, two pools, on one database: two instances.
async fn secret_records() -> (Arc<dyn SecretRecord>, Arc<dyn SecretRecord>) {
    let url = Postgres::shared().fresh_database("secret").await;
    (Arc::new(open_on(&url).await), Arc::new(open_on(&url).await))
}

crate::secret_record_tests!(secret_records);

fn mail(n: usize) -> OutgoingMail {
    OutgoingMail {
        mail_ref: format!("race{n}"),
        code: None,
        to: format!("u{n}@example.com"),
        order: "sealed order".into(),
        expires_at: NOW + 10 * MIN,
        created_at: NOW,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_claim_the_same_mail() {
    let url = Postgres::shared().fresh_database("claim").await;
    // Two stores, two pools: as two mailcode instances on one database.
    let a = Arc::new(open_on(&url).await);
    let b = Arc::new(open_on(&url).await);
    crate::suite::workers_never_claim_the_same_mail(a, b).await
}

#[tokio::test]
async fn a_username_that_reads_like_an_index_name_is_still_a_username() {
    let u = open().await;
    u.create_user(&new_user("users_email", "a@example.com"))
        .await
        .unwrap();
    assert!(matches!(
        u.create_user(&new_user("users_email", "b@example.com"))
            .await,
        Err(CreateUserError::UsernameTaken)
    ));
    assert!(matches!(
        u.create_user(&new_user("other", "a@example.com")).await,
        Err(CreateUserError::EmailTaken)
    ));
}

#[tokio::test]
async fn postgresql_urls_and_sslmode_are_accepted() {
    let url = Postgres::shared().fresh_database("scheme").await;
    // The test server has no TLS: `disable` connects in clear, `prefer` falls back to it, and
    // `require` is refused rather than silently sent in clear.
    for url in [
        url.replacen("postgres://", "postgresql://", 1),
        format!("{url}?sslmode=disable"),
        format!("{url}?sslmode=prefer"),
    ] {
        Health::ping(&open_on(&url).await).await.unwrap();
    }
    assert!(
        PostgresStore::open(&format!("{url}?sslmode=require"), TIMEOUT)
            .await
            .is_err()
    );
}

/// Runs `op` and checks that it fails with `Unavailable` within 2 s (SPEC §3 Robustness).
async fn unavailable_in_time<T: std::fmt::Debug>(
    what: &str,
    op: impl std::future::Future<Output = StoreResult<T>>,
) {
    let started = Instant::now();
    let r = op.await;
    let took = started.elapsed();
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "{what}: expected Unavailable, got {r:?}"
    );
    assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_and_the_store_recovers() {
    // A private server: this test stops it.
    let server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    server.create_database("recovery").await;
    let store = open_on(&server.url("recovery")).await;
    let rec = session(1, Some(7));
    store.create_session(&rec).await.unwrap();
    store.enqueue(&mail(1)).await.unwrap();

    let server = Arc::new(server);
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();

    // All at once: each waits out the pool's acquire timeout (the pool keeps trying in case
    // the server is only restarting), and each must still answer within 2 s.
    let email = crate::suite::email("a@example.com");
    let new = new_user("x", "x@example.com");
    futures::join!(
        unavailable_in_time("load_session", store.load_session(&rec.key, NOW)),
        unavailable_in_time(
            "hit_limit",
            store.hit_limit("k", 5, Duration::from_secs(60), NOW)
        ),
        unavailable_in_time(
            "redeem_code",
            store.redeem_code(
                &rec.key,
                CodePurpose::Login,
                &email,
                "mac",
                NOW,
                5,
                Redeem::UseAttempt,
            )
        ),
        unavailable_in_time("create_user", async {
            store.create_user(&new).await.map_err(|e| match e {
                CreateUserError::Store(e) => e,
                other => StoreError::Internal(other.to_string()),
            })
        }),
        unavailable_in_time("claim_due", store.claim_due(NOW, NOW + MIN, 10)),
        unavailable_in_time("ping", Health::ping(&store)),
    );

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .unwrap();

    // The same store, without reopening: the pool replaces its dead connections.
    assert_eq!(
        store.load_session(&rec.key, NOW).await.unwrap(),
        Some(rec.clone()),
        "data survived and the store works again"
    );
    assert_eq!(store.claim_due(NOW, NOW + MIN, 10).await.unwrap().len(), 1);
    Health::ping(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_locked_elsewhere_gives_unavailable_not_a_hang() {
    use sqlx::{Connection, Executor};
    let url = Postgres::shared().fresh_database("locked").await;
    let store = open_on(&url).await;
    store.create_session(&session(5, None)).await.unwrap();
    store
        .issue_code(&crate::suite::code(
            5,
            CodePurpose::Login,
            "a@example.com",
            "right",
        ))
        .await
        .unwrap();
    // Another client (a stuck instance, an operator's session) holds the code's row lock.
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    other
        .execute("SELECT * FROM codes FOR UPDATE")
        .await
        .unwrap();
    let email = crate::suite::email("a@example.com");
    unavailable_in_time(
        "check_code",
        store.check_code(
            &crate::suite::key(5),
            CodePurpose::Login,
            &email,
            "wrong",
            NOW,
            5,
        ),
    )
    .await;
    other.execute("ROLLBACK").await.unwrap();
    // Nothing was counted while the row was locked; now it works again.
    assert_eq!(
        store
            .check_code(
                &crate::suite::key(5),
                CodePurpose::Login,
                &email,
                "wrong",
                NOW,
                5
            )
            .await
            .unwrap(),
        CodeCheck::Wrong { attempts_left: 4 }
    );
}

#[tokio::test]
async fn sweep_deletes_only_what_has_expired() {
    let store = open().await;
    let live = session(1, Some(7));
    let mut idle = session(2, Some(7));
    idle.idle_expires_at = NOW - 1;
    store.create_session(&live).await.unwrap();
    store.create_session(&idle).await.unwrap();
    let w = Duration::from_secs(60);
    store.hit_limit("old", 5, w, NOW - 2 * MIN).await.unwrap();
    store.hit_limit("new", 5, w, NOW).await.unwrap();
    let mut old = mail(1);
    old.created_at = NOW - 25 * 60 * MIN;
    store.enqueue(&old).await.unwrap();
    let sent = store.claim_due(NOW, NOW + MIN, 10).await.unwrap();
    store.mark_sent(&sent[..1], NOW).await.unwrap();

    store.sweep(NOW).await.unwrap();

    let mine = store.list_user_sessions(7, NOW - 10).await.unwrap();
    assert_eq!(
        mine.iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
        vec![live.key.clone()]
    );
    assert_eq!(
        store.peek_limit("old", 0, NOW - 90_000).await.unwrap(),
        Limit::Allowed,
        "the expired window is gone"
    );
    assert!(matches!(
        store.peek_limit("new", 0, NOW).await.unwrap(),
        Limit::Limited { .. }
    ));
    assert_eq!(
        store
            .delivery(&crate::suite::code_for(&mail(1)))
            .await
            .unwrap(),
        None
    );
}

/// Migration 0003 and the store's rekey (`store::rekey`), as on SQLite and MySQL; two instances opening at
/// once recompute the keys once, neither fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_of_an_older_version_are_recomputed_when_the_store_opens() {
    use crate::suite::{stale_keys_were_recomputed, STALE_ACCOUNTS};
    let url = Postgres::shared().fresh_database("rekey").await;
    drop(open_on(&url).await);
    let raw = sqlx::PgPool::connect(&url).await.expect("raw connection");
    for (name, key, email) in STALE_ACCOUNTS {
        sqlx::query(
            "INSERT INTO users (username, username_key, username_key_version, email, \
             password_hash, created_at) VALUES ($1, $2, 1, $3, '$argon2id$fake', 0)",
        )
        .bind(name.as_bytes())
        .bind(key.as_bytes())
        .bind(email)
        .execute(&raw)
        .await
        .expect("an old row");
    }
    raw.close().await;
    let (a, b) = tokio::join!(open_on(&url), open_on(&url));
    stale_keys_were_recomputed(Arc::new(a)).await;
    stale_keys_were_recomputed(Arc::new(b)).await;
    stale_keys_were_recomputed(Arc::new(open_on(&url).await)).await;
}

/// The schema of `migrations/postgres` applies to an empty database, and applying it again finds
/// nothing to do; its tables are the ones the other dialects have.
#[tokio::test]
async fn the_migrations_apply_once() {
    let url = Postgres::shared().fresh_database("migrate").await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connects");
    for _ in 0..2 {
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .expect("the migrations apply");
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("lists tables");
    assert_eq!(
        tables,
        [
            "codes",
            "deployment",
            "limits",
            "mail_queue",
            "sessions",
            "users"
        ]
    );
    pool.close().await;
}

mod rules {
    //! The shared SQL rules (`store::sql`) on the PostgreSQL dialect, each step in a transaction
    //! of its own as the store runs them, without the store around them: the dialect's SQL text
    //! held to the rules (two racing redemptions sign in without its `FOR UPDATE`).
    use super::Postgres;
    use crate::suite::{email, key, session, NOW};
    use mailcode::domain::{CodePurpose, Email, SessionKey};
    use mailcode::store::sql::{codes, limits, postgres::Pg, sessions};
    use mailcode::store::{CodeCheck, Limit, LimitCheck, Redeem, Redeemed};
    use sqlx::PgPool;
    use std::time::Duration;

    async fn pool() -> PgPool {
        let url = Postgres::shared().fresh_database("rules").await;
        let pool = PgPool::connect(&url).await.expect("connects");
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .expect("migrates");
        pool
    }

    fn submission<'a>(
        session: &'a SessionKey,
        email: &'a Email,
        mac: &'a str,
    ) -> codes::Submission<'a> {
        codes::Submission {
            session,
            purpose: CodePurpose::Login,
            email,
            mac,
            now: NOW,
            max_attempts: 5,
        }
    }

    async fn hits(pool: &PgPool, checks: &[LimitCheck], now: i64) -> Limit {
        let mut tx = pool.begin().await.unwrap();
        let verdict = limits::hit_limits::<Pg>(&mut tx, checks, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        verdict
    }

    #[tokio::test]
    async fn limits_count_in_fixed_windows_and_a_refused_spacing_counts_nothing() {
        let pool = pool().await;
        let w = Duration::from_secs(60);
        let hourly = || LimitCheck::hit("email:a", 2, w).spaced("login", Duration::from_secs(10));
        assert_eq!(hits(&pool, &[hourly()], NOW).await, Limit::Allowed);
        assert_eq!(
            hits(&pool, &[hourly()], NOW + 1_000).await,
            Limit::Limited {
                retry_after_ms: 9_000
            },
            "the spacing refuses first"
        );
        assert_eq!(hits(&pool, &[hourly()], NOW + 10_000).await, Limit::Allowed);
        assert_eq!(
            hits(&pool, &[LimitCheck::peek("email:a", 2)], NOW + 10_000).await,
            Limit::Limited {
                retry_after_ms: 50_000
            },
            "two hits counted, not three: the refused spacing counted none"
        );
        assert_eq!(
            hits(&pool, &[hourly()], NOW + 60_000).await,
            Limit::Allowed,
            "a new window"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_many_redemptions_of_the_right_code_exactly_one_signs_in() {
        let pool = pool().await;
        let old = session(1, None);
        let mut conn = pool.acquire().await.unwrap();
        sessions::insert::<Pg>(&mut conn, &old).await.unwrap();
        sqlx::query(
            "INSERT INTO codes (session_key, purpose, email, mac, created_at, expires_at, \
             resend_available_at, attempts, mail_ref) VALUES ($1, 'login', 'a@example.com', \
             'right', $2, $3, $2, 0, 'm1')",
        )
        .bind(old.key.as_str())
        .bind(NOW)
        .bind(NOW + 600_000)
        .execute(&mut *conn)
        .await
        .unwrap();
        drop(conn);
        let wrong = {
            let mut tx = pool.begin().await.unwrap();
            let a = email("a@example.com");
            let sub = submission(&old.key, &a, "wrong");
            let v = codes::check::<Pg>(&mut tx, &sub).await.unwrap();
            tx.commit().await.unwrap();
            v
        };
        assert_eq!(wrong, CodeCheck::Wrong { attempts_left: 4 });

        let racers = (2..10).map(|n| {
            let pool = pool.clone();
            let old = old.key.clone();
            tokio::spawn(async move {
                let action = Redeem::SignIn {
                    new: session(n, Some(7)),
                };
                let a = email("a@example.com");
                let mut tx = pool.begin().await.unwrap();
                let r = codes::redeem::<Pg>(&mut tx, &submission(&old, &a, "right"), &action)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                r.outcome
            })
        });
        let outcomes = futures::future::join_all(racers).await;
        let won = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Redeemed::SignedIn)))
            .count();
        assert_eq!(won, 1, "{outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Ok(Redeemed::SignedIn | Redeemed::Gone))));
        let left: Vec<String> = sqlx::query_scalar("SELECT key FROM sessions ORDER BY key")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(left.len(), 1, "the old session ended, one new one started");
        assert_ne!(left[0], key(1).as_str());
        let codes_left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM codes")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(codes_left, 0, "the code was consumed");
    }
}
