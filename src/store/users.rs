//! What the users' store does (SPEC §3 Accounts), and the lookup every SQL dialect shares.
use async_trait::async_trait;

use super::StoreError;
use super::StoreResult;
use crate::clock::Millis;
use crate::domain::{Email, UserId};

#[derive(Debug, Clone)]
pub struct User {
    /// The row id: internal, in sessions and limits; never shown.
    pub id: i64,
    /// The stable id applications see (SPEC §6).
    pub public_id: UserId,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub public_id: UserId,
    pub username: String,
    /// `Username::key`, written with `Username::KEY_VERSION` ([`rekey`]).
    pub username_key: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: Millis,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("username taken")]
    UsernameTaken,
    #[error("email taken")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, u: &NewUser) -> Result<i64, CreateUserError>;
    async fn delete_user(&self, id: i64) -> StoreResult<()>;
    /// The account with row id `id` (a session written before user ids names only that).
    async fn find_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    /// The account holding the first of `keys` that any account holds (`Username::lookup_keys`:
    /// an exact key kept after a collision, then the name's key), in one lookup.
    async fn find_by_username(&self, keys: &[String]) -> StoreResult<Option<User>>;
    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>>;
    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()>;
    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
}

/// The columns every dialect reads a [`User`] from ([`user_from_row`]).
pub const USER_COLS: &str = "id, public_id, username, email, password_hash, disabled, created_at";

/// The stable id of a user row. Every account has one once the store has opened
/// (`sql::users::assign_user_ids`); a row without one was written by an older mailcode after
/// that, and is reported, not guessed.
pub fn public_id_of(raw: Option<String>) -> Result<UserId, sqlx::Error> {
    raw.as_deref()
        .and_then(UserId::parse)
        .ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "public_id".into(),
            source: "an account without a user id: restart an instance of this version to \
                     assign one"
                .into(),
        })
}

/// `<select> FROM users WHERE username_key IN (?, …)` for `n` keys, `None` for none: the one
/// query of [`UserStore::find_by_username`] on every SQL dialect.
pub fn by_keys_sql(select: &str, n: usize) -> Option<String> {
    (n > 0).then(|| {
        let marks = vec!["?"; n].join(",");
        format!("{select} FROM users WHERE username_key IN ({marks})")
    })
}

/// Of the users found by key, the one holding the earliest of `keys`.
pub fn first_by_key(keys: &[String], found: Vec<(String, User)>) -> Option<User> {
    found
        .into_iter()
        .filter_map(|(key, user)| keys.iter().position(|k| *k == key).map(|i| (i, user)))
        .min_by_key(|(i, _)| *i)
        .map(|(_, user)| user)
}
