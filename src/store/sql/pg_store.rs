//! The PostgreSQL store: users and the outbox, and sessions, codes and limits when there is no
//! Redis, shared by any number of mailcode instances. The rules are the shared ones
//! (`codes.rs`, `limits.rs`, `sessions.rs`); this file holds the pool, the statements that only
//! one store trait uses, and the transactions around the rules. Users, the outbox and the secret
//! record are in `pg_users.rs`.
//!
//! What it must not do: read the server's clock (every decision comes from the `now` passed in);
//! split an atomic operation across transactions (each is one transaction locking the rows it
//! decides on); hang when the server is gone (every operation is bounded by [`super::run`] and
//! the pool's acquire timeout, and the pool reconnects by itself).
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use super::postgres::Pg;
use super::{codes, limits, sessions, Dialect};
use crate::clock::Millis;
use crate::domain::{CodePurpose, Email, SessionKey, SessionRecord};
use crate::store::{
    CodeCheck, CodeRecord, CodeStore, Health, Limit, LimitCheck, LimitStore, OutgoingMail, Redeem,
    Redeemed, SessionStore, StoreError, StoreResult, KIND_MAIL, KIND_WEBHOOK,
};

#[derive(Clone)]
pub struct PostgresStore {
    pub(super) pool: PgPool,
    /// Upper bound of one store operation, lock retries included (SPEC §3: 503 within 2 s).
    op_timeout: Duration,
    /// Which deliveries of the outbox this handle serves ([`KIND_MAIL`], or [`KIND_WEBHOOK`]
    /// for [`PostgresStore::webhook_outbox`]).
    pub(super) kind: &'static str,
}

/// Connections per instance: PostgreSQL's default `max_connections` is 100, so a few instances
/// fit beside the operator's own clients (docs/operations.md, "PostgreSQL").
const POOL_SIZE: u32 = 16;
/// How long a statement waits for a row lock; our transactions hold locks for milliseconds, so
/// a longer wait is a stuck client elsewhere: it becomes a retry, then a 503.
const LOCK_TIMEOUT: &str = "1000ms";

pub(super) fn err(e: sqlx::Error) -> StoreError {
    Pg::classify(e)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://` or `postgresql://USER:PASS@HOST:PORT/DB`, with
    /// `?sslmode=disable|prefer|require|verify-ca|verify-full` as libpq reads it) and applies the
    /// migrations. `acquire_timeout` bounds getting a connection, connecting included, and each
    /// store operation.
    pub async fn open(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        // The parser's message names the part it refused, never the password.
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad PostgreSQL URL: {e}")))?
            .options([("lock_timeout", LOCK_TIMEOUT)]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            // Covers TCP connect and handshake too: a server that is down costs at most this.
            .acquire_timeout(acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            .max_lifetime(Duration::from_secs(1800))
            // A connection that died with the server is found out before it is handed out.
            .test_before_acquire(true)
            .connect_with(opts)
            .await
            .map_err(err)?;
        // sqlx takes an advisory lock around the migrations: instances starting together apply
        // them once.
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => match err(e) {
                    StoreError::Unavailable(m) => StoreError::Unavailable(m),
                    StoreError::Internal(m) => {
                        StoreError::Internal(format!("migration failed: {m}"))
                    }
                },
                other => StoreError::Internal(format!("migration failed: {other}")),
            })?;
        super::pg_users::rekey_usernames(&pool).await?;
        let mut conn = pool.acquire().await.map_err(err)?;
        super::users::assign_user_ids::<Pg>(&mut conn)
            .await
            .map_err(err)?;
        drop(conn);
        Ok(PostgresStore {
            pool,
            op_timeout: acquire_timeout,
            kind: KIND_MAIL,
        })
    }

    /// The same store, its outbox handle serving webhook deliveries (SPEC §7).
    pub fn webhook_outbox(&self) -> Self {
        PostgresStore {
            kind: KIND_WEBHOOK,
            ..self.clone()
        }
    }

    /// Deletes what has expired (sessions, codes, limits, old mails), a batch per statement so
    /// that a large sweep never holds many locks for long.
    pub async fn sweep(&self, now: Millis) -> StoreResult<()> {
        const BATCH: u64 = 1000;
        for (table, condition) in [
            ("sessions", "idle_expires_at <= $1"),
            ("sessions", "absolute_expires_at <= $1"),
            ("codes", "expires_at <= $1 - 3600000"),
            ("limits", "reset_at <= $1"),
            // Given-up webhooks stay a week for `mailcode webhooks failed`.
            (
                "mail_queue",
                "status <> 'queued' AND created_at <= $1 - \
                 CASE WHEN kind = 'mail' THEN 86400000 ELSE 691200000 END",
            ),
        ] {
            // PostgreSQL's DELETE has no LIMIT: the batch is chosen by row address.
            let sql = format!(
                "DELETE FROM {table} WHERE ctid IN \
                 (SELECT ctid FROM {table} WHERE {condition} LIMIT {BATCH})"
            );
            loop {
                let done = self
                    .run(|| sqlx::query(&sql).bind(now).execute(&self.pool))
                    .await?;
                if done.rows_affected() < BATCH {
                    break;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn run<T, F, Fut>(&self, op: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        super::run::<Pg, T, F, Fut>(self.op_timeout, op).await
    }

    fn sessions_where(condition: &str) -> String {
        format!(
            "SELECT {} FROM sessions WHERE {condition}",
            sessions::COLUMNS
        )
    }
}

fn sessions_of(rows: &[PgRow]) -> StoreResult<Vec<SessionRecord>> {
    rows.iter()
        .map(|r| sessions::from_row(r).map_err(err))
        .collect()
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            sessions::insert::<Pg>(&mut conn, s).await
        })
        .await
    }

    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        let sql = Self::sessions_where("key = $1");
        let row = self
            .run(|| {
                sqlx::query(&sql)
                    .bind(key.as_str())
                    .fetch_optional(&self.pool)
            })
            .await?;
        match row {
            Some(r) => {
                let s = sessions::from_row(&r).map_err(err)?;
                Ok(s.is_live(now).then_some(s))
            }
            None => Ok(None),
        }
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        now: Millis,
        idle_expires_at: Millis,
    ) -> StoreResult<()> {
        // An UPDATE, never an upsert: a session deleted by a concurrent logout stays deleted.
        self.run(|| {
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE key = $3",
            )
            .bind(now)
            .bind(idle_expires_at)
            .bind(key.as_str())
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn delete_session(&self, key: &SessionKey, events: &[OutgoingMail]) -> StoreResult<bool> {
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let existed = sessions::end::<Pg>(&mut tx, key, events).await?;
            tx.commit().await?;
            Ok(existed)
        })
        .await
    }

    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        let sql = Self::sessions_where(
            "user_id = $1 AND idle_expires_at > $2 AND absolute_expires_at > $2 \
             ORDER BY created_at, key",
        );
        let rows = self
            .run(|| {
                sqlx::query(&sql)
                    .bind(user_id)
                    .bind(now)
                    .fetch_all(&self.pool)
            })
            .await?;
        sessions_of(&rows)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
        events: &[OutgoingMail],
    ) -> StoreResult<u64> {
        let except = except.map(|k| k.as_str()).unwrap_or("");
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "DELETE FROM codes USING sessions WHERE codes.session_key = sessions.key \
                 AND sessions.user_id = $1 AND sessions.key <> $2",
            )
            .bind(user_id)
            .bind(except)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND key <> $2")
                .bind(user_id)
                .bind(except)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            super::outbox::insert_events::<Pg>(&mut tx, events).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl CodeStore for PostgresStore {
    async fn issue_code(&self, c: &CodeRecord) -> StoreResult<()> {
        // Replaces the whole row, attempts included, like SQLite's INSERT OR REPLACE.
        self.run(|| {
            sqlx::query(
                "INSERT INTO codes (session_key, purpose, email, mac, created_at, expires_at, \
                 resend_available_at, attempts, mail_ref) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
                 ON CONFLICT (session_key, purpose) DO UPDATE SET email = EXCLUDED.email, \
                 mac = EXCLUDED.mac, created_at = EXCLUDED.created_at, \
                 expires_at = EXCLUDED.expires_at, \
                 resend_available_at = EXCLUDED.resend_available_at, \
                 attempts = EXCLUDED.attempts, mail_ref = EXCLUDED.mail_ref",
            )
            .bind(c.session.as_str())
            .bind(c.purpose.as_str())
            .bind(&c.email)
            .bind(&c.mac)
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.resend_available_at)
            .bind(i64::from(c.attempts))
            .bind(&c.mail_ref)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn check_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        let sub = codes::Submission {
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
        };
        let sub = &sub;
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let verdict = codes::check::<Pg>(&mut tx, sub).await?;
            tx.commit().await?;
            Ok(verdict)
        })
        .await
    }

    async fn redeem_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
        action: Redeem,
    ) -> StoreResult<Redeemed> {
        let sub = codes::Submission {
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
        };
        let (sub, action) = (&sub, &action);
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let done = codes::redeem::<Pg>(&mut tx, sub, action).await?;
            if done.wrote {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(done.outcome)
        })
        .await
    }

    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        let row = self
            .run(|| {
                sqlx::query(
                    "SELECT purpose, email, mac, created_at, expires_at, resend_available_at, \
                     attempts, mail_ref FROM codes WHERE session_key = $1 AND expires_at > $2 \
                     ORDER BY created_at DESC, purpose LIMIT 1",
                )
                .bind(session.as_str())
                .bind(now)
                .fetch_optional(&self.pool)
            })
            .await?;
        let Some(r) = row else { return Ok(None) };
        let decode = || -> Result<CodeRecord, sqlx::Error> {
            let purpose: String = r.try_get("purpose")?;
            let purpose =
                CodePurpose::parse(&purpose).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: "purpose".into(),
                    source: format!("unknown code purpose {purpose:?}").into(),
                })?;
            let attempts: i64 = r.try_get("attempts")?;
            Ok(CodeRecord {
                session: session.clone(),
                purpose,
                email: r.try_get("email")?,
                mac: r.try_get("mac")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                resend_available_at: r.try_get("resend_available_at")?,
                attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
                mail_ref: r.try_get("mail_ref")?,
            })
        };
        decode().map(Some).map_err(err)
    }
}

#[async_trait]
impl LimitStore for PostgresStore {
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            limits::count_hit::<Pg>(&mut conn, key, limit, window, now).await
        })
        .await
    }

    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            limits::read_limit::<Pg>(&mut conn, key, limit, now).await
        })
        .await
    }

    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit> {
        // One transaction: each counted row stays locked until the commit, and a lost lock race
        // runs the whole transaction again (nothing of a rolled-back try was counted).
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let verdict = limits::hit_limits::<Pg>(&mut tx, checks, now).await?;
            tx.commit().await?;
            Ok(verdict)
        })
        .await
    }
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.run(|| sqlx::query("SELECT 1").execute(&self.pool))
            .await?;
        Ok(())
    }
}
