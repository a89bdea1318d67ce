//! SQLite: only what differs from the other dialects (SQL text with `?`/`?n` placeholders, column
//! types, which errors mean "unavailable", which column a duplicate names, and its connections:
//! one writer, a read pool and the batchers of `store/sqlite.rs`, docs/benchmarks.md). The rules
//! and the store are in the files beside this one. One writer serves every transaction one after
//! the other, so `for_update` statements need no row lock and no lock race is ever lost.
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};
use std::future::Future;
use std::time::Duration;

use super::statements::*;
use super::{Dialect, Duplicate, Query, Stmt, Val};
use crate::store::sqlite::{ReadConn, SqlitePools};
use crate::store::{OutgoingMail, StoreResult, User};

pub struct Lite;

/// TEXT compares byte by byte in SQLite (the BINARY collation): keys and names are text.
fn bind<'q>(q: Query<'q, Sqlite>, v: Val<'q>) -> Query<'q, Sqlite> {
    match v {
        // `users.disabled` is an INTEGER.
        Val::Flag(b) => q.bind(i64::from(b)),
        v => super::bind_plain(q, v),
    }
}

impl Dialect for Lite {
    type Db = Sqlite;
    type Conn = sqlx::SqliteConnection;
    type Row = SqliteRow;
    type Pools = SqlitePools;
    type Read<'a> = ReadConn<'a>;

    const NAME: &'static str = "SQLite";
    const BOUNDED: bool = false;
    const SQL: Statements = SQL;

    fn connect(
        url: &str,
        acquire_timeout: Duration,
    ) -> impl Future<Output = StoreResult<SqlitePools>> + Send {
        SqlitePools::open(url, acquire_timeout)
    }

    fn write(
        p: &SqlitePools,
    ) -> impl Future<Output = Result<PoolConnection<Sqlite>, sqlx::Error>> + Send + '_ {
        p.write.acquire()
    }

    fn begin(
        p: &SqlitePools,
    ) -> impl Future<Output = Result<Transaction<'static, Sqlite>, sqlx::Error>> + Send + '_ {
        p.write.begin()
    }

    fn read(
        p: &SqlitePools,
    ) -> impl Future<Output = Result<ReadConn<'_>, sqlx::Error>> + Send + '_ {
        p.read.conn()
    }

    fn queue_mail<'a>(
        p: &'a SqlitePools,
        m: &'a OutgoingMail,
    ) -> Option<impl Future<Output = StoreResult<()>> + Send + 'a> {
        Some(p.queue_mail(m))
    }

    fn lookup_email<'a>(
        p: &'a SqlitePools,
        email: &'a str,
    ) -> Option<impl Future<Output = StoreResult<Option<User>>> + Send + 'a> {
        Some(p.lookup_email(email))
    }

    /// Another process holds the file's lock beyond the busy timeout.
    fn unavailable(e: &sqlx::Error) -> bool {
        match e {
            sqlx::Error::Database(db) => {
                db.message().contains("locked") || db.message().contains("busy")
            }
            _ => false,
        }
    }

    /// One writer: no lock race to lose.
    fn lock_conflict(_: &sqlx::Error) -> bool {
        false
    }

    /// SQLite names the column: `UNIQUE constraint failed: users.email`.
    fn duplicate(db: &dyn sqlx::error::DatabaseError) -> Duplicate {
        if db.message().contains("users.email") {
            Duplicate::Email
        } else {
            Duplicate::Username
        }
    }

    crate::sql_executor!(Sqlite, bind);
}

// INTEGER and TEXT columns (`migrations/sqlite/0001_init.sql`).
crate::sql_row_by_try_get!(SqliteRow);

/// SQLite's statements. The hot paths' (`sessions.load`, `sessions.touch`, docs/benchmarks.md)
/// are the ones measured there.
const SQL: Statements = Statements {
    sessions: SessionSql {
        insert: Stmt::new(
            "INSERT INTO sessions (key, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        ),
        load: Stmt::new("SELECT * FROM sessions WHERE key = ?"),
        touch: Stmt::new(
            "UPDATE sessions SET last_seen_at = ?, idle_expires_at = ? WHERE key = ?",
        ),
        delete_codes: Stmt::new("DELETE FROM codes WHERE session_key = ?1"),
        delete: Stmt::new("DELETE FROM sessions WHERE key = ?1"),
        of_user: Stmt::new(
            "SELECT * FROM sessions WHERE user_id = ?1 AND idle_expires_at > ?2 \
             AND absolute_expires_at > ?2 ORDER BY created_at",
        ),
        revoke_codes: Stmt::new(
            "DELETE FROM codes WHERE session_key IN \
             (SELECT key FROM sessions WHERE user_id = ? AND key <> ?)",
        ),
        revoke: Stmt::new("DELETE FROM sessions WHERE user_id = ? AND key <> ?"),
    },
    codes: CodeSql {
        issue: Stmt::new(
            "INSERT OR REPLACE INTO codes (session_key, purpose, email, mac, created_at, \
             expires_at, resend_available_at, attempts, mail_ref) VALUES (?,?,?,?,?,?,?,?,?)",
        ),
        for_update: Stmt::new(
            "SELECT email, mac, expires_at, attempts FROM codes \
             WHERE session_key = ?1 AND purpose = ?2",
        ),
        use_attempt: Stmt::new(
            "UPDATE codes SET attempts = attempts + 1 WHERE session_key = ?1 AND purpose = ?2",
        ),
        current: Stmt::new(
            "SELECT * FROM codes WHERE session_key = ? AND expires_at > ? \
             ORDER BY created_at DESC LIMIT 1",
        ),
    },
    limits: LimitSql {
        count_hit: Stmt::new(
            "INSERT INTO limits (key, count, reset_at) VALUES (?1, 1, ?2) ON CONFLICT (key) DO UPDATE \
             SET count = CASE WHEN reset_at <= ?3 THEN 1 ELSE count + 1 END, \
             reset_at = CASE WHEN reset_at <= ?3 THEN ?2 ELSE reset_at END \
             RETURNING count, reset_at",
        ),
        read_counter: None,
        peek: Stmt::new("SELECT count, reset_at FROM limits WHERE key = ?1 AND reset_at > ?2"),
    },
    users: UserSql {
        create: Stmt::new(
            "INSERT INTO users (public_id, username, username_key, username_key_version, email, \
             password_hash, created_at) VALUES (?,?,?,?,?,?,?) RETURNING id",
        ),
        by_id: Stmt::new("SELECT * FROM users WHERE id = ?"),
        by_email: Stmt::new("SELECT * FROM users WHERE email = ?"),
        all: Stmt::new("SELECT * FROM users ORDER BY id"),
        by_keys: ListStmt {
            sql: "SELECT * FROM users WHERE username_key",
        },
        delete: Stmt::new("DELETE FROM users WHERE id = ?"),
        set_password: Stmt::new("UPDATE users SET password_hash = ? WHERE id = ?"),
        set_disabled: Stmt::new("UPDATE users SET disabled = ? WHERE id = ?"),
        without_public_id: USERS_WITHOUT_PUBLIC_ID,
        set_public_id: Stmt::new(
            "UPDATE users SET public_id = ?2 WHERE id = ?1 AND public_id IS NULL",
        ),
        stale_keys: Stmt::new("SELECT id FROM users WHERE username_key_version < ? LIMIT 1"),
        names_for_update: Stmt::new(
            "SELECT id, username, username_key, username_key_version FROM users",
        ),
        park_key: Stmt::new("UPDATE users SET username_key = ?1 WHERE id = ?2"),
        set_key: Stmt::new(
            "UPDATE users SET username_key = ?1, username_key_version = ?2 WHERE id = ?3",
        ),
    },
    keys: KeySql {
        generations: KEY_GENERATIONS,
        add: Stmt::new(
            "INSERT OR IGNORE INTO signing_keys (generation, created_at) VALUES (?1, ?2)",
        ),
        retire: Stmt::new(
            "UPDATE signing_keys SET retires_at = ?1 WHERE retires_at IS NULL AND generation < ?2",
        ),
    },
    outbox: OutboxSql {
        insert_mail: Stmt::new(
            "INSERT INTO mail_queue (mail_ref, to_addr, mail_order, status, \
             next_attempt_at, expires_at, created_at) VALUES (?1,?2,?3,'queued',?4,?5,?4)",
        ),
        insert_delivery: Stmt::new(
            "INSERT INTO mail_queue (mail_ref, kind, to_addr, mail_order, status, next_attempt_at, \
             expires_at, created_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?5)",
        ),
        claim: Claim::Returning(Stmt::new(
            "UPDATE mail_queue SET lease_until = ?1 WHERE id IN (SELECT id FROM mail_queue \
             WHERE kind = ?4 AND status = 'queued' AND next_attempt_at <= ?2 \
             AND lease_until <= ?2 ORDER BY next_attempt_at, id LIMIT ?3) RETURNING *",
        )),
        mark_sent: ListStmt {
            sql: "UPDATE mail_queue SET status = 'sent', attempts = attempts + 1, \
                  last_error = NULL, mail_order = '' WHERE mail_ref",
        },
        mark_retry: Stmt::new(
            "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = ?, lease_until = 0, \
             last_error = ? WHERE mail_ref = ?",
        ),
        mark_failed: Stmt::new(
            "UPDATE mail_queue SET status = 'failed', last_error = ?, \
             attempts = attempts + CASE WHEN kind = 'mail' THEN 0 ELSE 1 END, \
             mail_order = CASE WHEN kind = 'mail' THEN '' ELSE mail_order END WHERE mail_ref = ?",
        ),
        delivery: Stmt::new("SELECT status, last_error FROM mail_queue WHERE mail_ref = ?"),
        next_due: Stmt::new(
            "SELECT MIN(MAX(next_attempt_at, lease_until)) AS due FROM mail_queue \
             WHERE kind = ?1 AND status = 'queued'",
        ),
        failed: Stmt::new(
            "SELECT mail_ref, to_addr, attempts, created_at, mail_order, last_error FROM mail_queue \
             WHERE kind = 'webhook' AND status = 'failed' ORDER BY created_at DESC, mail_ref LIMIT ?1",
        ),
        requeue: Stmt::new(
            "UPDATE mail_queue SET status = 'queued', attempts = 0, next_attempt_at = ?2, lease_until = 0, \
             expires_at = ?3, last_error = NULL WHERE mail_ref = ?1 AND kind = 'webhook' AND status = 'failed'",
        ),
    },
    deployment: DeploymentSql {
        record_if_absent: Stmt::new(
            "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, ?1) \
             ON CONFLICT (id) DO NOTHING",
        ),
        replace: Stmt::new(
            "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, ?1) \
             ON CONFLICT (id) DO UPDATE SET secret_fingerprint = excluded.secret_fingerprint",
        ),
        recorded: RECORDED_SECRET,
    },
    // One transaction of the one writer.
    sweep: Sweep {
        statements: &[
            Stmt::new(
                "DELETE FROM sessions WHERE idle_expires_at <= ?1 OR absolute_expires_at <= ?1",
            ),
            Stmt::new("DELETE FROM codes WHERE expires_at <= ?1 - 3600000"),
            Stmt::new("DELETE FROM limits WHERE reset_at <= ?1"),
            Stmt::new(
                "DELETE FROM mail_queue WHERE status <> 'queued' AND ((kind = 'mail' \
                 AND created_at <= ?1 - 86400000) OR created_at <= ?1 - 691200000)",
            ),
        ],
        batch: None,
    },
    ping: PING,
};
