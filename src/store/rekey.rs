//! Recomputing the username keys a store holds when the rule that makes them changes
//! ([`Username::KEY_VERSION`]). SQL cannot compute NFKC_Casefold, so migration
//! `0003_username_key` only adds each row's key version (1 for the rows it finds) and each SQL
//! store, when it opens, replaces the keys of older versions with [`plan`]'s, in one
//! transaction. Rows written by an instance of an older version during a rolling upgrade are
//! version 1 too and are recomputed the next time a store opens (`mailcode migrate` does).
//!
//! Two accounts whose names were distinct before and are one key now (`alice` and `ａｌｉｃｅ`,
//! `Straße` and `strasse`) cannot both hold it. Nothing is deleted and no one is locked out:
//! - an account that already holds a current key keeps it (it was checked against every other
//!   current key when it was written);
//! - among the others, the oldest account (lowest id) gets the key, so `ALICE` and `ａｌｉｃｅ`
//!   sign in as the account that was there first;
//! - each later one gets its exact key ([`Username::exact_key`]), which no new name can take
//!   and which a sign-in by exactly its name finds first ([`Username::lookup_keys`]): its owner
//!   still signs in by typing the name as it was registered, and by email for a password reset.
//!   A name that would need two of those (two accounts whose names differ only in NFC) gets
//!   `=<name>#<id>`, which no sign-in by name finds: that account signs in by its email (a
//!   password reset signs in, SPEC §2). Each such account is logged by id.
//!
//! Dialect-independent (STYLE §13): the backends read the rows and apply the plan.
use std::collections::HashSet;

use crate::domain::username::{exact_key_of, key_of, Username};

/// A row of `users` as the plan needs it.
#[derive(Debug, Clone)]
pub struct StoredName {
    pub id: i64,
    pub username: String,
    pub key: String,
    pub key_version: i64,
}

/// A key to write, with the current [`Username::KEY_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub id: i64,
    pub key: String,
    /// Whether the account lost its key to another one and kept only its exact name.
    pub collided: bool,
}

/// The new keys of the rows whose key version is older, oldest account first; nothing when
/// every row is current.
pub fn plan(rows: &[StoredName]) -> Vec<NewKey> {
    let taken: HashSet<&str> = rows
        .iter()
        .filter(|r| r.key_version >= Username::KEY_VERSION)
        .map(|r| r.key.as_str())
        .collect();
    let mut stale: Vec<&StoredName> = rows
        .iter()
        .filter(|r| r.key_version < Username::KEY_VERSION)
        .collect();
    stale.sort_by_key(|r| r.id);
    let mut planned: Vec<NewKey> = Vec::with_capacity(stale.len());
    let mut new_keys: HashSet<String> = HashSet::new();
    for row in stale {
        let free = |k: &str| !taken.contains(k) && !new_keys.contains(k);
        let (key, collided) = match key_of(&row.username) {
            Some(k) if free(&k) => (k, false),
            _ => {
                let exact = exact_key_of(&row.username);
                if free(&exact) {
                    (exact, true)
                } else {
                    (format!("{exact}#{}", row.id), true)
                }
            }
        };
        new_keys.insert(key.clone());
        planned.push(NewKey {
            id: row.id,
            key,
            collided,
        });
    }
    planned
}

/// A key no row holds while a plan is applied: keys hold no `~`, exact keys start with `=`.
/// Every stale row moves to its placeholder first, so that a new key never meets an old key
/// that is about to change (`ǅemal`'s old key is another account's new one).
pub fn placeholder(id: i64) -> String {
    format!("~{id}")
}

/// Logs what a plan did, by account id (a username is personal data; the id is enough for an
/// operator to find the account with `mailcode user list`).
pub fn log(plan: &[NewKey]) {
    if plan.is_empty() {
        return;
    }
    for k in plan.iter().filter(|k| k.collided) {
        tracing::warn!(
            user = k.id,
            "this account's username is now the same name as an older account's \
             (NFKC_Casefold, SPEC §3 Accounts); it signs in only by its exact name, or by email"
        );
    }
    tracing::info!(
        accounts = plan.len(),
        "recomputed username keys (key version {})",
        Username::KEY_VERSION
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, username: &str, key_version: i64) -> StoredName {
        StoredName {
            id,
            username: username.into(),
            key: if key_version == 1 {
                username.to_lowercase()
            } else {
                key_of(username).expect("short")
            },
            key_version,
        }
    }

    fn keys(plan: &[NewKey]) -> Vec<(i64, &str, bool)> {
        plan.iter()
            .map(|k| (k.id, k.key.as_str(), k.collided))
            .collect()
    }

    #[test]
    fn current_rows_are_left_alone() {
        assert!(plan(&[row(1, "alice", 2), row(2, "Bob", 2)]).is_empty());
    }

    #[test]
    fn old_keys_become_nfkc_casefold() {
        let p = plan(&[row(1, "Straße", 1), row(2, "ＢＯＢ", 1), row(3, "carol", 1)]);
        assert_eq!(
            keys(&p),
            [
                (1, "strasse", false),
                (2, "bob", false),
                (3, "carol", false)
            ]
        );
    }

    #[test]
    fn the_oldest_account_keeps_the_key_and_later_ones_their_exact_name() {
        let p = plan(&[
            row(7, "ａｌｉｃｅ", 1),
            row(3, "Alice", 1),
            row(9, "ALİCE", 1),
        ]);
        assert_eq!(
            keys(&p),
            [
                (3, "alice", false),
                (7, "=ａｌｉｃｅ", true),
                (9, "ali\u{307}ce", false)
            ]
        );
        let p = plan(&[row(1, "STRASSE", 1), row(2, "straße", 1)]);
        assert_eq!(keys(&p), [(1, "strasse", false), (2, "=straße", true)]);
    }

    #[test]
    fn a_current_key_wins_over_an_older_account() {
        // Registered by this version (say during a rolling upgrade) before the old row was
        // recomputed: its key was checked then, and stays.
        let p = plan(&[row(1, "ａｌｉｃｅ", 1), row(5, "alice", 2)]);
        assert_eq!(keys(&p), [(1, "=ａｌｉｃｅ", true)]);
    }

    #[test]
    fn two_exact_names_that_are_one_in_nfc_keep_apart() {
        let p = plan(&[row(1, "zoë", 1), row(2, "Zoë", 1), row(3, "Zoe\u{308}", 1)]);
        assert_eq!(
            keys(&p),
            [(1, "zoë", false), (2, "=Zoë", true), (3, "=Zoë#3", true)]
        );
    }
}
