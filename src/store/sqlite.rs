//! The embedded backend: users, sessions, codes, limits and the mail queue in one SQLite file
//! (WAL mode). Every write goes through a one-connection pool, so the atomic operations of the
//! store traits are plain transactions that cannot deadlock on lock upgrades; reads use a pool
//! of their own.
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqlitePool};
use std::str::FromStr;
use std::sync::Weak;
use std::time::Duration;

use super::sql::{codes, keys, limits, outbox, sessions, sqlite::Lite, Dialect};
use super::*;
use crate::threads::PerThread;

#[derive(Clone)]
pub struct SqliteStore {
    read: Arc<ReadPool>,
    write: SqlitePool,
    /// Mails to queue, committed in groups by [`group_commit`].
    enqueue: tokio::sync::mpsc::Sender<Pending>,
    /// Addresses to look up, in groups by [`look_up_emails`].
    lookups: tokio::sync::mpsc::Sender<Lookup>,
    /// On each HTTP thread, a batcher on that thread's runtime
    /// ([`SqliteStore::lookups_for_this_thread`]).
    thread_lookups: PerThread<tokio::sync::mpsc::Sender<Lookup>>,
    /// Which deliveries of the outbox this handle serves ([`KIND_MAIL`], or [`KIND_WEBHOOK`]
    /// for [`SqliteStore::webhook_outbox`]).
    kind: &'static str,
}

/// An address to look up, and who to tell what was found.
type Lookup = (
    String,
    tokio::sync::oneshot::Sender<StoreResult<Option<User>>>,
);

/// Most addresses in one lookup.
const LOOKUP_MAX: usize = 64;

/// A mail waiting for its group commit, and who to tell when it is durable.
type Pending = (
    OutgoingMail,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// Most mails in one INSERT (6 values each, far below SQLite's variable limit).
const GROUP_MAX: usize = 64;

/// Group commit of the mail queue: every code request inserts a mail, and the single writer
/// connection made that insert the code request's bottleneck (docs/benchmarks.md). The mails
/// that arrive while one INSERT runs go into the next one, together; each request still returns
/// only once its own mail is committed. Ends when every store clone is dropped.
async fn group_commit(write: SqlitePool, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(GROUP_MAX);
    while rx.recv_many(&mut batch, GROUP_MAX).await > 0 {
        let rows = vec!["(?,?,?,'queued',?,?,?)"; batch.len()].join(", ");
        let sql = format!(
            "INSERT INTO mail_queue (mail_ref, to_addr, mail_order, status, \
             next_attempt_at, expires_at, created_at) VALUES {rows}"
        );
        let mut q = sqlx::query(&sql);
        for (m, _) in &batch {
            q = q
                .bind(&m.mail_ref)
                .bind(&m.to)
                .bind(&m.order)
                .bind(m.created_at)
                .bind(m.expires_at)
                .bind(m.created_at);
        }
        let result = q
            .execute(&write)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        for (_, done) in batch.drain(..) {
            // The request may have given up (timeout); its mail is queued all the same.
            let _ = done.send(result.clone());
        }
    }
}

/// Account lookups by address, in groups. Every code request looks its address up (so that the
/// answer costs the same whether or not an account exists), and every statement is a round trip
/// to its connection's worker thread: two thread wake-ups, which made a third of the CPU of a code
/// request under load (docs/benchmarks.md, workload 2). The addresses asked for while one lookup runs go into
/// the next one, as one `IN (…)`; each request still gets its own answer, or the error. Ends when
/// every store clone is dropped.
///
/// A store has one such batcher on the runtime that opened it, and one on each HTTP thread's
/// runtime that looked an address up ([`SqliteStore::lookups_for_this_thread`]); they hold the
/// pool weakly, so that the pool closes with the store.
async fn look_up_emails(read: Weak<ReadPool>, mut rx: tokio::sync::mpsc::Receiver<Lookup>) {
    let mut batch: Vec<Lookup> = Vec::with_capacity(LOOKUP_MAX);
    while rx.recv_many(&mut batch, LOOKUP_MAX).await > 0 {
        let Some(read) = read.upgrade() else { return };
        let emails: Vec<&str> = batch.iter().map(|(e, _)| e.as_str()).collect();
        let found = users_with_emails(&read, &emails).await;
        for (email, done) in batch.drain(..) {
            // The request may have given up (timeout): nobody to tell.
            let _ = done.send(match &found {
                Ok(users) => Ok(users.iter().find(|u| u.email == email).cloned()),
                Err(e) => Err(e.clone()),
            });
        }
    }
}

async fn users_with_emails(read: &ReadPool, emails: &[&str]) -> StoreResult<Vec<User>> {
    let sql = format!(
        "SELECT * FROM users WHERE email IN ({})",
        placeholders(emails.len())
    );
    let mut q = sqlx::query(&sql);
    for e in emails {
        q = q.bind(*e);
    }
    let rows = q.fetch_all(&mut *read.conn().await?).await.map_err(err)?;
    rows.iter().map(|r| user_from_row(r).map_err(err)).collect()
}

/// The read-only connections. Not an sqlx `Pool`: that one pings every connection it takes back
/// (`PoolConnection::return_to_pool`, unconditionally in sqlx 0.8), a second round trip to the
/// connection's worker thread for every read, two more thread wake-ups on the hot path of a code
/// request (docs/benchmarks.md). A read-only connection to a local file holds no transaction or session state
/// that a ping would flush, and sqlx runs a connection's statements one after another on its
/// worker thread, so a statement cancelled midway (a timeout) ends before the next one starts.
struct ReadPool {
    idle: std::sync::Mutex<Vec<SqliteConnection>>,
    permits: tokio::sync::Semaphore,
    opts: SqliteConnectOptions,
    acquire_timeout: Duration,
}

/// A read connection, back in the pool when dropped.
struct ReadConn<'a> {
    conn: Option<SqliteConnection>,
    pool: &'a ReadPool,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

const READ_CONNECTIONS: usize = 8;

impl ReadPool {
    async fn open(opts: SqliteConnectOptions, acquire_timeout: Duration) -> StoreResult<Self> {
        let pool = ReadPool {
            idle: std::sync::Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(READ_CONNECTIONS),
            opts,
            acquire_timeout,
        };
        // One connection at once: a database that cannot be read fails the start, not a request.
        drop(pool.conn().await?);
        Ok(pool)
    }

    async fn conn(&self) -> StoreResult<ReadConn<'_>> {
        let permit = match tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await
        {
            Ok(Ok(p)) => p,
            _ => {
                return Err(StoreError::Unavailable(
                    "no SQLite read connection free".into(),
                ))
            }
        };
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => self.opts.connect().await.map_err(err)?,
        };
        Ok(ReadConn {
            conn: Some(conn),
            pool: self,
            _permit: permit,
        })
    }
}

impl std::ops::Deref for ReadConn<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for ReadConn<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for ReadConn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(c);
        }
    }
}

fn err(e: sqlx::Error) -> StoreError {
    Lite::classify(e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    pub async fn open(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad SQLite URL {url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(dir) = opts.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        // No ping before handing out a connection (`test_before_acquire`, sqlx's default): it
        // cost ~6 % of the CPU of a code request (docs/benchmarks.md, finding 3) and catches
        // nothing here. A connection to a local SQLite file does not go stale the way a socket
        // to a server does; a file that became unreadable fails the statement itself, with the
        // same error the ping would have given.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await
            .map_err(err)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        rekey_usernames(&write).await?;
        let mut conn = write.acquire().await.map_err(err)?;
        super::sql::users::assign_user_ids::<Lite>(&mut conn)
            .await
            .map_err(err)?;
        drop(conn);
        let read = Arc::new(ReadPool::open(opts.read_only(true), acquire_timeout).await?);
        let (enqueue, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(group_commit(write.clone(), rx));
        let (lookups, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(look_up_emails(Arc::downgrade(&read), rx));
        let pool = Arc::downgrade(&read);
        let thread_lookups = PerThread::new(move || {
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            tokio::spawn(look_up_emails(pool.clone(), rx));
            tx
        });
        Ok(SqliteStore {
            read,
            write,
            enqueue,
            lookups,
            thread_lookups,
            kind: KIND_MAIL,
        })
    }

    /// The same store, its outbox handle serving webhook deliveries (SPEC §7).
    pub fn webhook_outbox(&self) -> Self {
        SqliteStore {
            kind: KIND_WEBHOOK,
            ..self.clone()
        }
    }

    /// The lookup batcher of this thread when it is an HTTP thread (`crate::threads`): a
    /// request, its batch and the answer then stay on one thread, and only the statement goes
    /// to SQLite's worker thread. Elsewhere the shared batcher.
    fn lookups_for_this_thread(&self) -> tokio::sync::mpsc::Sender<Lookup> {
        self.thread_lookups
            .with(|tx| tx.clone())
            .unwrap_or_else(|| self.lookups.clone())
    }

    /// Deletes what has expired; run now and then by the app.
    pub async fn sweep(&self, now: Millis) -> StoreResult<()> {
        let mut tx = self.write.begin().await.map_err(err)?;
        for sql in [
            "DELETE FROM sessions WHERE idle_expires_at <= ?1 OR absolute_expires_at <= ?1",
            "DELETE FROM codes WHERE expires_at <= ?1 - 3600000",
            "DELETE FROM limits WHERE reset_at <= ?1",
            // Given-up webhooks stay a week for `mailcode webhooks failed` (docs/operations.md).
            "DELETE FROM mail_queue WHERE status <> 'queued' AND ((kind = 'mail' \
             AND created_at <= ?1 - 86400000) OR created_at <= ?1 - 691200000)",
        ] {
            sqlx::query(sql)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        let mut conn = self.write.acquire().await.map_err(err)?;
        sessions::insert::<Lite>(&mut conn, s).await.map_err(err)
    }

    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE key = ?")
            .bind(key.as_str())
            .fetch_optional(&mut *self.read.conn().await?)
            .await
            .map_err(err)?;
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
        sqlx::query("UPDATE sessions SET last_seen_at = ?, idle_expires_at = ? WHERE key = ?")
            .bind(now)
            .bind(idle_expires_at)
            .bind(key.as_str())
            .execute(&self.write)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_session(&self, key: &SessionKey, events: &[OutgoingMail]) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.map_err(err)?;
        let existed = sessions::end::<Lite>(&mut tx, key, events)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(existed)
    }

    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM sessions WHERE user_id = ? AND idle_expires_at > ? AND absolute_expires_at > ? \
             ORDER BY created_at",
        )
        .bind(user_id)
        .bind(now)
        .bind(now)
        .fetch_all(&mut *self.read.conn().await?)
        .await
        .map_err(err)?;
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
        let mut tx = self.write.begin().await.map_err(err)?;
        sqlx::query("DELETE FROM codes WHERE session_key IN (SELECT key FROM sessions WHERE user_id = ? AND key <> ?)")
            .bind(user_id)
            .bind(except)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let n = sqlx::query("DELETE FROM sessions WHERE user_id = ? AND key <> ?")
            .bind(user_id)
            .bind(except)
            .execute(&mut *tx)
            .await
            .map_err(err)?
            .rows_affected();
        outbox::insert_events::<Lite>(&mut tx, events)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(n)
    }
}

#[async_trait]
impl CodeStore for SqliteStore {
    async fn issue_code(&self, c: &CodeRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO codes (session_key, purpose, email, mac, created_at, expires_at, \
             resend_available_at, attempts, mail_ref) VALUES (?,?,?,?,?,?,?,?,?)",
        )
        .bind(c.session.as_str())
        .bind(c.purpose.as_str())
        .bind(&c.email)
        .bind(&c.mac)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.resend_available_at)
        .bind(c.attempts as i64)
        .bind(&c.mail_ref)
        .execute(&self.write)
        .await
        .map_err(err)?;
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
        let mut tx = self.write.begin().await.map_err(err)?;
        let verdict = codes::check::<Lite>(&mut tx, &sub).await.map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(verdict)
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
        let mut tx = self.write.begin().await.map_err(err)?;
        let done = codes::redeem::<Lite>(&mut tx, &sub, &action)
            .await
            .map_err(err)?;
        // Nothing written when the code was no longer right: dropping the transaction rolls
        // it back.
        if done.wrote {
            tx.commit().await.map_err(err)?;
        }
        Ok(done.outcome)
    }

    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        let row = sqlx::query(
            "SELECT * FROM codes WHERE session_key = ? AND expires_at > ? ORDER BY created_at DESC LIMIT 1",
        )
        .bind(session.as_str())
        .bind(now)
        .fetch_optional(&mut *self.read.conn().await?)
        .await
        .map_err(err)?;
        let Some(r) = row else { return Ok(None) };
        let purpose: String = r.try_get("purpose").map_err(err)?;
        Ok(Some(CodeRecord {
            session: session.clone(),
            purpose: CodePurpose::parse(&purpose).unwrap_or(CodePurpose::Login),
            email: r.try_get("email").map_err(err)?,
            mac: r.try_get("mac").map_err(err)?,
            created_at: r.try_get("created_at").map_err(err)?,
            expires_at: r.try_get("expires_at").map_err(err)?,
            resend_available_at: r.try_get("resend_available_at").map_err(err)?,
            attempts: r.try_get::<i64, _>("attempts").map_err(err)?.max(0) as u32,
            mail_ref: r.try_get("mail_ref").map_err(err)?,
        }))
    }
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        let mut conn = self.write.acquire().await.map_err(err)?;
        limits::count_hit::<Lite>(&mut conn, key, limit, window, now)
            .await
            .map_err(err)
    }

    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        let mut conn = self.read.conn().await?;
        limits::read_limit::<Lite>(&mut conn, key, limit, now)
            .await
            .map_err(err)
    }

    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit> {
        // One transaction on the one write connection: no other write comes in between.
        let mut tx = self.write.begin().await.map_err(err)?;
        let verdict = limits::hit_limits::<Lite>(&mut tx, checks, now)
            .await
            .map_err(err)?;
        // Committed refused or not: the hits counted up to the refusal stay counted.
        tx.commit().await.map_err(err)?;
        Ok(verdict)
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.write)
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// `?, ?, …` for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn user_from_row(r: &SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get("id")?,
        public_id: public_id_of(r.try_get("public_id")?)?,
        username: r.try_get("username")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

/// Recomputes username keys of older versions ([`rekey`]), in one transaction of the one
/// writer; costs one indexed count when there is nothing to do.
async fn rekey_usernames(write: &SqlitePool) -> StoreResult<()> {
    let version = crate::domain::Username::KEY_VERSION;
    let stale: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username_key_version < ?")
            .bind(version)
            .fetch_one(write)
            .await
            .map_err(err)?;
    if stale == 0 {
        return Ok(());
    }
    let mut tx = write.begin().await.map_err(err)?;
    let rows = sqlx::query("SELECT id, username, username_key, username_key_version FROM users")
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(rekey::StoredName {
                id: r.try_get("id")?,
                username: r.try_get("username")?,
                key: r.try_get("username_key")?,
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
            .bind(&k.key)
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

/// The one-row `deployment` table (migration 0004). Statements on the writer connection, one
/// at a time: the insert that does nothing when a row exists is the atomic step, across
/// processes too (SQLite serialises writers).
#[async_trait]
impl SigningKeyRecord for SqliteStore {
    async fn key_generations(&self, now: Millis) -> StoreResult<Vec<KeyGeneration>> {
        let mut conn = self.write.acquire().await.map_err(err)?;
        keys::generations::<Lite>(&mut conn, now).await.map_err(err)
    }

    async fn rotate_keys(&self, now: Millis, retire_at: Millis) -> StoreResult<KeyGeneration> {
        let mut tx = self.write.begin().await.map_err(err)?;
        let new = keys::rotate::<Lite>(&mut tx, now, retire_at)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(new)
    }
}

#[async_trait]
impl SecretRecord for SqliteStore {
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let inserted = sqlx::query(
            "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(&self.write)
        .await
        .map_err(err)?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        self.recorded().await
    }

    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let before = self.recorded().await?;
        sqlx::query(
            "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, ?1) \
             ON CONFLICT (id) DO UPDATE SET secret_fingerprint = excluded.secret_fingerprint",
        )
        .bind(fingerprint)
        .execute(&self.write)
        .await
        .map_err(err)?;
        Ok(before)
    }

    async fn recorded(&self) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT secret_fingerprint FROM deployment WHERE id = 1")
            .fetch_optional(&self.write)
            .await
            .map_err(err)
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, u: &NewUser) -> Result<i64, CreateUserError> {
        let res = sqlx::query(
            "INSERT INTO users (public_id, username, username_key, username_key_version, email, \
             password_hash, created_at) VALUES (?,?,?,?,?,?,?)",
        )
        .bind(u.public_id.to_text())
        .bind(&u.username)
        .bind(&u.username_key)
        .bind(crate::domain::Username::KEY_VERSION)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.created_at)
        .execute(&self.write)
        .await;
        match res {
            Ok(r) => Ok(r.last_insert_rowid()),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                if db.message().contains("users.email") {
                    Err(CreateUserError::EmailTaken)
                } else {
                    Err(CreateUserError::UsernameTaken)
                }
            }
            Err(e) => Err(err(e).into()),
        }
    }

    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn find_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.read.conn().await?)
            .await
            .map_err(err)?;
        row.map(|r| user_from_row(&r).map_err(err)).transpose()
    }

    async fn find_by_username(&self, keys: &[String]) -> StoreResult<Option<User>> {
        let Some(sql) = by_keys_sql("SELECT *", keys.len()) else {
            return Ok(None);
        };
        let mut q = sqlx::query(&sql);
        for k in keys {
            q = q.bind(k);
        }
        let rows = q
            .fetch_all(&mut *self.read.conn().await?)
            .await
            .map_err(err)?;
        let found = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("username_key")?, user_from_row(r)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(err)?;
        Ok(first_by_key(keys, found))
    }

    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        let (done, found) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the account lookup has stopped".into());
        let lookups = self.lookups_for_this_thread();
        lookups
            .send((email.as_str().to_owned(), done))
            .await
            .map_err(|_| gone())?;
        found.await.map_err(|_| gone())?
    }

    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()> {
        sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(disabled as i64)
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY id")
            .fetch_all(&mut *self.read.conn().await?)
            .await
            .map_err(err)?;
        rows.iter().map(|r| user_from_row(r).map_err(err)).collect()
    }
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn enqueue(&self, m: &OutgoingMail) -> StoreResult<()> {
        if self.kind == KIND_WEBHOOK {
            let mut conn = self.write.acquire().await.map_err(err)?;
            return outbox::insert_events::<Lite>(&mut conn, std::slice::from_ref(m))
                .await
                .map_err(err);
        }
        let (done, committed) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the mail queue writer has stopped".into());
        self.enqueue
            .send((m.clone(), done))
            .await
            .map_err(|_| gone())?;
        committed
            .await
            .map_err(|_| gone())?
            .map_err(StoreError::Unavailable)
    }

    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        let rows = sqlx::query(
            "UPDATE mail_queue SET lease_until = ?1 WHERE id IN (SELECT id FROM mail_queue WHERE kind = ?4 \
             AND status = 'queued' AND next_attempt_at <= ?2 AND lease_until <= ?2 \
             ORDER BY next_attempt_at, id LIMIT ?3) RETURNING *",
        )
        .bind(lease_until)
        .bind(now)
        .bind(max as i64)
        .bind(self.kind)
        .fetch_all(&self.write)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| -> Result<QueuedMail, sqlx::Error> {
                Ok(QueuedMail {
                    attempts: r.try_get::<i64, _>("attempts")?.max(0) as u32,
                    receipt: r.try_get("mail_ref")?,
                    mail: OutgoingMail {
                        mail_ref: r.try_get("mail_ref")?,
                        code: None,
                        to: r.try_get("to_addr")?,
                        order: r.try_get("mail_order")?,
                        expires_at: r.try_get("expires_at")?,
                        created_at: r.try_get("created_at")?,
                    },
                })
            })
            .collect::<Result<_, _>>()
            .map_err(err)
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
            placeholders(refs.len())
        );
        let mut q = sqlx::query(&sql);
        for r in &refs {
            q = q.bind(*r);
        }
        q.execute(&self.write).await.map_err(err)?;
        Ok(())
    }

    async fn mark_retry(
        &self,
        mail: &QueuedMail,
        next_attempt_at: Millis,
        error: &str,
    ) -> StoreResult<()> {
        let mail_ref = &mail.mail.mail_ref;
        sqlx::query(
            "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = ?, lease_until = 0, \
             last_error = ? WHERE mail_ref = ?",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(mail_ref)
        .execute(&self.write)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn mark_failed(&self, mail: &QueuedMail, error: &str) -> StoreResult<()> {
        let mail_ref = &mail.mail.mail_ref;
        sqlx::query(
            // A webhook's body is kept for `mailcode webhooks retry`; a mail's order (its code)
            // is not.
            "UPDATE mail_queue SET status = 'failed', last_error = ?, \
             attempts = attempts + CASE WHEN kind = 'mail' THEN 0 ELSE 1 END, \
             mail_order = CASE WHEN kind = 'mail' THEN '' ELSE mail_order END WHERE mail_ref = ?",
        )
        .bind(error)
        .bind(mail_ref)
        .execute(&self.write)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn delivery(&self, code: &CodeRecord) -> StoreResult<Option<Delivery>> {
        let mail_ref = &code.mail_ref;
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT status, last_error FROM mail_queue WHERE mail_ref = ?")
                .bind(mail_ref)
                .fetch_optional(&mut *self.read.conn().await?)
                .await
                .map_err(err)?;
        Ok(row.map(|(status, last_error)| delivery_of(&status, last_error.is_some())))
    }

    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT MIN(MAX(next_attempt_at, lease_until)) FROM mail_queue WHERE kind = ?1 \
             AND status = 'queued'",
        )
        .bind(self.kind)
        .fetch_optional(&mut *self.read.conn().await?)
        .await
        .map_err(err)?;
        Ok(row.and_then(|(m,)| m))
    }
}

#[async_trait]
impl DeadLetters for SqliteStore {
    async fn failed(&self, max: u32) -> StoreResult<Vec<FailedDelivery>> {
        let mut conn = self.write.acquire().await.map_err(err)?;
        outbox::failed::<Lite>(&mut conn, max).await.map_err(err)
    }

    async fn retry(&self, id: &str, now: Millis, expires_at: Millis) -> StoreResult<bool> {
        let mut conn = self.write.acquire().await.map_err(err)?;
        outbox::requeue::<Lite>(&mut conn, id, now, expires_at)
            .await
            .map_err(err)
    }
}
