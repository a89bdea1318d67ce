//! MySQL/MariaDB: only what differs from the other dialects (SQL text with `?` placeholders and
//! the order they take the rules' arguments in, binary-string columns, which errors mean
//! "unavailable"). The rules are in the files beside this one; the store is `store/mysql.rs`.
use sqlx::mysql::{MySqlArguments, MySqlDatabaseError, MySqlRow};
use sqlx::query::Query;
use sqlx::{MySql, Row};

use super::{Dialect, SqlRow, Statements, Stmt, Val};
use crate::store::StoreError;

pub struct My;

fn bind<'q>(q: Query<'q, MySql, MySqlArguments>, v: Val<'q>) -> Query<'q, MySql, MySqlArguments> {
    match v {
        Val::Int(n) => q.bind(n),
        Val::Text(s) => q.bind(s),
        // A key column is VARBINARY: compared byte by byte.
        Val::Key(s) => q.bind(s.as_bytes()),
        Val::OptInt(n) => q.bind(n),
        Val::OptText(s) => q.bind(s),
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
    type Db = MySql;
    type Conn = sqlx::MySqlConnection;
    type Row = MySqlRow;

    const NAME: &'static str = "MySQL";
    const SQL: Statements = Statements {
        code_for_update: Stmt::new(
            "SELECT email, mac, expires_at, attempts FROM codes \
             WHERE session_key = ? AND purpose = ? FOR UPDATE",
        ),
        use_attempt: Stmt::new(
            "UPDATE codes SET attempts = attempts + 1 WHERE session_key = ? AND purpose = ?",
        ),
        insert_session: Stmt::new(
            "INSERT INTO sessions (`key`, kind, user_id, username, email, created_at, \
             last_seen_at, idle_expires_at, absolute_expires_at, user_agent, ip, user_public_id) \
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ),
        delete_codes_of_session: Stmt::new("DELETE FROM codes WHERE session_key = ?"),
        delete_session: Stmt::new("DELETE FROM sessions WHERE `key` = ?"),
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
        peek_counter: Stmt::new(
            "SELECT `count`, reset_at FROM limits WHERE `key` = ? AND reset_at > ?",
        ),
        users_without_public_id: Stmt::new(
            "SELECT id, created_at FROM users WHERE public_id IS NULL ORDER BY id LIMIT 500",
        ),
        set_public_id: Stmt::ordered(
            "UPDATE users SET public_id = ? WHERE id = ? AND public_id IS NULL",
            &[2, 1],
        ),
        key_generations: Stmt::new(
            "SELECT generation, created_at, retires_at FROM signing_keys ORDER BY generation",
        ),
        add_key_generation: Stmt::new(
            "INSERT IGNORE INTO signing_keys (generation, created_at) VALUES (?, ?)",
        ),
        retire_key_generations: Stmt::new(
            "UPDATE signing_keys SET retires_at = ? WHERE retires_at IS NULL AND generation < ?",
        ),
        insert_delivery: Stmt::ordered(
            "INSERT INTO mail_queue (mail_ref, kind, to_addr, mail_order, status, next_attempt_at, \
             expires_at, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            &[1, 2, 3, 4, 5, 6, 5],
        ),
        failed_deliveries: Stmt::new(
            "SELECT mail_ref, to_addr, attempts, created_at, mail_order, last_error FROM mail_queue \
             WHERE kind = 'webhook' AND status = 'failed' ORDER BY created_at DESC, mail_ref LIMIT ?",
        ),
        requeue_delivery: Stmt::ordered(
            "UPDATE mail_queue SET status = 'queued', attempts = 0, next_attempt_at = ?, lease_until = 0, \
             expires_at = ?, last_error = NULL WHERE mail_ref = ? AND kind = 'webhook' AND status = 'failed'",
            &[2, 3, 1],
        ),
    };

    fn classify(e: sqlx::Error) -> StoreError {
        use codes::*;
        let unavailable = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            other => matches!(
                db_number(other),
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
            ),
        };
        if unavailable {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Internal(e.to_string())
        }
    }

    fn lock_conflict(e: &sqlx::Error) -> bool {
        matches!(
            db_number(e),
            Some(codes::LOCK_DEADLOCK | codes::LOCK_WAIT_TIMEOUT)
        )
    }

    crate::sql_executor!(MySql, bind);
}

fn utf8(col: &str, bytes: Vec<u8>) -> Result<String, sqlx::Error> {
    String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: Box::new(e),
    })
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
        utf8(col, self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        let bytes: Option<Vec<u8>> = self.try_get(col)?;
        bytes.map(|b| utf8(col, b)).transpose()
    }
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
        self.try_get(col)
    }
}
