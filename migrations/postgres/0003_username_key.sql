-- Username keys become NFKC_Casefold (SPEC §3 Accounts: `alice`, `ALICE` and `ａｌｉｃｅ` are one
-- name). SQL cannot compute that, so this records which rule made each key: every row found
-- here is version 1 (letters lower-cased one by one), and the store recomputes version-1 keys
-- in Rust when it opens (src/store/rekey.rs), the oldest account keeping a key that two names
-- now share. Rows written by an older version during an upgrade default to 1 and are picked up
-- at the next start. Sign-in keeps working meanwhile: ASCII names have the same key in both.
-- The key column is already compared byte by byte (BYTEA, 0001) and has no length limit.
ALTER TABLE users ADD COLUMN username_key_version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX users_stale_keys ON users (username_key_version);
