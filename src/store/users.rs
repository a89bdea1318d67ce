//! What the users' store does (SPEC §3 Accounts), and the lookup every SQL dialect shares.
use async_trait::async_trait;

use super::StoreError;
use super::StoreResult;
use crate::clock::Millis;
use crate::domain::Email;

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewUser {
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
    /// The account holding the first of `keys` that any account holds (`Username::lookup_keys`:
    /// an exact key kept after a collision, then the name's key), in one lookup.
    async fn find_by_username(&self, keys: &[String]) -> StoreResult<Option<User>>;
    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>>;
    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()>;
    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()>;
    async fn list_users(&self) -> StoreResult<Vec<User>>;
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
