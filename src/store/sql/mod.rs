//! The SQL stores' rules, written once for every dialect (STYLE §13): how a code is judged and
//! redeemed, how limits count, how rows become domain values, and the one store on top of them
//! (`store/`, [`store::SqlStore`]). A dialect (`sqlite.rs`, `mysql.rs`, `postgres.rs`) holds
//! only what differs between databases: the SQL text of each statement ([`Statements`]), how a
//! column is read ([`SqlRow`]), which errors mean "unavailable, retry later"
//! ([`Dialect::classify`]), and how its connections are opened and handed out.
//!
//! Why a small [`Dialect`] trait rather than sqlx's `Any` driver: `Any` converts every argument
//! and every row into its own value types (a copy of each column on every read), and it cannot
//! carry SQLite's connection settings nor MySQL's binary-string columns; the hot paths (GET
//! /api/me: `load_session` and `touch_session` on SQLite) would pay for it. Here each dialect
//! runs on its own sqlx driver with its own connection type, and the rules are generic over it:
//! after monomorphisation the same code runs as a hand-written copy would.
//!
//! What it must not do: read the server's clock (every decision comes from stored values and the
//! `now` the caller passes, so tests can run at fake times), or split an atomic operation of the
//! store traits across transactions (the caller holds the transaction; the rules take its
//! connection).
pub mod codes;
mod driver;
pub mod keys;
pub mod limits;
pub mod mysql;
pub mod outbox;
pub mod pg_store;
pub mod postgres;
pub mod sessions;
pub mod sqlite;
mod statements;
pub mod store;
pub mod users;

pub use driver::*;
pub use statements::*;

use sqlx::pool::PoolConnection;
use sqlx::Transaction;
use std::future::Future;
use std::ops::DerefMut;
use std::time::Duration;

use super::{OutgoingMail, StoreError, StoreResult, User};

/// One argument of a statement, as the rules pass it; each dialect binds it its own way.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Int(i64),
    Text(&'a str),
    OptInt(Option<i64>),
    OptText(Option<&'a str>),
    /// A key compared byte by byte (a username key): bytes where the dialect stores bytes.
    Key(&'a str),
    /// A username as typed: bytes where the dialect stores it as bytes (PostgreSQL's BYTEA).
    Name(&'a str),
    /// A boolean column (`users.disabled`), as the dialect stores one.
    Flag(bool),
}

/// A statement of a dialect: its SQL text, and in which order it takes the rule's arguments.
/// The rules number their arguments from 1; a dialect with numbered placeholders (`$1`, `?1`)
/// uses them as they come (`order: None`), one with only `?` (MySQL) lists the numbers it needs,
/// repeats included.
#[derive(Debug, Clone, Copy)]
pub struct Stmt {
    pub sql: &'static str,
    pub order: Option<&'static [usize]>,
}

impl Stmt {
    /// A statement that takes the arguments as the rule passes them.
    pub const fn new(sql: &'static str) -> Self {
        Stmt { sql, order: None }
    }

    /// A statement that takes the rule's arguments in `order` (1-based, repeats allowed).
    pub const fn ordered(sql: &'static str, order: &'static [usize]) -> Self {
        Stmt {
            sql,
            order: Some(order),
        }
    }

    /// The arguments in the order this statement binds them.
    pub fn args<'a, 'v>(&self, args: &'a [Val<'v>]) -> impl Iterator<Item = Val<'v>> + 'a {
        let order = self.order;
        let n = order.map_or(args.len(), |o| o.len());
        (0..n).filter_map(move |i| match order {
            Some(o) => o.get(i).and_then(|&k| args.get(k.wrapping_sub(1))).copied(),
            None => args.get(i).copied(),
        })
    }
}

/// How a dialect's row hands out the column types the schema uses (`migrations/*`).
pub trait SqlRow {
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error>;

    /// A byte-string column holding text (a username or its key, compared byte by byte).
    fn key_text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.text(col)
    }

    /// A counter (attempts): never negative, clamped to `u32`.
    fn count(&self, col: &str) -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(self.int(col)?.max(0)).unwrap_or(u32::MAX))
    }
}

/// Which unique index a refused new account violates ([`Dialect::duplicate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    Email,
    Username,
    /// A unique violation the error does not name (a message in another language): the store
    /// finds out which one is taken.
    Unnamed,
}

/// A SQL database as the store needs it: its sqlx driver, its statements, its connections, its
/// error classes. Everything else (the rules, the store traits) is written once, generic over it.
pub trait Dialect: Send + Sync + Sized + 'static {
    type Db: sqlx::Database<Connection = Self::Conn, Row = Self::Row>;
    type Conn: sqlx::Connection<Database = Self::Db> + Send;
    type Row: SqlRow + Send;
    /// The connections one store holds, shared by its clones.
    type Pools: Send + Sync + 'static;
    /// A connection for reads, as [`Dialect::read`] hands it out.
    type Read<'a>: DerefMut<Target = Self::Conn> + Send + 'a;

    const NAME: &'static str;
    const SQL: Statements;
    /// Whether each store operation runs in [`run`] (a deadline, lock races run again): a server
    /// shared by instances. SQLite's one local writer has no lock race to lose, and its hot
    /// paths pay no timer: its waits are bounded by its pools' acquire timeout and its busy
    /// timeout, and every call by its caller's (`store::bounded`).
    const BOUNDED: bool;

    /// Opens the connections to `url` and applies the migrations; `acquire_timeout` bounds
    /// getting a connection, connecting included.
    fn connect(
        url: &str,
        acquire_timeout: Duration,
    ) -> impl Future<Output = StoreResult<Self::Pools>> + Send;
    /// A connection for writes (a statement that is a transaction of its own).
    fn write(
        p: &Self::Pools,
    ) -> impl Future<Output = Result<PoolConnection<Self::Db>, sqlx::Error>> + Send + '_;
    /// A transaction, on a write connection.
    fn begin(
        p: &Self::Pools,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send + '_;
    /// A connection for reads.
    fn read(
        p: &Self::Pools,
    ) -> impl Future<Output = Result<Self::Read<'_>, sqlx::Error>> + Send + '_;

    /// Queues a code mail the dialect's own way (SQLite: group commit), or `None`: one INSERT.
    fn queue_mail<'a>(
        _p: &'a Self::Pools,
        _m: &'a OutgoingMail,
    ) -> Option<impl Future<Output = StoreResult<()>> + Send + 'a> {
        None::<std::future::Ready<StoreResult<()>>>
    }
    /// Looks an account up by address the dialect's own way (SQLite: in batches), or `None`:
    /// one SELECT.
    fn lookup_email<'a>(
        _p: &'a Self::Pools,
        _email: &'a str,
    ) -> Option<impl Future<Output = StoreResult<Option<User>>> + Send + 'a> {
        None::<std::future::Ready<StoreResult<Option<User>>>>
    }

    /// `Unavailable` for what a retry may cure (the server is gone, busy, read-only), else
    /// `Internal`: a connection that failed or could not be had, or a database error the
    /// dialect says a retry may cure ([`Dialect::unavailable`]).
    fn classify(e: sqlx::Error) -> StoreError {
        let unavailable = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(_) => Self::unavailable(&e),
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Internal(e.to_string())
        }
    }
    /// Whether a database error (`sqlx::Error::Database`) means "the server is there but cannot
    /// serve us now".
    fn unavailable(e: &sqlx::Error) -> bool;
    /// A lost lock race (deadlock, lock wait, serialization failure): the whole transaction may
    /// simply be run again.
    fn lock_conflict(e: &sqlx::Error) -> bool;
    /// Which unique index a unique violation (of a new account) names.
    fn duplicate(db: &dyn sqlx::error::DatabaseError) -> Duplicate;
    /// The text of a [`ListStmt`] after `fixed` other arguments, for `n` values: `IN (?, …)`,
    /// one placeholder a value.
    fn list_sql(stmt: ListStmt, _fixed: usize, n: usize) -> String {
        format!("{} IN ({})", stmt.sql, vec!["?"; n].join(", "))
    }

    fn fetch_all<'c>(
        conn: &'c mut Self::Conn,
        stmt: Stmt,
        args: &'c [Val<'c>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;
    /// The row a statement finds, if any (a key lookup: one row at most).
    fn fetch_optional<'c>(
        conn: &'c mut Self::Conn,
        stmt: Stmt,
        args: &'c [Val<'c>],
    ) -> impl Future<Output = Result<Option<Self::Row>, sqlx::Error>> + Send + 'c;
    /// Runs a statement; answers how many rows it changed.
    fn execute<'c>(
        conn: &'c mut Self::Conn,
        stmt: Stmt,
        args: &'c [Val<'c>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
    /// A [`ListStmt`]'s rows, given its other arguments and the list.
    fn fetch_list<'c>(
        conn: &'c mut Self::Conn,
        stmt: ListStmt,
        fixed: &'c [Val<'c>],
        list: &'c [Val<'c>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;
    /// Runs a [`ListStmt`]; answers how many rows it changed.
    fn execute_list<'c>(
        conn: &'c mut Self::Conn,
        stmt: ListStmt,
        fixed: &'c [Val<'c>],
        list: &'c [Val<'c>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
    /// Runs the INSERT of one row; answers the id the database gave it: by default the `id`
    /// its `RETURNING id` returns.
    fn insert_id<'c>(
        conn: &'c mut Self::Conn,
        stmt: Stmt,
        args: &'c [Val<'c>],
    ) -> impl Future<Output = Result<i64, sqlx::Error>> + Send + 'c {
        async move {
            let row = Self::fetch_optional(conn, stmt, args).await?;
            row.ok_or(sqlx::Error::RowNotFound)?.int("id")
        }
    }
}

/// The row a statement finds, if any (a key lookup: one row at most).
pub async fn fetch_optional<'c, D: Dialect>(
    conn: &'c mut D::Conn,
    stmt: Stmt,
    args: &'c [Val<'c>],
) -> Result<Option<D::Row>, sqlx::Error> {
    D::fetch_optional(conn, stmt, args).await
}

/// How often an operation that lost a lock race is tried again before giving up.
const LOCK_RETRIES: u32 = 4;

/// Runs `op` (one transaction, or one statement) within `limit` (SPEC §3 Robustness: 503 within
/// 2 s), running it again when it lost a deadlock or a lock wait ([`Dialect::lock_conflict`]).
/// Once the retries or the time are spent: `Unavailable`.
pub async fn run<D: Dialect, T, F, Fut>(limit: Duration, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let work = async {
        let mut tries = 0u32;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if D::lock_conflict(&e) && tries < LOCK_RETRIES => {
                    tries += 1;
                    // Back off a little, differently per caller, so the losers do not collide
                    // again in lockstep.
                    let jitter = u64::from(rand::random::<u8>() % 8);
                    tokio::time::sleep(Duration::from_millis(u64::from(tries) * 5 + jitter)).await;
                }
                Err(e) => return Err(D::classify(e)),
            }
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from {} within {} ms",
            D::NAME,
            limit.as_millis()
        ))),
    }
}

/// A migration that could not be applied: `Unavailable` when the server went away meanwhile.
pub fn migration_failed<D: Dialect>(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => match D::classify(e) {
            StoreError::Unavailable(m) => StoreError::Unavailable(m),
            StoreError::Internal(m) => StoreError::Internal(format!("migration failed: {m}")),
        },
        other => StoreError::Internal(format!("migration failed: {other}")),
    }
}

/// An SMTP error is kept for the operator, not in full: a TEXT column holds 64 KiB on MySQL.
pub fn clip(error: &str) -> &str {
    const MAX: usize = 2000;
    match error.char_indices().nth(MAX) {
        Some((cut, _)) => &error[..cut],
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_positional_statement_takes_the_arguments_in_its_order() {
        let args = [Val::Int(1), Val::Text("k"), Val::Int(3)];
        let got: Vec<String> = Stmt::ordered("", &[2, 1, 3, 3])
            .args(&args)
            .map(|v| format!("{v:?}"))
            .collect();
        assert_eq!(got, ["Text(\"k\")", "Int(1)", "Int(3)", "Int(3)"]);
        assert_eq!(Stmt::new("").args(&args).count(), 3);
    }
}
