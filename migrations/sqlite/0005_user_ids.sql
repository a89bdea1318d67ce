-- Stable user ids (SPEC §6): a UUID (version 7) per account, never reused. Accounts older than
-- this get one when the store opens (src/store/sql/users.rs, `assign_user_ids`), made from their
-- creation time, and the sessions they hold get a copy, as new sessions do.
ALTER TABLE users ADD COLUMN public_id TEXT;
CREATE UNIQUE INDEX users_public_id ON users (public_id);
ALTER TABLE sessions ADD COLUMN user_public_id TEXT;

-- The access tokens' signing keys (SPEC §6): which generations exist, never a key. Each key is
-- derived from the server secret and its generation (src/tokens/keys.rs), so every instance of a
-- deployment signs with the same one. The newest signs; an older one stays published until
-- `retires_at`, when the last token it signed has expired.
CREATE TABLE signing_keys (
    generation INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    retires_at INTEGER
);
