//! The embedded backend: users, sessions, codes, limits and the mail queue in one SQLite file
//! (WAL mode). Every write goes through a one-connection pool, so the atomic operations of the
//! store traits are plain transactions that cannot deadlock on lock upgrades; reads use a pool
//! of their own. It is the one SQL store ([`SqlStore`]) on the SQLite dialect ([`Lite`]); this
//! file holds its connections ([`SqlitePools`]) and the batchers that serve its hot paths.
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqlitePool};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::sql::{sqlite::Lite, store::SqlStore, users, Dialect, ListStmt, Val};
use super::{OutgoingMail, StoreError, StoreResult, User};
use crate::threads::PerThread;

pub type SqliteStore = SqlStore<Lite>;

/// The connections of an SQLite store ([`Lite`]'s `Pools`).
pub struct SqlitePools {
    pub(crate) write: SqlitePool,
    pub(crate) read: Arc<ReadPool>,
    /// Mails to queue, committed in groups by [`group_commit`].
    enqueue: tokio::sync::mpsc::Sender<Pending>,
    /// Addresses to look up, in groups by [`look_up_emails`].
    lookups: tokio::sync::mpsc::Sender<Lookup>,
    /// On each HTTP thread, a batcher on that thread's runtime
    /// ([`SqlitePools::lookups_for_this_thread`]).
    thread_lookups: PerThread<tokio::sync::mpsc::Sender<Lookup>>,
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
/// runtime that looked an address up ([`SqlitePools::lookups_for_this_thread`]); they hold the
/// pool weakly, so that the pool closes with the store.
async fn look_up_emails(read: Weak<ReadPool>, mut rx: tokio::sync::mpsc::Receiver<Lookup>) {
    let mut batch: Vec<Lookup> = Vec::with_capacity(LOOKUP_MAX);
    while rx.recv_many(&mut batch, LOOKUP_MAX).await > 0 {
        let Some(read) = read.upgrade() else { return };
        let emails: Vec<Val> = batch.iter().map(|(e, _)| Val::Text(e)).collect();
        let found = users_with_emails(&read, &emails)
            .await
            .map_err(Lite::classify);
        for (email, done) in batch.drain(..) {
            // The request may have given up (timeout): nobody to tell.
            let _ = done.send(match &found {
                Ok(users) => Ok(users.iter().find(|u| u.email == email).cloned()),
                Err(e) => Err(e.clone()),
            });
        }
    }
}

const USERS_WITH_EMAILS: ListStmt = ListStmt {
    sql: "SELECT * FROM users WHERE email",
};

async fn users_with_emails(read: &ReadPool, emails: &[Val<'_>]) -> Result<Vec<User>, sqlx::Error> {
    let mut conn = read.conn().await?;
    let rows = Lite::fetch_list(&mut conn, USERS_WITH_EMAILS, &[], emails).await?;
    rows.iter().map(users::from_row).collect()
}

/// The read-only connections. Not an sqlx `Pool`: that one pings every connection it takes back
/// (`PoolConnection::return_to_pool`, unconditionally in sqlx 0.8), a second round trip to the
/// connection's worker thread for every read, two more thread wake-ups on the hot path of a code
/// request (docs/benchmarks.md). A read-only connection to a local file holds no transaction or session state
/// that a ping would flush, and sqlx runs a connection's statements one after another on its
/// worker thread, so a statement cancelled midway (a timeout) ends before the next one starts.
pub struct ReadPool {
    idle: std::sync::Mutex<Vec<SqliteConnection>>,
    permits: tokio::sync::Semaphore,
    opts: SqliteConnectOptions,
    acquire_timeout: Duration,
}

/// A read connection, back in the pool when dropped.
pub struct ReadConn<'a> {
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
        drop(pool.conn().await.map_err(Lite::classify)?);
        Ok(pool)
    }

    /// A free connection; none free within the acquire timeout is `PoolTimedOut`, as an sqlx
    /// pool says it (`Unavailable`).
    pub(crate) async fn conn(&self) -> Result<ReadConn<'_>, sqlx::Error> {
        let permit = match tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await
        {
            Ok(Ok(p)) => p,
            _ => return Err(sqlx::Error::PoolTimedOut),
        };
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => self.opts.connect().await?,
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

impl SqlitePools {
    /// Opens (creating if needed) the database at `url`, applies migrations, and starts the
    /// batchers.
    pub(crate) async fn open(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
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
            .map_err(Lite::classify)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
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
        Ok(SqlitePools {
            write,
            read,
            enqueue,
            lookups,
            thread_lookups,
        })
    }

    /// The lookup batcher of this thread when it is an HTTP thread (`crate::threads`): a
    /// request, its batch and the answer then stay on one thread, and only the statement goes
    /// to SQLite's worker thread. Elsewhere the shared batcher.
    fn lookups_for_this_thread(&self) -> tokio::sync::mpsc::Sender<Lookup> {
        self.thread_lookups
            .with(|tx| tx.clone())
            .unwrap_or_else(|| self.lookups.clone())
    }

    /// An account by address, through this thread's batcher.
    pub(crate) async fn lookup_email(&self, email: &str) -> StoreResult<Option<User>> {
        let (done, found) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the account lookup has stopped".into());
        let lookups = self.lookups_for_this_thread();
        lookups
            .send((email.to_owned(), done))
            .await
            .map_err(|_| gone())?;
        found.await.map_err(|_| gone())?
    }

    /// A code mail, queued with the next group commit; answers once it is committed.
    pub(crate) async fn queue_mail(&self, m: &OutgoingMail) -> StoreResult<()> {
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
}
