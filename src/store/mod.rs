//! Store traits, spoken in the domain's words (STYLE §4), one file per concern (`sessions`,
//! `codes`, `limits`, `users`, `outbox`, `secret`), and the backends behind them: `redis/`,
//! `sql/` (the one SQL store, generic over its dialect: SQLite, MySQL/MariaDB, PostgreSQL), and
//! `sqlite.rs`, `mysql.rs`, which open their dialect's connections. `timed.rs` times every call
//! of every concern, whatever the backend.
//!
//! Each operation that must not race (code attempts, redeeming a code into a session, limits) is
//! one trait method, made atomic by the backend its own way. Stores never see HTTP, raw session
//! ids or codes: only [`SessionKey`]s and keyed hashes.
mod codes;
mod keys;
mod limits;
pub mod mysql;
mod outbox;
pub mod redis;
pub mod rekey;
mod secret;
mod sessions;
pub mod sql;
pub mod sqlite;
pub mod timed;
mod users;

pub use codes::*;
pub use keys::*;
pub use limits::*;
pub use outbox::*;
pub use secret::*;
pub use sessions::*;
pub use users::*;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Millis;
use crate::domain::{CodePurpose, Email, SessionKey, SessionRecord};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time: 503, retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupted data. 500.
    #[error("store failure: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether a backend answers, for `/readyz` and `mailcode doctor`.
#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
}

/// Every backend the app runs on, chosen once at start-up, one handle per concern.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub codes: Arc<dyn CodeStore>,
    pub limits: Arc<dyn LimitStore>,
    pub users: Arc<dyn UserStore>,
    /// The outbox's code mails.
    pub outbox: Arc<dyn Outbox>,
    /// The same outbox's webhook deliveries (SPEC §7), in the store that holds sessions: every
    /// event is written with a change there ([`Redeem::SignIn`], ending sessions).
    pub webhooks: Arc<dyn Outbox>,
    /// Given-up webhook deliveries, for the operator.
    pub dead_letters: Arc<dyn DeadLetters>,
    /// A code request's writes in one step, where the backend offers it.
    pub code_request: Option<Arc<dyn CodeRequestWrites>>,
    /// The fingerprint of the deployment's secret, next to the state bound to the secret.
    pub deployment: Arc<dyn SecretRecord>,
    /// The access tokens' signing-key generations, in the users' database.
    pub signing_keys: Arc<dyn SigningKeyRecord>,
    /// The store behind sessions, codes, limits and the outbox, and the users' store.
    pub health: StoreHealth,
}

#[derive(Clone)]
pub struct StoreHealth {
    pub sessions: Arc<dyn Health>,
    pub users: Arc<dyn Health>,
}

impl Stores {
    /// A code request's writes: in one step where the backend offers it, else in steps.
    pub async fn issue_code_and_mail(
        &self,
        limits: &[LimitCheck],
        now: Millis,
        new_session: Option<&SessionRecord>,
        code: &CodeRecord,
        mail: &OutgoingMail,
    ) -> StoreResult<Limit> {
        match &self.code_request {
            Some(one_step) => {
                one_step
                    .issue_code_and_mail(limits, now, new_session, code, mail)
                    .await
            }
            None => {
                in_steps(
                    &*self.sessions,
                    &*self.codes,
                    &*self.limits,
                    &*self.outbox,
                    limits,
                    now,
                    new_session,
                    code,
                    mail,
                )
                .await
            }
        }
    }
}

/// Bounds a store call (SPEC §3: a store that is down answers 503 within 2 s, never hangs).
pub async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable("timed out".into())),
    }
}
