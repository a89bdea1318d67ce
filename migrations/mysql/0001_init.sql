-- mailcode's schema on MySQL (8.0+) or MariaDB (10.6+): the same tables as the SQLite schema.
-- Times are milliseconds since the Unix epoch (BIGINT), decided by the application's clock,
-- never by the server's. Every table compares strings exactly (utf8mb4_bin), as SQLite does: the
-- application already canonicalises what must match case-insensitively (username_key, email).
CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT,
    username      VARCHAR(64)  NOT NULL,
    username_key  VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    email         VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    disabled      BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at    BIGINT       NOT NULL,
    PRIMARY KEY (id),
    -- The store tells "username taken" from "email taken" by these names.
    UNIQUE KEY users_username_key (username_key),
    UNIQUE KEY users_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Keyed by SHA-256 of the session id (64 hex digits): the raw id is never stored.
CREATE TABLE sessions (
    `key`               VARCHAR(64)  NOT NULL,
    kind                VARCHAR(16)  NOT NULL,
    user_id             BIGINT       NULL,
    username            VARCHAR(64)  NULL,
    email               VARCHAR(254) NULL,
    created_at          BIGINT       NOT NULL,
    last_seen_at        BIGINT       NOT NULL,
    idle_expires_at     BIGINT       NOT NULL,
    absolute_expires_at BIGINT       NOT NULL,
    user_agent          VARCHAR(512) NOT NULL,
    ip                  VARCHAR(64)  NOT NULL,
    PRIMARY KEY (`key`),
    KEY sessions_by_user (user_id),
    KEY sessions_idle (idle_expires_at),
    KEY sessions_absolute (absolute_expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One live code per session and purpose; only its HMAC is stored.
CREATE TABLE codes (
    session_key         VARCHAR(64)  NOT NULL,
    purpose             VARCHAR(16)  NOT NULL,
    email               VARCHAR(254) NOT NULL,
    mac                 VARCHAR(128) NOT NULL,
    created_at          BIGINT       NOT NULL,
    expires_at          BIGINT       NOT NULL,
    resend_available_at BIGINT       NOT NULL,
    attempts            INT          NOT NULL,
    mail_ref            VARCHAR(64)  NOT NULL,
    PRIMARY KEY (session_key, purpose),
    KEY codes_expiry (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Fixed-window counters; keys look like `email:<address>` or `ip:code:<address>`.
CREATE TABLE limits (
    `key`    VARCHAR(320) NOT NULL,
    `count`  BIGINT       NOT NULL,
    reset_at BIGINT       NOT NULL,
    PRIMARY KEY (`key`),
    KEY limits_reset (reset_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE mail_queue (
    id              BIGINT       NOT NULL AUTO_INCREMENT,
    mail_ref        VARCHAR(64)  NOT NULL,
    to_addr         VARCHAR(254) NOT NULL,
    subject         TEXT         NOT NULL,
    text_body       MEDIUMTEXT   NOT NULL,
    html_body       MEDIUMTEXT   NOT NULL,
    status          VARCHAR(16)  NOT NULL,
    attempts        INT          NOT NULL DEFAULT 0,
    next_attempt_at BIGINT       NOT NULL,
    lease_until     BIGINT       NOT NULL DEFAULT 0,
    expires_at      BIGINT       NOT NULL,
    created_at      BIGINT       NOT NULL,
    last_error      TEXT         NULL,
    PRIMARY KEY (id),
    UNIQUE KEY mail_queue_ref (mail_ref),
    KEY mail_queue_due (status, next_attempt_at),
    KEY mail_queue_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
