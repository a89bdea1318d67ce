-- Username keys become NFKC_Casefold (SPEC §3 Accounts: `alice`, `ALICE` and `ａｌｉｃｅ` are one
-- name). SQL cannot compute that, so this records which rule made each key: every row found
-- here is version 1 (letters lower-cased one by one), and the store recomputes version-1 keys
-- in Rust when it opens (src/store/rekey.rs), the oldest account keeping a key that two names
-- now share. Rows written by an older version during an upgrade default to 1 and are picked up
-- at the next start. Sign-in keeps working meanwhile: ASCII names have the same key in both.
--
-- The key becomes bytes (VARBINARY): compared exactly, with no collation of MySQL's own adding
-- folding rules or ignoring trailing spaces (utf8mb4_bin pads), and long enough for any key of
-- a 32-character name (`Username::MAX_KEY_BYTES`; compatibility forms expand). Existing keys
-- keep their bytes. The table is rebuilt once (a column type change): writes to `users` wait
-- for it, which for a users table takes moments.
ALTER TABLE users
    MODIFY username_key VARBINARY(1024) NOT NULL,
    ADD COLUMN username_key_version INT NOT NULL DEFAULT 1 AFTER username_key,
    ADD KEY users_stale_keys (username_key_version);
