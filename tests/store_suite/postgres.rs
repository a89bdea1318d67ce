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

async fn key_records() -> (Arc<dyn SigningKeyRecord>, Arc<dyn SigningKeyRecord>) {
    let url = Postgres::shared().fresh_database("keys").await;
    (Arc::new(open_on(&url).await), Arc::new(open_on(&url).await))
}

crate::signing_key_tests!(key_records);

#[tokio::test]
async fn accounts_older_than_user_ids_get_one() {
    let url = Postgres::shared().fresh_database("userids").await;
    let clear = async {
        let pool = sqlx::PgPool::connect(&url).await.expect("connects");
        sqlx::query("UPDATE users SET public_id = NULL")
            .execute(&pool)
            .await
            .expect("cleared");
    };
    let reopen = || async { Arc::new(open_on(&url).await) as Arc<dyn Users> };
    crate::suite::accounts_older_than_user_ids_get_one(reopen().await, clear, reopen).await
}

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

crate::networked_sql_tests!(Postgres, sqlx::PgConnection);

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
            "signing_keys",
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
                    events: Vec::new(),
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
