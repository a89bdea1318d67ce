-- mailcode's embedded schema: users, sessions, codes, rate-limit counters and the mail queue,
-- all in one SQLite file. Times are milliseconds since the Unix epoch.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL,
    username_key  TEXT    NOT NULL UNIQUE,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- Keyed by SHA-256 of the session id: the raw id is never stored.
CREATE TABLE sessions (
    key                 TEXT    PRIMARY KEY,
    kind                TEXT    NOT NULL,
    user_id             INTEGER,
    username            TEXT,
    email               TEXT,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    idle_expires_at     INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    user_agent          TEXT    NOT NULL,
    ip                  TEXT    NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- One live code per session and purpose; only its HMAC is stored.
CREATE TABLE codes (
    session_key         TEXT    NOT NULL,
    purpose             TEXT    NOT NULL,
    email               TEXT    NOT NULL,
    mac                 TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    resend_available_at INTEGER NOT NULL,
    attempts            INTEGER NOT NULL,
    mail_ref            TEXT    NOT NULL,
    PRIMARY KEY (session_key, purpose)
);

CREATE TABLE limits (
    key      TEXT    PRIMARY KEY,
    count    INTEGER NOT NULL,
    reset_at INTEGER NOT NULL
);

CREATE TABLE mail_queue (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    mail_ref        TEXT    NOT NULL UNIQUE,
    to_addr         TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    text_body       TEXT    NOT NULL,
    html_body       TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_error      TEXT
);
CREATE INDEX mail_queue_due ON mail_queue (status, next_attempt_at);
