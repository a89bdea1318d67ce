//! The SQL stores' rules, written once for every dialect (STYLE §13): how a code is judged and
//! redeemed, how limits count, how rows become domain values. A dialect (`postgres.rs`, and
//! SQLite and MySQL/MariaDB as they move here) holds only what differs between databases: the
//! SQL text of each statement ([`Stmt`]), how a column is read ([`SqlRow`]) and which errors mean
//! "unavailable, retry later" ([`Dialect::classify`]).
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
pub mod keys;
pub mod limits;
pub mod mysql;
pub mod outbox;
pub mod pg_store;
pub mod pg_users;
pub mod postgres;
pub mod sessions;
pub mod sqlite;
pub mod users;

use std::future::Future;
use std::time::Duration;

use super::StoreError;

/// One argument of a statement, as the rules pass it; each dialect binds it its own way.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Int(i64),
    Text(&'a str),
    OptInt(Option<i64>),
    OptText(Option<&'a str>),
    /// A key compared byte by byte (a username key): bytes where the dialect stores bytes.
    Key(&'a str),
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

    /// A counter (attempts): never negative, clamped to `u32`.
    fn count(&self, col: &str) -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(self.int(col)?.max(0)).unwrap_or(u32::MAX))
    }
}

/// The SQL text of every statement the rules run, per dialect.
#[derive(Debug, Clone, Copy)]
pub struct Statements {
    /// `email, mac, expires_at, attempts` of a code by (session_key, purpose), locking the row
    /// until the transaction ends where the database locks rows (`FOR UPDATE`).
    pub code_for_update: Stmt,
    /// Uses one attempt of the code (session_key, purpose).
    pub use_attempt: Stmt,
    /// The 12 columns of a session, in [`sessions::COLUMNS`]' order.
    pub insert_session: Stmt,
    pub delete_codes_of_session: Stmt,
    pub delete_session: Stmt,
    /// Counts one hit (key, reset_at of a new window, now); returns `count, reset_at` unless
    /// [`Statements::read_counter`] must follow.
    pub count_hit: Stmt,
    /// `count, reset_at` by key, after a `count_hit` that returns nothing (MySQL: no RETURNING).
    pub read_counter: Option<Stmt>,
    /// `count, reset_at` of a running window (key, now).
    pub peek_counter: Stmt,
    /// `id, created_at` of up to 500 accounts older than user ids, by id.
    pub users_without_public_id: Stmt,
    /// Gives the account (id) the user id (text) unless it has one.
    pub set_public_id: Stmt,
    /// `generation, created_at, retires_at` of every signing key, oldest first.
    pub key_generations: Stmt,
    /// Adds the key generation (generation, created_at) unless it exists.
    pub add_key_generation: Stmt,
    /// Retires every live generation older than the given one (retires_at, generation).
    pub retire_key_generations: Stmt,
    /// Queues a delivery (mail_ref, kind, to, order, created_at = due, expires_at).
    pub insert_delivery: Stmt,
    /// `mail_ref, to_addr, attempts, created_at, mail_order, last_error` of the newest given-up
    /// webhook deliveries (how many).
    pub failed_deliveries: Stmt,
    /// Queues a given-up webhook delivery again (mail_ref, due, expires_at).
    pub requeue_delivery: Stmt,
}

/// A SQL database as the rules need it: its sqlx driver, its statements, its error classes.
pub trait Dialect: Send + Sync + 'static {
    type Db: sqlx::Database<Connection = Self::Conn, Row = Self::Row>;
    type Conn: Send;
    type Row: SqlRow + Send;

    const NAME: &'static str;
    const SQL: Statements;

    /// `Unavailable` for what a retry may cure (the server is gone, busy, read-only), else
    /// `Internal`.
    fn classify(e: sqlx::Error) -> StoreError;
    /// A lost lock race (deadlock, lock wait, serialization failure): the whole transaction may
    /// simply be run again.
    fn lock_conflict(e: &sqlx::Error) -> bool;

    fn fetch_all<'c>(
        conn: &'c mut Self::Conn,
        stmt: Stmt,
        args: &'c [Val<'c>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'c;
    /// Runs a statement; answers how many rows it changed.
    fn execute<'c>(
        conn: &'c mut Self::Conn,
        stmt: Stmt,
        args: &'c [Val<'c>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
}

/// The row a statement finds, if any (a key lookup: one row at most).
pub async fn fetch_optional<'c, D: Dialect>(
    conn: &'c mut D::Conn,
    stmt: Stmt,
    args: &'c [Val<'c>],
) -> Result<Option<D::Row>, sqlx::Error> {
    Ok(D::fetch_all(conn, stmt, args).await?.into_iter().next())
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

/// An SMTP error is kept for the operator, not in full: a TEXT column holds 64 KiB on MySQL.
pub fn clip(error: &str) -> &str {
    const MAX: usize = 2000;
    match error.char_indices().nth(MAX) {
        Some((cut, _)) => &error[..cut],
        None => error,
    }
}

/// The two executor methods of [`Dialect`] on a concrete sqlx driver, written once for every
/// dialect (each expands it with its own database type and its own way to bind a [`Val`]).
#[macro_export]
#[doc(hidden)]
macro_rules! sql_executor {
    ($db:ty, $bind:path) => {
        fn fetch_all<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            stmt: $crate::store::sql::Stmt,
            args: &'c [$crate::store::sql::Val<'c>],
        ) -> impl std::future::Future<
            Output = Result<Vec<<$db as sqlx::Database>::Row>, sqlx::Error>,
        > + Send
               + 'c {
            let q = stmt.args(args).fold(sqlx::query(stmt.sql), $bind);
            q.fetch_all(conn)
        }

        fn execute<'c>(
            conn: &'c mut <$db as sqlx::Database>::Connection,
            stmt: $crate::store::sql::Stmt,
            args: &'c [$crate::store::sql::Val<'c>],
        ) -> impl std::future::Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
            let q = stmt.args(args).fold(sqlx::query(stmt.sql), $bind);
            async move { Ok(q.execute(conn).await?.rows_affected()) }
        }
    };
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
