//! The MySQL/MariaDB backend: users and the mail queue, and sessions, codes and limits when there
//! is no Redis. It exists so that several mailcode instances can share one database; it must
//! behave exactly like the SQLite reference (`sqlite.rs`), which the shared store suite checks.
//!
//! What it must not do:
//! - read the server's clock (`NOW()`, `CURRENT_TIMESTAMP`): every decision comes from stored
//!   values and the `now` the caller passes, so tests can run at fake times;
//! - split an atomic operation of the store traits across transactions: each one is a single
//!   transaction that locks the rows it decides on (`SELECT … FOR UPDATE`), and mail is leased with
//!   `FOR UPDATE SKIP LOCKED`, so concurrent requests and other instances cannot race it;
//! - hang or panic when the server is gone: connection failures and timeouts become
//!   [`StoreError::Unavailable`] within the acquire timeout, and the pool reconnects by itself;
//! - trust what it reads: data from the database is decoded with errors, never `unwrap`.
use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPoolOptions, MySqlRow};
use sqlx::{Executor, MySqlPool, QueryBuilder, Row};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use super::sql::{self, codes, limits, mysql::My, outbox, sessions, Dialect, SqlRow};
use super::*;

#[derive(Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    /// Upper bound of one store operation, lock retries included (SPEC §3: 503 within 2 s).
    op_timeout: Duration,
    /// Which deliveries of the outbox this handle serves ([`KIND_MAIL`], or [`KIND_WEBHOOK`]
    /// for [`MySqlStore::webhook_outbox`]).
    kind: &'static str,
}

/// Seconds a statement waits for a row lock; our transactions hold locks for milliseconds.
const LOCK_WAIT_SECS: u32 = 1;
const POOL_SIZE: u32 = 16;

fn err(e: sqlx::Error) -> StoreError {
    My::classify(e)
}

impl MySqlStore {
    /// Connects to `url` (`mysql://` or `mariadb://USER:PASS@HOST:PORT/DB`) and applies the
    /// migrations. `acquire_timeout` bounds getting a connection, connecting included, and each
    /// store operation: a server that is down or hung costs at most that long.
    pub async fn open(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let opts = MySqlConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad MySQL URL: {e}")))?;
        let pool = MySqlPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            // Covers TCP connect and handshake too: the pool retries a refused connection until
            // this deadline, then gives up with `PoolTimedOut`.
            .acquire_timeout(acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            .max_lifetime(Duration::from_secs(1800))
            // A connection that died with the server is found out before it is handed out.
            .test_before_acquire(true)
            .after_connect(|conn, _| Box::pin(async move { prepare_session(conn).await }))
            .connect_with(opts)
            .await
            .map_err(err)?;
        sqlx::migrate!("migrations/mysql")
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
        rekey_usernames(&pool).await?;
        let mut conn = pool.acquire().await.map_err(err)?;
        sql::users::assign_user_ids::<My>(&mut conn)
            .await
            .map_err(err)?;
        drop(conn);
        Ok(MySqlStore {
            pool,
            op_timeout: acquire_timeout,
            kind: KIND_MAIL,
        })
    }

    /// Deletes what has expired (sessions, codes, limits, old mails). Each statement walks an
    /// index and commits a batch at a time, so a large sweep never holds many locks for long.
    /// The same store, its outbox handle serving webhook deliveries (SPEC §7).
    pub fn webhook_outbox(&self) -> Self {
        MySqlStore {
            kind: KIND_WEBHOOK,
            ..self.clone()
        }
    }

    pub async fn sweep(&self, now: Millis) -> StoreResult<()> {
        const BATCH: u64 = 1000;
        for (table, condition) in [
            ("sessions", "idle_expires_at <= ?"),
            ("sessions", "absolute_expires_at <= ?"),
            ("codes", "expires_at <= ? - 3600000"),
            ("limits", "reset_at <= ?"),
            (
                "mail_queue",
                // Given-up webhooks stay a week for `mailcode webhooks failed`.
                "status <> 'queued' AND created_at <= ? - IF(kind = 'mail', 86400000, 691200000)",
            ),
        ] {
            let sql = format!("DELETE FROM {table} WHERE {condition} LIMIT {BATCH}");
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

    /// Runs `op` within the operation deadline, again when it lost a lock race ([`sql::run`]).
    async fn run<T, F, Fut>(&self, op: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        sql::run::<My, T, F, Fut>(self.op_timeout, op).await
    }
}

/// Per-connection settings: strict mode (too long a value is an error, never silently cut) and
/// short lock waits (a stuck lock becomes a retry, then a 503, not a hung request).
async fn prepare_session(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    conn.execute(
        format!(
            "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_TRANS_TABLES'), \
             SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECS}"
        )
        .as_str(),
    )
    .await?;
    Ok(())
}

const SESSION_COLS: &str = "`key`, kind, user_id, username, email, created_at, last_seen_at, \
                            idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id";

#[async_trait]
impl SessionStore for MySqlStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            sessions::insert::<My>(&mut conn, s).await
        })
        .await
    }

    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE `key` = ?");
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
            sqlx::query("UPDATE sessions SET last_seen_at = ?, idle_expires_at = ? WHERE `key` = ?")
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
            let existed = sessions::end::<My>(&mut tx, key, events).await?;
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
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = ? AND idle_expires_at > ? \
             AND absolute_expires_at > ? ORDER BY created_at, `key`"
        );
        let rows = self
            .run(|| {
                sqlx::query(&sql)
                    .bind(user_id)
                    .bind(now)
                    .bind(now)
                    .fetch_all(&self.pool)
            })
            .await?;
        rows.iter()
            .map(|r| sessions::from_row(r).map_err(err))
            .collect()
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
                "DELETE codes FROM codes JOIN sessions ON codes.session_key = sessions.`key` \
                 WHERE sessions.user_id = ? AND sessions.`key` <> ?",
            )
            .bind(user_id)
            .bind(except)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM sessions WHERE user_id = ? AND `key` <> ?")
                .bind(user_id)
                .bind(except)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            outbox::insert_events::<My>(&mut tx, events).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl CodeStore for MySqlStore {
    async fn issue_code(&self, c: &CodeRecord) -> StoreResult<()> {
        // Replaces the whole row, attempts included, like SQLite's INSERT OR REPLACE.
        self.run(|| {
            sqlx::query(
                "INSERT INTO codes (session_key, purpose, email, mac, created_at, expires_at, \
                 resend_available_at, attempts, mail_ref) VALUES (?,?,?,?,?,?,?,?,?) \
                 ON DUPLICATE KEY UPDATE email = ?, mac = ?, created_at = ?, expires_at = ?, \
                 resend_available_at = ?, attempts = ?, mail_ref = ?",
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
        let sub = &codes::Submission {
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
        };
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let verdict = codes::check::<My>(&mut tx, sub).await?;
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
        let sub = &codes::Submission {
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
        };
        let action = &action;
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let done = codes::redeem::<My>(&mut tx, sub, action).await?;
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
                     attempts, mail_ref FROM codes WHERE session_key = ? AND expires_at > ? \
                     ORDER BY created_at DESC, purpose LIMIT 1",
                )
                .bind(session.as_str())
                .bind(now)
                .fetch_optional(&self.pool)
            })
            .await?;
        let Some(r) = row else { return Ok(None) };
        let decode = || -> Result<CodeRecord, sqlx::Error> {
            let purpose = r.text("purpose")?;
            let purpose =
                CodePurpose::parse(&purpose).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: "purpose".into(),
                    source: format!("unknown code purpose {purpose:?}").into(),
                })?;
            Ok(CodeRecord {
                session: session.clone(),
                purpose,
                email: r.text("email")?,
                mac: r.text("mac")?,
                created_at: r.int("created_at")?,
                expires_at: r.int("expires_at")?,
                resend_available_at: r.int("resend_available_at")?,
                attempts: r.count("attempts")?,
                mail_ref: r.text("mail_ref")?,
            })
        };
        decode().map(Some).map_err(err)
    }
}

#[async_trait]
impl LimitStore for MySqlStore {
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let verdict = limits::count_hit::<My>(&mut tx, key, limit, window, now).await?;
            tx.commit().await?;
            Ok(verdict)
        })
        .await
    }

    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            limits::read_limit::<My>(&mut conn, key, limit, now).await
        })
        .await
    }

    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit> {
        // One transaction: each counted row stays locked until the commit, and a lost lock race
        // runs the whole transaction again (nothing of a rolled-back try was counted).
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let verdict = limits::hit_limits::<My>(&mut tx, checks, now).await?;
            // Committed refused or not: the hits counted up to the refusal stay counted.
            tx.commit().await?;
            Ok(verdict)
        })
        .await
    }
}

#[async_trait]
impl Health for MySqlStore {
    async fn ping(&self) -> StoreResult<()> {
        self.run(|| sqlx::query("SELECT 1").execute(&self.pool))
            .await?;
        Ok(())
    }
}

fn user_from_row(r: &MySqlRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get("id")?,
        public_id: public_id_of(r.opt_text("public_id")?)?,
        username: r.text("username")?,
        email: r.text("email")?,
        password_hash: r.text("password_hash")?,
        disabled: r.try_get("disabled")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Which unique index a duplicate-key error names: MariaDB says `for key 'users_email'`, MySQL 8
/// `for key 'users.users_email'`; the offending value comes earlier in the message, so only the
/// end is looked at.
fn violated_index(message: &str) -> Option<&'static str> {
    let tail = message.trim_end().trim_end_matches(['\'', '`', '"']);
    ["users_email", "users_username_key"]
        .into_iter()
        .find(|name| tail.ends_with(name))
}

/// Recomputes username keys of older versions ([`rekey`]) in one transaction that locks every
/// row of `users` first, so instances starting together do it once: the next one waits, then
/// finds nothing left to do. Costs one indexed lookup when there is nothing to do.
async fn rekey_usernames(pool: &sqlx::MySqlPool) -> StoreResult<()> {
    let version = crate::domain::Username::KEY_VERSION;
    let stale = sqlx::query("SELECT id FROM users WHERE username_key_version < ? LIMIT 1")
        .bind(version)
        .fetch_optional(pool)
        .await
        .map_err(err)?;
    if stale.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(err)?;
    let rows = sqlx::query(
        "SELECT id, username, username_key, username_key_version FROM users ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(err)?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(rekey::StoredName {
                id: r.try_get("id")?,
                username: r.text("username")?,
                key: r.text("username_key")?,
                key_version: r.try_get("username_key_version")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(err)?;
    let plan = rekey::plan(&rows);
    for k in &plan {
        sqlx::query("UPDATE users SET username_key = ? WHERE id = ?")
            .bind(rekey::placeholder(k.id))
            .bind(k.id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    for k in &plan {
        sqlx::query("UPDATE users SET username_key = ?, username_key_version = ? WHERE id = ?")
            .bind(k.key.as_bytes())
            .bind(version)
            .bind(k.id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    rekey::log(&plan);
    Ok(())
}

impl MySqlStore {
    async fn find_user(&self, column: &'static str, value: &str) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE {column} = ?");
        let row = self
            .run(|| sqlx::query(&sql).bind(value).fetch_optional(&self.pool))
            .await?;
        row.map(|r| user_from_row(&r).map_err(err)).transpose()
    }
}

#[async_trait]
impl SigningKeyRecord for MySqlStore {
    async fn key_generations(&self, now: Millis) -> StoreResult<Vec<KeyGeneration>> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            sql::keys::generations::<My>(&mut conn, now).await
        })
        .await
    }

    async fn rotate_keys(&self, now: Millis, retire_at: Millis) -> StoreResult<KeyGeneration> {
        self.run(|| async move {
            let mut tx = self.pool.begin().await?;
            let new = sql::keys::rotate::<My>(&mut tx, now, retire_at).await?;
            tx.commit().await?;
            Ok(new)
        })
        .await
    }
}

/// The one-row `deployment` table (migration 0004). `INSERT IGNORE` of the one row is the
/// atomic step: of instances starting at once, one inserts, the others find its row.
#[async_trait]
impl SecretRecord for MySqlStore {
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let inserted = self
            .run(|| {
                sqlx::query("INSERT IGNORE INTO deployment (id, secret_fingerprint) VALUES (1, ?)")
                    .bind(fingerprint)
                    .execute(&self.pool)
            })
            .await?
            .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        self.recorded().await
    }

    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let before = self.recorded().await?;
        self.run(|| {
            sqlx::query(
                "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, ?) \
                 ON DUPLICATE KEY UPDATE secret_fingerprint = ?",
            )
            .bind(fingerprint)
            .bind(fingerprint)
            .execute(&self.pool)
        })
        .await?;
        Ok(before)
    }

    async fn recorded(&self) -> StoreResult<Option<String>> {
        let row = self
            .run(|| {
                sqlx::query("SELECT secret_fingerprint FROM deployment WHERE id = 1")
                    .fetch_optional(&self.pool)
            })
            .await?;
        row.map(|r| r.text("secret_fingerprint").map_err(err))
            .transpose()
    }
}

#[async_trait]
impl UserStore for MySqlStore {
    async fn create_user(&self, u: &NewUser) -> Result<i64, CreateUserError> {
        let res = self
            .run(|| async move {
                let res = sqlx::query(
                    "INSERT INTO users (public_id, username, username_key, username_key_version, \
                     email, password_hash, created_at) VALUES (?,?,?,?,?,?,?)",
                )
                .bind(u.public_id.to_text())
                .bind(&u.username)
                .bind(u.username_key.as_bytes())
                .bind(crate::domain::Username::KEY_VERSION)
                .bind(&u.email)
                .bind(&u.password_hash)
                .bind(u.created_at)
                .execute(&self.pool)
                .await;
                match res {
                    Ok(r) => Ok(Ok(r.last_insert_id())),
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        Ok(Err(violated_index(db.message())))
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        match res {
            Ok(id) => i64::try_from(id)
                .map_err(|_| StoreError::Internal(format!("user id {id} out of range")).into()),
            Err(Some("users_email")) => Err(CreateUserError::EmailTaken),
            Err(Some(_)) => Err(CreateUserError::UsernameTaken),
            // An error message in another language: find out which one is taken.
            Err(None) => match self.find_user("email", &u.email).await? {
                Some(_) => Err(CreateUserError::EmailTaken),
                None => Err(CreateUserError::UsernameTaken),
            },
        }
    }

    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        self.run(|| {
            sqlx::query("DELETE FROM users WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn find_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = ?");
        let row = self
            .run(|| sqlx::query(&sql).bind(id).fetch_optional(&self.pool))
            .await?;
        row.map(|r| user_from_row(&r).map_err(err)).transpose()
    }

    async fn find_by_username(&self, keys: &[String]) -> StoreResult<Option<User>> {
        let Some(sql) = by_keys_sql(&format!("SELECT {USER_COLS}, username_key"), keys.len())
        else {
            return Ok(None);
        };
        let rows = self
            .run(|| {
                let mut q = sqlx::query(&sql);
                for k in keys {
                    q = q.bind(k.as_bytes());
                }
                q.fetch_all(&self.pool)
            })
            .await?;
        let found = rows
            .iter()
            .map(|r| Ok((r.text("username_key")?, user_from_row(r)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(err)?;
        Ok(first_by_key(keys, found))
    }

    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        self.find_user("email", email.as_str()).await
    }

    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()> {
        self.run(|| {
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(hash)
                .bind(id)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()> {
        self.run(|| {
            sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
                .bind(disabled)
                .bind(id)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY id");
        let rows = self.run(|| sqlx::query(&sql).fetch_all(&self.pool)).await?;
        rows.iter().map(|r| user_from_row(r).map_err(err)).collect()
    }
}

const MAIL_COLS: &str = "id, attempts, mail_ref, to_addr, mail_order, expires_at, created_at";

fn mail_from_row(r: &MySqlRow) -> Result<QueuedMail, sqlx::Error> {
    Ok(QueuedMail {
        attempts: r.count("attempts")?,
        receipt: r.text("mail_ref")?,
        mail: OutgoingMail {
            mail_ref: r.text("mail_ref")?,
            code: None,
            to: r.text("to_addr")?,
            order: r.text("mail_order")?,
            expires_at: r.try_get("expires_at")?,
            created_at: r.try_get("created_at")?,
        },
    })
}

/// Leases due mails: the rows are locked as they are chosen, rows another worker (of this or
/// another instance) is leasing right now are skipped, and the new lease is written before the
/// locks go, so no two workers ever get the same mail while its lease runs.
async fn claim_once(
    pool: &MySqlPool,
    kind: &str,
    now: Millis,
    lease_until: Millis,
    max: u32,
) -> Result<Vec<QueuedMail>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(&format!(
        "SELECT {MAIL_COLS} FROM mail_queue WHERE kind = ? AND status = 'queued' \
         AND next_attempt_at <= ? AND lease_until <= ? ORDER BY next_attempt_at, id LIMIT ? \
         FOR UPDATE SKIP LOCKED"
    ))
    .bind(kind)
    .bind(now)
    .bind(now)
    .bind(i64::from(max))
    .fetch_all(&mut *tx)
    .await?;
    let mails = rows
        .iter()
        .map(mail_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let row_ids = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    if !row_ids.is_empty() {
        let mut update = QueryBuilder::new("UPDATE mail_queue SET lease_until = ");
        update.push_bind(lease_until).push(" WHERE id IN (");
        let mut ids = update.separated(", ");
        for id in row_ids {
            ids.push_bind(id);
        }
        update.push(")");
        update.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(mails)
}

#[async_trait]
impl Outbox for MySqlStore {
    async fn enqueue(&self, m: &OutgoingMail) -> StoreResult<()> {
        if self.kind == KIND_WEBHOOK {
            return self
                .run(|| async move {
                    let mut conn = self.pool.acquire().await?;
                    outbox::insert_events::<My>(&mut conn, std::slice::from_ref(m)).await
                })
                .await;
        }
        self.run(|| {
            sqlx::query(
                "INSERT INTO mail_queue (mail_ref, to_addr, mail_order, status, \
                 next_attempt_at, expires_at, created_at) VALUES (?,?,?,'queued',?,?,?)",
            )
            .bind(&m.mail_ref)
            .bind(&m.to)
            .bind(&m.order)
            .bind(m.created_at)
            .bind(m.expires_at)
            .bind(m.created_at)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        self.run(|| claim_once(&self.pool, self.kind, now, lease_until, max))
            .await
    }

    async fn mark_sent(&self, mails: &[QueuedMail], _now: Millis) -> StoreResult<()> {
        let refs: Vec<&str> = mails.iter().map(|m| m.mail.mail_ref.as_str()).collect();
        if refs.is_empty() {
            return Ok(());
        }
        // A code lives in the queue only until its mail has left: the order is blanked.
        let sql = format!(
            "UPDATE mail_queue SET status = 'sent', attempts = attempts + 1, last_error = NULL, \
             mail_order = '' WHERE mail_ref IN ({})",
            super::sqlite::placeholders(refs.len())
        );
        self.run(|| {
            let mut q = sqlx::query(&sql);
            for r in &refs {
                q = q.bind(*r);
            }
            q.execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn mark_retry(
        &self,
        mail: &QueuedMail,
        next_attempt_at: Millis,
        error: &str,
    ) -> StoreResult<()> {
        let mail_ref = &mail.mail.mail_ref;
        self.run(|| {
            sqlx::query(
                "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = ?, \
                 lease_until = 0, last_error = ? WHERE mail_ref = ?",
            )
            .bind(next_attempt_at)
            .bind(sql::clip(error))
            .bind(mail_ref)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn mark_failed(&self, mail: &QueuedMail, error: &str) -> StoreResult<()> {
        let mail_ref = &mail.mail.mail_ref;
        self.run(|| {
            sqlx::query(
                // A webhook's body is kept for `mailcode webhooks retry`; a mail's order (its
                // code) is not.
                "UPDATE mail_queue SET status = 'failed', last_error = ?, \
                 attempts = attempts + IF(kind = 'mail', 0, 1), \
                 mail_order = IF(kind = 'mail', '', mail_order) WHERE mail_ref = ?",
            )
            .bind(sql::clip(error))
            .bind(mail_ref)
            .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn delivery(&self, code: &CodeRecord) -> StoreResult<Option<Delivery>> {
        let mail_ref = &code.mail_ref;
        let row = self
            .run(|| {
                sqlx::query("SELECT status, last_error FROM mail_queue WHERE mail_ref = ?")
                    .bind(mail_ref)
                    .fetch_optional(&self.pool)
            })
            .await?;
        let Some(r) = row else { return Ok(None) };
        let status = r.text("status").map_err(err)?;
        let last_error = r.opt_text("last_error").map_err(err)?;
        Ok(Some(delivery_of(&status, last_error.is_some())))
    }

    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        let row: (Option<i64>,) = self
            .run(|| {
                sqlx::query_as(
                    "SELECT MIN(GREATEST(next_attempt_at, lease_until)) FROM mail_queue \
                     WHERE kind = ? AND status = 'queued'",
                )
                .bind(self.kind)
                .fetch_one(&self.pool)
            })
            .await?;
        Ok(row.0)
    }
}

#[async_trait]
impl DeadLetters for MySqlStore {
    async fn failed(&self, max: u32) -> StoreResult<Vec<FailedDelivery>> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            outbox::failed::<My>(&mut conn, max).await
        })
        .await
    }

    async fn retry(&self, id: &str, now: Millis, expires_at: Millis) -> StoreResult<bool> {
        self.run(|| async move {
            let mut conn = self.pool.acquire().await?;
            outbox::requeue::<My>(&mut conn, id, now, expires_at).await
        })
        .await
    }
}
