//! PostgreSQL: only what differs from the other dialects (SQL text with `$n` placeholders, column
//! types, which errors mean "unavailable"). The rules are in the files beside this one.
use sqlx::postgres::{PgArguments, PgDatabaseError, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};

use super::{Dialect, SqlRow, Statements, Stmt, Val};
use crate::store::StoreError;

pub struct Pg;

fn bind<'q>(q: Query<'q, Postgres, PgArguments>, v: Val<'q>) -> Query<'q, Postgres, PgArguments> {
    match v {
        Val::Int(n) => q.bind(n),
        Val::Text(s) | Val::Key(s) => q.bind(s),
        Val::OptInt(n) => q.bind(n),
        Val::OptText(s) => q.bind(s),
    }
}

/// SQLSTATE classes and codes that mean "the server is there but cannot serve us now", or a lost
/// lock race (PostgreSQL's Appendix A, "Error Codes").
mod states {
    /// Class 08: connection exception; class 53: insufficient resources (too many connections).
    pub const UNAVAILABLE_CLASSES: [&str; 2] = ["08", "53"];
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// `statement_timeout` or `lock_timeout` ran out.
    pub const QUERY_CANCELED: &str = "57014";
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// A hot standby, or `default_transaction_read_only` during a failover.
    pub const READ_ONLY_TRANSACTION: &str = "25006";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .map(|p| p.code().to_owned()),
        _ => None,
    }
}

impl Dialect for Pg {
    type Db = Postgres;
    type Conn = sqlx::PgConnection;
    type Row = PgRow;

    const NAME: &'static str = "PostgreSQL";
    const SQL: Statements = Statements {
        code_for_update: Stmt::new(
            "SELECT email, mac, expires_at, attempts FROM codes \
             WHERE session_key = $1 AND purpose = $2 FOR UPDATE",
        ),
        use_attempt: Stmt::new(
            "UPDATE codes SET attempts = attempts + 1 WHERE session_key = $1 AND purpose = $2",
        ),
        insert_session: Stmt::new(
            "INSERT INTO sessions (key, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        ),
        delete_codes_of_session: Stmt::new("DELETE FROM codes WHERE session_key = $1"),
        delete_session: Stmt::new("DELETE FROM sessions WHERE key = $1"),
        // The SET expressions read the row as it was: `count` and `reset_at` are decided on the
        // same old window.
        count_hit: Stmt::new(
            "INSERT INTO limits (key, count, reset_at) VALUES ($1, 1, $2) ON CONFLICT (key) DO UPDATE \
             SET count = CASE WHEN limits.reset_at <= $3 THEN 1 ELSE limits.count + 1 END, \
             reset_at = CASE WHEN limits.reset_at <= $3 THEN $2 ELSE limits.reset_at END \
             RETURNING count, reset_at",
        ),
        read_counter: None,
        peek_counter: Stmt::new(
            "SELECT count, reset_at FROM limits WHERE key = $1 AND reset_at > $2",
        ),
        users_without_public_id: Stmt::new(
            "SELECT id, created_at FROM users WHERE public_id IS NULL ORDER BY id LIMIT 500",
        ),
        set_public_id: Stmt::new(
            "UPDATE users SET public_id = $2 WHERE id = $1 AND public_id IS NULL",
        ),
        key_generations: Stmt::new(
            "SELECT generation, created_at, retires_at FROM signing_keys ORDER BY generation",
        ),
        add_key_generation: Stmt::new(
            "INSERT INTO signing_keys (generation, created_at) VALUES ($1, $2) \
             ON CONFLICT (generation) DO NOTHING",
        ),
        retire_key_generations: Stmt::new(
            "UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL AND generation < $2",
        ),
        insert_delivery: Stmt::new(
            "INSERT INTO mail_queue (mail_ref, kind, to_addr, mail_order, status, next_attempt_at, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $5)",
        ),
        failed_deliveries: Stmt::new(
            "SELECT mail_ref, to_addr, attempts, created_at, mail_order, last_error FROM mail_queue \
             WHERE kind = 'webhook' AND status = 'failed' ORDER BY created_at DESC, mail_ref LIMIT $1",
        ),
        requeue_delivery: Stmt::new(
            "UPDATE mail_queue SET status = 'queued', attempts = 0, next_attempt_at = $2, lease_until = 0, \
             expires_at = $3, last_error = NULL WHERE mail_ref = $1 AND kind = 'webhook' AND status = 'failed'",
        ),
    };

    fn classify(e: sqlx::Error) -> StoreError {
        use states::*;
        let unavailable = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            other => sqlstate(other).is_some_and(|s| {
                UNAVAILABLE_CLASSES.iter().any(|c| s.starts_with(c))
                    || [
                        ADMIN_SHUTDOWN,
                        CRASH_SHUTDOWN,
                        CANNOT_CONNECT_NOW,
                        QUERY_CANCELED,
                        LOCK_NOT_AVAILABLE,
                        READ_ONLY_TRANSACTION,
                        SERIALIZATION_FAILURE,
                        DEADLOCK_DETECTED,
                    ]
                    .contains(&s.as_str())
            }),
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Internal(e.to_string())
        }
    }

    fn lock_conflict(e: &sqlx::Error) -> bool {
        use states::*;
        sqlstate(e).is_some_and(|s| {
            [SERIALIZATION_FAILURE, DEADLOCK_DETECTED, LOCK_NOT_AVAILABLE].contains(&s.as_str())
        })
    }

    crate::sql_executor!(Postgres, bind);
}

/// Every integer column is BIGINT (`migrations/postgres/0001_init.sql`), every string TEXT.
impl SqlRow for PgRow {
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
