//! The SQL text of every statement the SQL store runs ([`super::store::SqlStore`]), grouped by
//! the store trait that runs it; each dialect fills one [`Statements`]. What a statement takes
//! and returns is said here once: every dialect's text must match it.
use super::Stmt;

/// The statements without arguments, the same text on every dialect.
pub const PING: Stmt = Stmt::new("SELECT 1");
pub const KEY_GENERATIONS: Stmt =
    Stmt::new("SELECT generation, created_at, retires_at FROM signing_keys ORDER BY generation");
pub const USERS_WITHOUT_PUBLIC_ID: Stmt =
    Stmt::new("SELECT id, created_at FROM users WHERE public_id IS NULL ORDER BY id LIMIT 500");
/// Every account, and the accounts holding any of a list of keys, as the servers' dialects read
/// them ([`crate::store::USER_COLS`]).
pub const ALL_USERS: Stmt = Stmt::new(
    "SELECT id, public_id, username, email, password_hash, disabled, created_at \
     FROM users ORDER BY id",
);
pub const USERS_BY_KEYS: ListStmt = ListStmt {
    sql: "SELECT id, public_id, username, email, password_hash, disabled, created_at, \
          username_key FROM users WHERE username_key",
};
pub const RECORDED_SECRET: Stmt =
    Stmt::new("SELECT secret_fingerprint FROM deployment WHERE id = 1");

/// A statement that matches a column against a list of values (`mark_sent`, `find_by_username`):
/// the text up to that column; the dialect writes the list test after it
/// ([`super::Dialect::list_sql`]: `IN (?, …)`, or `= ANY($n)` with one array). The list comes
/// after the statement's other arguments.
#[derive(Debug, Clone, Copy)]
pub struct ListStmt {
    pub sql: &'static str,
}

/// How due deliveries are leased to a worker: rows another worker is leasing right now are
/// skipped, and the lease is written before the row locks go, so no two workers get the same
/// delivery while its lease runs.
#[derive(Debug, Clone, Copy)]
pub enum Claim {
    /// One statement that leases and returns the rows (lease_until, now, max, kind), with
    /// `id` and `next_attempt_at` to order them by (RETURNING keeps no order).
    Returning(Stmt),
    /// Where there is no `UPDATE … RETURNING` (MySQL): in one transaction, the due rows locked as
    /// they are chosen (kind, now, max: `SELECT … FOR UPDATE SKIP LOCKED`), then leased by id
    /// (lease_until, then the ids).
    LockThenLease { due: Stmt, lease: ListStmt },
}

/// What [`super::store::SqlStore::sweep`] deletes (everything expired, given `now` as the only
/// argument), and how.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    pub statements: &'static [Stmt],
    /// `Some(n)`: each statement deletes at most `n` rows and runs again while it deletes that
    /// many, each batch its own transaction, so that a large sweep never holds many locks for
    /// long (a server shared by instances). `None`: every statement in one transaction (one
    /// writer: SQLite).
    pub batch: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionSql {
    /// The 12 columns of a session, in [`super::sessions::COLUMNS`]' order.
    pub insert: Stmt,
    /// A session's columns by key.
    pub load: Stmt,
    /// (now, idle_expires_at, key): an UPDATE, never an upsert, so a session deleted by a
    /// concurrent logout stays deleted.
    pub touch: Stmt,
    pub delete_codes: Stmt,
    pub delete: Stmt,
    /// The live sessions of a user (user_id, now), oldest first.
    pub of_user: Stmt,
    /// The codes of a user's sessions but one (user_id, the key kept, or "").
    pub revoke_codes: Stmt,
    /// A user's sessions but one (user_id, the key kept, or "").
    pub revoke: Stmt,
}

#[derive(Debug, Clone, Copy)]
pub struct CodeSql {
    /// Writes the code (session_key, purpose, email, mac, created_at, expires_at,
    /// resend_available_at, attempts, mail_ref), replacing the whole row, attempts included.
    pub issue: Stmt,
    /// `email, mac, expires_at, attempts` of a code by (session_key, purpose), locking the row
    /// until the transaction ends where the database locks rows (`FOR UPDATE`).
    pub for_update: Stmt,
    /// Uses one attempt of the code (session_key, purpose).
    pub use_attempt: Stmt,
    /// The newest live code of a session (session_key, now): purpose, email, mac, created_at,
    /// expires_at, resend_available_at, attempts, mail_ref.
    pub current: Stmt,
}

#[derive(Debug, Clone, Copy)]
pub struct LimitSql {
    /// Counts one hit (key, reset_at of a new window, now); returns `count, reset_at` unless
    /// [`LimitSql::read_counter`] must follow.
    pub count_hit: Stmt,
    /// `count, reset_at` by key, after a `count_hit` that returns nothing (MySQL: no RETURNING),
    /// in the same transaction.
    pub read_counter: Option<Stmt>,
    /// `count, reset_at` of a running window (key, now).
    pub peek: Stmt,
}

#[derive(Debug, Clone, Copy)]
pub struct UserSql {
    /// (public_id, username, username_key, key version, email, password_hash, created_at);
    /// the new row's id as [`super::Dialect::insert_id`] reads it.
    pub create: Stmt,
    /// [`crate::store::USER_COLS`] by id, by email, and of every account by id.
    pub by_id: Stmt,
    pub by_email: Stmt,
    pub all: Stmt,
    /// [`crate::store::USER_COLS`] and `username_key` of the accounts holding any of the keys.
    pub by_keys: ListStmt,
    pub delete: Stmt,
    /// (hash, id) and (disabled, id).
    pub set_password: Stmt,
    pub set_disabled: Stmt,
    /// `id, created_at` of up to 500 accounts older than user ids, by id.
    pub without_public_id: Stmt,
    /// Gives the account (id) the user id (text) unless it has one.
    pub set_public_id: Stmt,
    /// Any account whose username key is older than the version given.
    pub stale_keys: Stmt,
    /// `id, username, username_key, username_key_version` of every account, locking every row
    /// until the transaction ends where the database locks rows.
    pub names_for_update: Stmt,
    /// (key, id): a key parked while the keys are rewritten, and (key, version, id): the new key.
    pub park_key: Stmt,
    pub set_key: Stmt,
}

#[derive(Debug, Clone, Copy)]
pub struct KeySql {
    /// `generation, created_at, retires_at` of every signing key, oldest first.
    pub generations: Stmt,
    /// Adds the key generation (generation, created_at) unless it exists.
    pub add: Stmt,
    /// Retires every live generation older than the given one (retires_at, generation).
    pub retire: Stmt,
}

#[derive(Debug, Clone, Copy)]
pub struct OutboxSql {
    /// Queues a code mail (mail_ref, to, order, created_at = due, expires_at).
    pub insert_mail: Stmt,
    /// Queues a delivery (mail_ref, kind, to, order, created_at = due, expires_at).
    pub insert_delivery: Stmt,
    pub claim: Claim,
    /// Marks the deliveries (their mail_refs) sent, blanking the order: a code lives in the
    /// queue only until its mail has left.
    pub mark_sent: ListStmt,
    /// (next_attempt_at, error, mail_ref).
    pub mark_retry: Stmt,
    /// (error, mail_ref): a webhook's body is kept for `mailcode webhooks retry`; a mail's
    /// order (its code) is not.
    pub mark_failed: Stmt,
    /// `status, last_error` by mail_ref.
    pub delivery: Stmt,
    /// `due`: the earliest instant a queued delivery of the kind becomes due.
    pub next_due: Stmt,
    /// `mail_ref, to_addr, attempts, created_at, mail_order, last_error` of the newest given-up
    /// webhook deliveries (how many).
    pub failed: Stmt,
    /// Queues a given-up webhook delivery again (mail_ref, due, expires_at).
    pub requeue: Stmt,
}

/// The one-row `deployment` table (migration 0004): the insert that does nothing when the row
/// exists is the atomic step; of instances starting at once, one inserts, the others find its row.
#[derive(Debug, Clone, Copy)]
pub struct DeploymentSql {
    /// (fingerprint), doing nothing when the row exists.
    pub record_if_absent: Stmt,
    /// (fingerprint), replacing it.
    pub replace: Stmt,
    /// `secret_fingerprint`.
    pub recorded: Stmt,
}

/// The SQL text of every statement, per dialect.
#[derive(Debug, Clone, Copy)]
pub struct Statements {
    pub sessions: SessionSql,
    pub codes: CodeSql,
    pub limits: LimitSql,
    pub users: UserSql,
    pub keys: KeySql,
    pub outbox: OutboxSql,
    pub deployment: DeploymentSql,
    pub sweep: Sweep,
    /// A statement that only asks the database to answer (`/readyz`).
    pub ping: Stmt,
}
