//! MySQL/MariaDB: only what differs from the other dialects (SQL text with `?` placeholders and
//! the order they take the rules' arguments in, binary-string columns, which errors mean
//! "unavailable", which index a duplicate names). The rules and the store are in the files beside
//! this one; the pool is opened in `store/mysql.rs`.
use sqlx::mysql::{MySqlDatabaseError, MySqlRow};
use sqlx::{MySql, Row};
use std::future::Future;

use super::statements::*;
use super::{Dialect, Duplicate, Query, SqlRow, Stmt, Val};

pub struct My;

fn bind<'q>(q: Query<'q, MySql>, v: Val<'q>) -> Query<'q, MySql> {
    match v {
        // A key column is VARBINARY: compared byte by byte.
        Val::Key(s) => q.bind(s.as_bytes()),
        v => super::bind_plain(q, v),
    }
}

/// MySQL/MariaDB error numbers that mean "the server is there but cannot serve us now".
mod codes {
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const ABORTING_CONNECTION: u16 = 1152;
    pub const NET_READ_ERROR: u16 = 1158;
    pub const NET_READ_INTERRUPTED: u16 = 1159;
    pub const NET_ERROR_ON_WRITE: u16 = 1160;
    pub const NET_WRITE_INTERRUPTED: u16 = 1161;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const LOCK_DEADLOCK: u16 = 1213;
    pub const OPTION_PREVENTS_STATEMENT: u16 = 1290; // --read-only, e.g. during a failover
    pub const READ_ONLY_MODE: u16 = 1836;
    pub const CONNECTION_KILLED: u16 = 1927;
}

fn db_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

impl Dialect for My {
    const NAME: &'static str = "MySQL";
    const SQL: Statements = SQL;
    crate::server_pool!(MySql, crate::store::mysql::connect);

    fn unavailable(e: &sqlx::Error) -> bool {
        use codes::*;
        matches!(
            db_number(e),
            Some(
                TOO_MANY_CONNECTIONS
                    | SERVER_SHUTDOWN
                    | ABORTING_CONNECTION
                    | NET_READ_ERROR
                    | NET_READ_INTERRUPTED
                    | NET_ERROR_ON_WRITE
                    | NET_WRITE_INTERRUPTED
                    | LOCK_WAIT_TIMEOUT
                    | LOCK_DEADLOCK
                    | OPTION_PREVENTS_STATEMENT
                    | READ_ONLY_MODE
                    | CONNECTION_KILLED
            )
        )
    }

    fn lock_conflict(e: &sqlx::Error) -> bool {
        matches!(
            db_number(e),
            Some(codes::LOCK_DEADLOCK | codes::LOCK_WAIT_TIMEOUT)
        )
    }

    fn duplicate(db: &dyn sqlx::error::DatabaseError) -> Duplicate {
        match violated_index(db.message()) {
            Some("users_email") => Duplicate::Email,
            Some(_) => Duplicate::Username,
            // An error message in another language.
            None => Duplicate::Unnamed,
        }
    }

    /// No RETURNING in MySQL: the id the connection last inserted.
    fn insert_id<'c>(
        conn: &'c mut sqlx::MySqlConnection,
        stmt: Stmt,
        args: &'c [Val<'c>],
    ) -> impl Future<Output = Result<i64, sqlx::Error>> + Send + 'c {
        let q = stmt.args(args).fold(sqlx::query(stmt.sql), bind);
        async move {
            let id = q.execute(conn).await?.last_insert_id();
            i64::try_from(id)
                .map_err(|_| sqlx::Error::Protocol(format!("user id {id} out of range")))
        }
    }

    crate::sql_executor!(MySql, bind);
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

/// String columns are read as bytes: sqlx 0.8 refuses to decode `utf8mb4_bin` columns as
/// `String` (they carry the BINARY flag, launchbadge/sqlx#3387), so the UTF-8 is checked here.
impl SqlRow for MySqlRow {
    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(col)
    }
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        super::utf8(col, self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        let bytes: Option<Vec<u8>> = self.try_get(col)?;
        bytes.map(|b| super::utf8(col, b)).transpose()
    }
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
        self.try_get(col)
    }
}

/// MySQL's statements, with `?` placeholders: each takes the rule's arguments in its `order`.
const SQL: Statements = Statements {
    sessions: SessionSql {
        insert: Stmt::new(
            "INSERT INTO sessions (`key`, kind, user_id, username, email, created_at, \
             last_seen_at, idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id) \
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ),
        load: Stmt::new(
            "SELECT `key`, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id \
             FROM sessions WHERE `key` = ?",
        ),
        touch: Stmt::new(
            "UPDATE sessions SET last_seen_at = ?, idle_expires_at = ? WHERE `key` = ?",
        ),
        delete_codes: Stmt::new("DELETE FROM codes WHERE session_key = ?"),
        delete: Stmt::new("DELETE FROM sessions WHERE `key` = ?"),
        of_user: Stmt::ordered(
            "SELECT `key`, kind, user_id, username, email, created_at, last_seen_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id \
             FROM sessions WHERE user_id = ? AND idle_expires_at > ? \
             AND absolute_expires_at > ? ORDER BY created_at, `key`",
            &[1, 2, 2],
        ),
        revoke_codes: Stmt::new(
            "DELETE codes FROM codes JOIN sessions ON codes.session_key = sessions.`key` \
             WHERE sessions.user_id = ? AND sessions.`key` <> ?",
        ),
        revoke: Stmt::new("DELETE FROM sessions WHERE user_id = ? AND `key` <> ?"),
    },
    codes: CodeSql {
        issue: Stmt::ordered(
            "INSERT INTO codes (session_key, purpose, email, mac, created_at, expires_at, \
             resend_available_at, attempts, mail_ref) VALUES (?,?,?,?,?,?,?,?,?) \
             ON DUPLICATE KEY UPDATE email = ?, mac = ?, created_at = ?, expires_at = ?, \
             resend_available_at = ?, attempts = ?, mail_ref = ?",
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 4, 5, 6, 7, 8, 9],
        ),
        for_update: Stmt::new(
            "SELECT email, mac, expires_at, attempts FROM codes \
             WHERE session_key = ? AND purpose = ? FOR UPDATE",
        ),
        use_attempt: Stmt::new(
            "UPDATE codes SET attempts = attempts + 1 WHERE session_key = ? AND purpose = ?",
        ),
        current: Stmt::new(
            "SELECT purpose, email, mac, created_at, expires_at, resend_available_at, \
             attempts, mail_ref FROM codes WHERE session_key = ? AND expires_at > ? \
             ORDER BY created_at DESC, purpose LIMIT 1",
        ),
    },
    limits: LimitSql {
        // MySQL applies the assignments left to right: `count` must be decided before `reset_at`
        // changes. The row stays locked until commit, so `read_counter` reads exactly what this
        // hit made of it. Arguments: key, reset_at of a new window, now.
        count_hit: Stmt::ordered(
            "INSERT INTO limits (`key`, `count`, reset_at) VALUES (?, 1, ?) \
             ON DUPLICATE KEY UPDATE \
             `count` = CASE WHEN reset_at <= ? THEN 1 ELSE `count` + 1 END, \
             reset_at = CASE WHEN reset_at <= ? THEN ? ELSE reset_at END",
            &[1, 2, 3, 3, 2],
        ),
        read_counter: Some(Stmt::new(
            "SELECT `count`, reset_at FROM limits WHERE `key` = ?",
        )),
        peek: Stmt::new("SELECT `count`, reset_at FROM limits WHERE `key` = ? AND reset_at > ?"),
    },
    users: UserSql {
        create: Stmt::new(
            "INSERT INTO users (public_id, username, username_key, username_key_version, \
             email, password_hash, created_at) VALUES (?,?,?,?,?,?,?)",
        ),
        by_id: Stmt::new(
            "SELECT id, public_id, username, email, password_hash, disabled, created_at \
             FROM users WHERE id = ?",
        ),
        by_email: Stmt::new(
            "SELECT id, public_id, username, email, password_hash, disabled, created_at \
             FROM users WHERE email = ?",
        ),
        all: ALL_USERS,
        by_keys: USERS_BY_KEYS,
        delete: Stmt::new("DELETE FROM users WHERE id = ?"),
        set_password: Stmt::new("UPDATE users SET password_hash = ? WHERE id = ?"),
        set_disabled: Stmt::new("UPDATE users SET disabled = ? WHERE id = ?"),
        without_public_id: USERS_WITHOUT_PUBLIC_ID,
        set_public_id: Stmt::ordered(
            "UPDATE users SET public_id = ? WHERE id = ? AND public_id IS NULL",
            &[2, 1],
        ),
        stale_keys: Stmt::new("SELECT id FROM users WHERE username_key_version < ? LIMIT 1"),
        names_for_update: Stmt::new(
            "SELECT id, username, username_key, username_key_version FROM users \
             ORDER BY id FOR UPDATE",
        ),
        park_key: Stmt::new("UPDATE users SET username_key = ? WHERE id = ?"),
        set_key: Stmt::new(
            "UPDATE users SET username_key = ?, username_key_version = ? WHERE id = ?",
        ),
    },
    keys: KeySql {
        generations: KEY_GENERATIONS,
        add: Stmt::new("INSERT IGNORE INTO signing_keys (generation, created_at) VALUES (?, ?)"),
        retire: Stmt::new(
            "UPDATE signing_keys SET retires_at = ? WHERE retires_at IS NULL AND generation < ?",
        ),
    },
    outbox: OutboxSql {
        insert_mail: Stmt::ordered(
            "INSERT INTO mail_queue (mail_ref, to_addr, mail_order, status, \
             next_attempt_at, expires_at, created_at) VALUES (?,?,?,'queued',?,?,?)",
            &[1, 2, 3, 4, 5, 4],
        ),
        insert_delivery: Stmt::ordered(
            "INSERT INTO mail_queue (mail_ref, kind, to_addr, mail_order, status, next_attempt_at, \
             expires_at, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            &[1, 2, 3, 4, 5, 6, 5],
        ),
        claim: Claim::LockThenLease {
            due: Stmt::ordered(
                "SELECT id, attempts, mail_ref, to_addr, mail_order, expires_at, created_at \
                 FROM mail_queue WHERE kind = ? AND status = 'queued' \
                 AND next_attempt_at <= ? AND lease_until <= ? ORDER BY next_attempt_at, id \
                 LIMIT ? FOR UPDATE SKIP LOCKED",
                &[1, 2, 2, 3],
            ),
            lease: ListStmt {
                sql: "UPDATE mail_queue SET lease_until = ? WHERE id",
            },
        },
        mark_sent: ListStmt {
            sql: "UPDATE mail_queue SET status = 'sent', attempts = attempts + 1, \
                  last_error = NULL, mail_order = '' WHERE mail_ref",
        },
        mark_retry: Stmt::new(
            "UPDATE mail_queue SET attempts = attempts + 1, next_attempt_at = ?, \
             lease_until = 0, last_error = ? WHERE mail_ref = ?",
        ),
        mark_failed: Stmt::new(
            "UPDATE mail_queue SET status = 'failed', last_error = ?, \
             attempts = attempts + IF(kind = 'mail', 0, 1), \
             mail_order = IF(kind = 'mail', '', mail_order) WHERE mail_ref = ?",
        ),
        delivery: Stmt::new("SELECT status, last_error FROM mail_queue WHERE mail_ref = ?"),
        next_due: Stmt::new(
            "SELECT MIN(GREATEST(next_attempt_at, lease_until)) AS due FROM mail_queue \
             WHERE kind = ? AND status = 'queued'",
        ),
        failed: Stmt::new(
            "SELECT mail_ref, to_addr, attempts, created_at, mail_order, last_error FROM mail_queue \
             WHERE kind = 'webhook' AND status = 'failed' ORDER BY created_at DESC, mail_ref LIMIT ?",
        ),
        requeue: Stmt::ordered(
            "UPDATE mail_queue SET status = 'queued', attempts = 0, next_attempt_at = ?, lease_until = 0, \
             expires_at = ?, last_error = NULL WHERE mail_ref = ? AND kind = 'webhook' AND status = 'failed'",
            &[2, 3, 1],
        ),
    },
    deployment: DeploymentSql {
        record_if_absent: Stmt::new(
            "INSERT IGNORE INTO deployment (id, secret_fingerprint) VALUES (1, ?)",
        ),
        replace: Stmt::ordered(
            "INSERT INTO deployment (id, secret_fingerprint) VALUES (1, ?) \
             ON DUPLICATE KEY UPDATE secret_fingerprint = ?",
            &[1, 1],
        ),
        recorded: RECORDED_SECRET,
    },
    // Each statement walks an index and commits a batch at a time.
    sweep: Sweep {
        statements: &[
            Stmt::new("DELETE FROM sessions WHERE idle_expires_at <= ? LIMIT 1000"),
            Stmt::new("DELETE FROM sessions WHERE absolute_expires_at <= ? LIMIT 1000"),
            Stmt::new("DELETE FROM codes WHERE expires_at <= ? - 3600000 LIMIT 1000"),
            Stmt::new("DELETE FROM limits WHERE reset_at <= ? LIMIT 1000"),
            Stmt::new(
                "DELETE FROM mail_queue WHERE status <> 'queued' \
                 AND created_at <= ? - IF(kind = 'mail', 86400000, 691200000) LIMIT 1000",
            ),
        ],
        batch: Some(1000),
    },
    ping: PING,
};
