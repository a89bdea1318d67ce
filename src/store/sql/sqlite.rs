//! SQLite: only what differs from the other dialects (SQL text with `?n` placeholders, column
//! types, which errors mean "unavailable"). The rules are in the files beside this one; the store
//! (its one write connection, read connections and batchers) is `store/sqlite.rs`. One writer
//! serves every transaction one after the other, so `code_for_update` needs no row lock.
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Row, Sqlite};

use super::{Dialect, SqlRow, Statements, Stmt, Val};
use crate::store::StoreError;

pub struct Lite;

fn bind<'q>(
    q: Query<'q, Sqlite, SqliteArguments<'q>>,
    v: Val<'q>,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    match v {
        Val::Int(n) => q.bind(n),
        // TEXT compares byte by byte in SQLite (the BINARY collation).
        Val::Text(s) | Val::Key(s) => q.bind(s),
        Val::OptInt(n) => q.bind(n),
        Val::OptText(s) => q.bind(s),
    }
}

impl Dialect for Lite {
    type Db = Sqlite;
    type Conn = sqlx::SqliteConnection;
    type Row = SqliteRow;

    const NAME: &'static str = "SQLite";
    const SQL: Statements = Statements {
        code_for_update: Stmt::new(
            "SELECT email, mac, expires_at, attempts FROM codes \
             WHERE session_key = ?1 AND purpose = ?2",
        ),
        use_attempt: Stmt::new(
            "UPDATE codes SET attempts = attempts + 1 WHERE session_key = ?1 AND purpose = ?2",
        ),
        insert_session: Stmt::new(
            "INSERT INTO sessions (key, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        ),
        delete_codes_of_session: Stmt::new("DELETE FROM codes WHERE session_key = ?1"),
        delete_session: Stmt::new("DELETE FROM sessions WHERE key = ?1"),
        count_hit: Stmt::new(
            "INSERT INTO limits (key, count, reset_at) VALUES (?1, 1, ?2) ON CONFLICT (key) DO UPDATE \
             SET count = CASE WHEN reset_at <= ?3 THEN 1 ELSE count + 1 END, \
             reset_at = CASE WHEN reset_at <= ?3 THEN ?2 ELSE reset_at END \
             RETURNING count, reset_at",
        ),
        read_counter: None,
        peek_counter: Stmt::new(
            "SELECT count, reset_at FROM limits WHERE key = ?1 AND reset_at > ?2",
        ),
        users_without_public_id: Stmt::new(
            "SELECT id, created_at FROM users WHERE public_id IS NULL ORDER BY id LIMIT 500",
        ),
        set_public_id: Stmt::new(
            "UPDATE users SET public_id = ?2 WHERE id = ?1 AND public_id IS NULL",
        ),
        key_generations: Stmt::new(
            "SELECT generation, created_at, retires_at FROM signing_keys ORDER BY generation",
        ),
        add_key_generation: Stmt::new(
            "INSERT OR IGNORE INTO signing_keys (generation, created_at) VALUES (?1, ?2)",
        ),
        retire_key_generations: Stmt::new(
            "UPDATE signing_keys SET retires_at = ?1 WHERE retires_at IS NULL AND generation < ?2",
        ),
        insert_delivery: Stmt::new(
            "INSERT INTO mail_queue (mail_ref, kind, to_addr, mail_order, status, next_attempt_at, \
             expires_at, created_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?5)",
        ),
        failed_deliveries: Stmt::new(
            "SELECT mail_ref, to_addr, attempts, created_at, mail_order, last_error FROM mail_queue \
             WHERE kind = 'webhook' AND status = 'failed' ORDER BY created_at DESC, mail_ref LIMIT ?1",
        ),
        requeue_delivery: Stmt::new(
            "UPDATE mail_queue SET status = 'queued', attempts = 0, next_attempt_at = ?2, lease_until = 0, \
             expires_at = ?3, last_error = NULL WHERE mail_ref = ?1 AND kind = 'webhook' AND status = 'failed'",
        ),
    };

    fn classify(e: sqlx::Error) -> StoreError {
        let unavailable = match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => {
                db.message().contains("locked") || db.message().contains("busy")
            }
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Internal(e.to_string())
        }
    }

    /// One writer: no lock race to lose.
    fn lock_conflict(_: &sqlx::Error) -> bool {
        false
    }

    crate::sql_executor!(Sqlite, bind);
}

/// INTEGER and TEXT columns (`migrations/sqlite/0001_init.sql`).
impl SqlRow for SqliteRow {
    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(col)
    }
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(col)
    }
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
        self.try_get(col)
    }
}
