//! PostgreSQL (a real server started by `support/postgres_server.rs`), each test in its own
//! database on one shared server.
#[path = "../support/postgres_server.rs"]
mod postgres_server;

use postgres_server::Postgres;

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
    //! of its own as the store runs them: until the PostgreSQL store is wired to the store traits
    //! (then the whole suite runs here), these hold the dialect's SQL text to the rules.
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
