//! PostgreSQL: only what differs from the other dialects (SQL text with `$n` placeholders, column
//! types, which errors mean "unavailable", which constraint a duplicate names). The rules and the
//! store are in the files beside this one; the pool is opened in `pg_store.rs`.
use sqlx::postgres::{PgDatabaseError, PgRow};
use sqlx::{Postgres, Row};

use super::statements::*;
use super::{Dialect, Duplicate, Query, Stmt, Val};

pub struct Pg;

fn bind<'q>(q: Query<'q, Postgres>, v: Val<'q>) -> Query<'q, Postgres> {
    match v {
        // Usernames and their keys are BYTEA: compared byte by byte.
        Val::Key(s) | Val::Name(s) => q.bind(s.as_bytes()),
        v => super::bind_plain(q, v),
    }
}

/// A list is one array parameter (`= ANY($n)`), of the type of its values, whatever its length.
fn bind_list<'q>(q: Query<'q, Postgres>, list: &[Val<'q>]) -> Query<'q, Postgres> {
    match list.first() {
        Some(Val::Int(_)) => q.bind(
            list.iter()
                .filter_map(|v| match v {
                    Val::Int(n) => Some(*n),
                    _ => None,
                })
                .collect::<Vec<i64>>(),
        ),
        Some(Val::Key(_)) => q.bind(
            list.iter()
                .filter_map(|v| match v {
                    Val::Key(s) => Some(s.as_bytes()),
                    _ => None,
                })
                .collect::<Vec<&[u8]>>(),
        ),
        _ => q.bind(
            list.iter()
                .filter_map(|v| match v {
                    Val::Text(s) => Some(*s),
                    _ => None,
                })
                .collect::<Vec<&str>>(),
        ),
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
    const NAME: &'static str = "PostgreSQL";
    const SQL: Statements = SQL;
    crate::server_pool!(Postgres, super::pg_store::connect);

    fn unavailable(e: &sqlx::Error) -> bool {
        use states::*;
        sqlstate(e).is_some_and(|s| {
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
        })
    }

    fn lock_conflict(e: &sqlx::Error) -> bool {
        use states::*;
        sqlstate(e).is_some_and(|s| {
            [SERIALIZATION_FAILURE, DEADLOCK_DETECTED, LOCK_NOT_AVAILABLE].contains(&s.as_str())
        })
    }

    /// Which unique constraint a violation names (`migrations/postgres/0001_init.sql`).
    fn duplicate(db: &dyn sqlx::error::DatabaseError) -> Duplicate {
        let name = db
            .try_downcast_ref::<PgDatabaseError>()
            .and_then(|p| p.constraint());
        match name {
            Some("users_email") => Duplicate::Email,
            Some("users_username_key") => Duplicate::Username,
            _ => Duplicate::Unnamed,
        }
    }

    fn list_sql(stmt: ListStmt, fixed: usize, _n: usize) -> String {
        format!("{} = ANY(${})", stmt.sql, fixed + 1)
    }

    crate::sql_executor!(Postgres, bind, bind_list);
}

// Every integer column is BIGINT (`migrations/postgres/0001_init.sql`), every string TEXT but
// usernames and their keys, BYTEA.
crate::sql_row_by_try_get!(
    PgRow,
    fn key_text(&self, col: &str) -> Result<String, sqlx::Error> {
        super::utf8(col, self.try_get(col)?)
    }
);

/// PostgreSQL's statements, with `$n` placeholders (each argument once, reused by number).
const SQL: Statements = Statements {
    sessions: SessionSql {
        insert: Stmt::new(
            "INSERT INTO sessions (key, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        ),
        load: Stmt::new(
            "SELECT key, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id \
             FROM sessions WHERE key = $1",
        ),
        touch: Stmt::new(
            "UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE key = $3",
        ),
        delete_codes: Stmt::new("DELETE FROM codes WHERE session_key = $1"),
        delete: Stmt::new("DELETE FROM sessions WHERE key = $1"),
        of_user: Stmt::new(
            "SELECT key, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id \
             FROM sessions WHERE user_id = $1 AND idle_expires_at > $2 \
             AND absolute_expires_at > $2 ORDER BY created_at, key",
        ),
        revoke_codes: Stmt::new(
            "DELETE FROM codes USING sessions WHERE codes.session_key = sessions.key \
             AND sessions.user_id = $1 AND sessions.key <> $2",
        ),
        revoke: Stmt::new("DELETE FROM sessions WHERE user_id = $1 AND key <> $2"),
    },
    codes: CodeSql {
        issue: Stmt::new(
            "INSERT INTO codes (session_key, purpose, email, mac, created_at, expires_at, \
             resend_available_at, attempts, mail_ref) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) \
             ON CONFLICT (session_key, purpose) DO UPDATE SET email = EXCLUDED.email, \
             mac = EXCLUDED.mac, created_at = EXCLUDED.created_at, \
             expires_at = EXCLUDED.expires_at, \
             resend_available_at = EXCLUDED.resend_available_at, \
             attempts = EXCLUDED.attempts, mail_ref = EXCLUDED.mail_ref",
        ),
        for_update: Stmt::new(
            "SELECT email, mac, expires_at, attempts FROM codes \
             WHERE session_key = $1 AND purpose = $2 FOR UPDATE",
        ),
        use_attempt: Stmt::new(
            "UPDATE codes SET attempts = attempts + 1 WHERE session_key = $1 AND purpose = $2",
        ),
        current: Stmt::new(
            "SELECT purpose, email, mac, created_at, expires_at, resend_available_at, \
             attempts, mail_ref FROM codes WHERE session_key = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, purpose LIMIT 1",
        ),
    },
    limits: LimitSql {
        // The SET expressions read the row as it was: `count` and `reset_at` are decided on the
        // same old window.
        count_hit: Stmt::new(
            "INSERT INTO limits (key, count, reset_at) VALUES ($1, 1, $2) ON CONFLICT (key) DO UPDATE \
             SET count = CASE WHEN limits.reset_at <= $3 THEN 1 ELSE limits.count + 1 END, \
             reset_at = CASE WHEN limits.reset_at <= $3 THEN $2 ELSE limits.reset_at END \
             RETURNING count, reset_at",
        ),
        read_counter: None,
        peek: Stmt::new("SELECT count, reset_at FROM limits WHERE key = $1 AND reset_at > $2"),
    },
    users: UserSql {
        create: Stmt::new(
            "INSERT INTO users (public_id, username, username_key, username_key_version, \
             email, password_hash, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING id",
        ),
        by_id: Stmt::new(
            "SELECT id, public_id, username, email, password_hash, disabled, created_at \
             FROM users WHERE id = $1",
        ),
        by_email: Stmt::new(
            "SELECT id, public_id, username, email, password_hash, disabled, created_at \
             FROM users WHERE email = $1",
        ),
        all: ALL_USERS,
        by_keys: USERS_BY_KEYS,
        delete: Stmt::new("DELETE FROM users WHERE id = $1"),
        set_password: Stmt::new("UPDATE users SET password_hash = $1 WHERE id = $2"),
        set_disabled: Stmt::new("UPDATE users SET disabled = $1 WHERE id = $2"),
        without_public_id: USERS_WITHOUT_PUBLIC_ID,
        set_public_id: Stmt::new(
            "UPDATE users SET public_id = $2 WHERE id = $1 AND public_id IS NULL",
        ),
        stale_keys: Stmt::new("SELECT id FROM users WHERE username_key_version < $1 LIMIT 1"),
        names_for_update: Stmt::new(
            "SELECT id, username, username_key, username_key_version FROM users \
             ORDER BY id FOR UPDATE",
        ),
        park_key: Stmt::new("UPDATE users SET username_key = $1 WHERE id = $2"),
        set_key: Stmt::new(
            "UPDATE users SET username_key = $1, username_key_version = $2 WHERE id = $3",
        ),
    },
    keys: KeySql {
        generations: KEY_GENERATIONS,
        add: Stmt::new(
            "INSERT INTO signing_keys (generation, created_at) VALUES ($1, $2) \
             ON CONFLICT (generation) DO NOTHING",
        ),
        retire: Stmt::new(
            "UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL AND generation < $2",
        ),
    },
    outbox: OutboxSql {
        insert_mail: Stmt::new(
            "INSERT INTO mail_queue (mail_ref, to_addr, mail_order, status, \
             next_attempt_at, expires_at, created_at) VALUES ($1,$2,$3,'queued',$4,$5,$4)",
        ),
        insert_delivery: Stmt::new(
            "INSERT INTO mail_queue (mail_ref, kind, to_addr, mail_order, status, next_attempt_at, \
             expires_at, created_at) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $5)",
        ),
        // The rows are locked as they are chosen, rows another worker (of this or another
        // instance) is leasing right now are skipped (`SKIP LOCKED`), and the lease is written
        // before the locks go.
        claim: Claim::Returning(Stmt::new(
            "UPDATE mail_queue SET lease_until = $1 WHERE id IN (SELECT id FROM mail_queue \
             WHERE kind = $4 AND status = 'queued' AND next_attempt_at <= $2 \
             AND lease_until <= $2 ORDER BY next_attempt_at, id LIMIT $3 \
             FOR UPDATE SKIP LOCKED) \
             RETURNING id, next_attempt_at, attempts, mail_ref, to_addr, mail_order, \
             expires_at, created_at",
        )),
        mark_sent: ListStmt {
            sql: "UPDATE mail_queue SET status = 'sent', attempts = attempts + 1, \
                  last_error = NULL, mail_order = '' WHERE mail_ref",
        },
        mark_retry: Stmt::new(
            "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = $1, \
             lease_until = 0, last_error = $2 WHERE mail_ref = $3",
        ),
        mark_failed: Stmt::new(
            "UPDATE mail_queue SET status = 'failed', last_error = $1, \
             attempts = attempts + CASE WHEN kind = 'mail' THEN 0 ELSE 1 END, \
             mail_order = CASE WHEN kind = 'mail' THEN '' ELSE mail_order END \
             WHERE mail_ref = $2",
        ),
        delivery: Stmt::new("SELECT status, last_error FROM mail_queue WHERE mail_ref = $1"),
        next_due: Stmt::new(
            "SELECT MIN(GREATEST(next_attempt_at, lease_until)) AS due FROM mail_queue \
             WHERE kind = $1 AND status = 'queued'",
        ),
        failed: Stmt::new(
            "SELECT mail_ref, to_addr, attempts, created_at, mail_order, last_error FROM mail_queue \
             WHERE kind = 'webhook' AND status = 'failed' ORDER BY created_at DESC, mail_ref LIMIT $1",
        ),
        requeue: Stmt::new(
            "UPDATE mail_queue SET status = 'queued', attempts = 0, next_attempt_at = $2, lease_until = 0, \
             expires_at = $3, last_error = NULL WHERE mail_ref = $1 AND kind = 'webhook' AND status = 'failed'",
        ),
    },
    deployment: DeploymentSql {
        record_if_absent: Stmt::new(
            "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, $1) \
             ON CONFLICT (id) DO NOTHING",
        ),
        replace: Stmt::new(
            "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET secret_fingerprint = EXCLUDED.secret_fingerprint",
        ),
        recorded: RECORDED_SECRET,
    },
    // PostgreSQL's DELETE has no LIMIT: each batch is chosen by row address.
    sweep: Sweep {
        statements: &[
            Stmt::new(
                "DELETE FROM sessions WHERE ctid IN \
                 (SELECT ctid FROM sessions WHERE idle_expires_at <= $1 LIMIT 1000)",
            ),
            Stmt::new(
                "DELETE FROM sessions WHERE ctid IN \
                 (SELECT ctid FROM sessions WHERE absolute_expires_at <= $1 LIMIT 1000)",
            ),
            Stmt::new(
                "DELETE FROM codes WHERE ctid IN \
                 (SELECT ctid FROM codes WHERE expires_at <= $1 - 3600000 LIMIT 1000)",
            ),
            Stmt::new(
                "DELETE FROM limits WHERE ctid IN \
                 (SELECT ctid FROM limits WHERE reset_at <= $1 LIMIT 1000)",
            ),
            Stmt::new(
                "DELETE FROM mail_queue WHERE ctid IN (SELECT ctid FROM mail_queue \
                 WHERE status <> 'queued' AND created_at <= $1 - \
                 CASE WHEN kind = 'mail' THEN 86400000 ELSE 691200000 END LIMIT 1000)",
            ),
        ],
        batch: Some(1000),
    },
    ping: PING,
};
