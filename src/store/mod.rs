//! Store traits, spoken in the domain's words (STYLE §4), and the backends behind them.
//!
//! Each operation that must not race (code attempts, redeeming a code into a session, limits) is
//! one trait method, made atomic by the backend its own way. Stores never see HTTP, raw session
//! ids or codes: only [`SessionKey`]s and keyed hashes.
pub mod mysql;
pub mod redis;
pub mod rekey;
pub mod sql;
pub mod sqlite;
pub mod timed;

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

/// A code as stored: only its keyed hash, with what it is bound to.
#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub session: SessionKey,
    pub purpose: CodePurpose,
    pub email: String,
    pub mac: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub resend_available_at: Millis,
    pub attempts: u32,
    /// Names the code's mail in the [`Outbox`], which answers how it stands.
    pub mail_ref: String,
}

/// The answer to a submitted code, before anything else is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code is right; nothing was consumed yet.
    Right,
    /// Wrong code; one attempt was used.
    Wrong {
        attempts_left: u32,
    },
    Expired,
    /// Too many wrong attempts: the code is dead.
    Dead,
    /// No code for this session, email and purpose.
    Missing,
}

/// What to do when redeeming a code that is still right.
#[derive(Debug, Clone)]
pub enum Redeem {
    /// Consume the code, end the old session and start `new` (fixation defence), atomically.
    SignIn { new: SessionRecord },
    /// The password was wrong: use one attempt (SPEC §3: a wrong password consumes an attempt).
    UseAttempt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    SignedIn,
    AttemptUsed {
        attempts_left: u32,
    },
    /// Consumed by a concurrent request, expired or dead in the meantime.
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Allowed,
    Limited { retry_after_ms: Millis },
}

/// One limit of a [`LimitStore::hit_limits`] call: counted as [`LimitStore::hit_limit`]
/// does, or only read as [`LimitStore::peek_limit`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    pub key: String,
    pub limit: u32,
    /// The fixed window a counted hit opens when none is running; a peek ignores it.
    pub window: Duration,
    /// `true`: counts one hit; `false`: reads the counter without counting.
    pub count: bool,
    /// A second rule on a counted limit, checked first; `None` on a peek.
    pub spacing: Option<Spacing>,
}

/// Two counted hits of a [`LimitCheck`] with the same `name` at least `gap` apart: a code's
/// resend cooldown (SPEC §3: another code for the same email and purpose only after 60 s) is
/// the spacing, named by the purpose, of the address's hourly count. A hit it refuses counts
/// nothing; one it lets through starts its gap even if the count then refuses (as the
/// separate cooldown counter did before it). Kept with the counter it belongs to rather than
/// as a counter of its own: on Redis that is one key fewer per code request, the largest
/// part of a code request's cost there (docs/benchmarks.md, workload 2). SQL stores keep it as a row of
/// its own, `<key>~<name>`, a counter with ceiling 1 and window `gap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spacing {
    pub name: &'static str,
    pub gap: Duration,
}

impl LimitCheck {
    /// Counts one hit, as [`LimitStore::hit_limit`].
    pub fn hit(key: impl Into<String>, limit: u32, window: Duration) -> Self {
        LimitCheck {
            key: key.into(),
            limit,
            window,
            count: true,
            spacing: None,
        }
    }

    /// Reads without counting, as [`LimitStore::peek_limit`].
    pub fn peek(key: impl Into<String>, limit: u32) -> Self {
        LimitCheck {
            key: key.into(),
            limit,
            window: Duration::ZERO,
            count: false,
            spacing: None,
        }
    }

    /// Adds a [`Spacing`] to a counted hit (a peek has none: it ignores this). The name is
    /// ASCII letters, digits and `_` (a code purpose): the Redis record holds it as it is.
    pub fn spaced(mut self, name: &'static str, gap: Duration) -> Self {
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "spacing name {name:?}"
        );
        if self.count {
            self.spacing = Some(Spacing { name, gap });
        }
        self
    }

    /// The SQL stores' row for the spacing: `<key>~<name>`, ceiling 1, window `gap`.
    pub fn spacing_row(&self) -> Option<(String, Duration)> {
        self.spacing
            .as_ref()
            .map(|s| (format!("{}~{}", self.key, s.name), s.gap))
    }
}

/// Sessions (SPEC §3 Sessions): records by key, and the index of a user's sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()>;
    /// The live session with this key, if any. Expired sessions are not returned.
    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>>;
    /// Records activity; never recreates a session that was deleted meanwhile.
    async fn touch_session(
        &self,
        key: &SessionKey,
        now: Millis,
        idle_expires_at: Millis,
    ) -> StoreResult<()>;
    /// Deletes one session and its codes; true when it existed.
    async fn delete_session(&self, key: &SessionKey) -> StoreResult<bool>;
    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>>;
    /// Ends every session of a user (but `except`); returns how many ended.
    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
    ) -> StoreResult<u64>;
}

/// One-time codes (SPEC §3 Codes), each bound to a session, an email and a purpose.
// `redeem_code` takes every part of the code's binding; bundling them would only move the count.
#[allow(clippy::too_many_arguments)]
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Stores a code, replacing the session's previous code for the same purpose. A backend may
    /// keep codes with their session (Redis): then a code for a session that no longer exists
    /// is not kept, since it could never be entered.
    async fn issue_code(&self, code: &CodeRecord) -> StoreResult<()>;
    /// Compares `mac` with the session's code for (purpose, email); a wrong one uses an attempt.
    async fn check_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck>;
    /// Re-checks the code and applies `action` in one atomic step, so that of many requests
    /// racing with the right code exactly one signs in.
    async fn redeem_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
        action: Redeem,
    ) -> StoreResult<Redeemed>;
    /// The session's most recent live code (any purpose), for the delivery status route.
    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>>;
}

/// Fixed-window counters (SPEC §3 Rate limits).
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Counts one hit in a fixed window; `Limited` once more than `limit` hits fell in it.
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit>;
    /// Reads a counter without counting.
    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit>;
    /// Several limits in one atomic step (one round trip), exactly as calling
    /// [`hit_limit`](Self::hit_limit) or [`peek_limit`](Self::peek_limit) for each check in order
    /// and stopping at the first refusal: each counting check counts its hit (the refused one
    /// too, as `hit_limit` does); the checks after a refusal are neither counted nor read. The
    /// answer is the refusal, else `Allowed`.
    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit>;
}

/// Whether a backend answers, for `/readyz` and `mailcode doctor`.
#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
}

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

/// Where a queued mail stands (SPEC §2 `delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Queued,
    Sent,
    Failed,
}

/// The delivery a client sees: a mail still queued whose last attempt failed reports `failed`
/// (it is being retried), so a page can say so at once instead of waiting for the code to expire.
pub fn delivery_of(status: &str, last_attempt_failed: bool) -> Delivery {
    match status {
        "sent" => Delivery::Sent,
        "failed" => Delivery::Failed,
        _ if last_attempt_failed => Delivery::Failed,
        _ => Delivery::Queued,
    }
}

/// A code mail as queued: to whom, and what it says as a [`crate::mail::templates::MailOrder`],
/// which holds the code in clear, so the flow seals it before it reaches a store and the worker
/// opens it and writes the mail just before sending ([`crate::crypto::MailSeal`]); stores only
/// carry it.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub mail_ref: String,
    /// The code this mail carries: a store that keeps a mail's state with its code (Redis)
    /// finds the code by it. `None` on a mail read back from a store that does not keep it.
    pub code: Option<CodeKey>,
    pub to: String,
    /// The sealed order.
    pub order: String,
    /// After this instant the mail is useless (its code expired): dropped, not retried.
    pub expires_at: Millis,
    pub created_at: Millis,
}

/// Which code: a session holds at most one per purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeKey {
    pub session: SessionKey,
    pub purpose: CodePurpose,
}

impl CodeRecord {
    pub fn key(&self) -> CodeKey {
        CodeKey {
            session: self.session.clone(),
            purpose: self.purpose,
        }
    }
}

/// A mail as claimed. It is named by its reference (`mail.mail_ref`, unique) in every store;
/// `receipt` is what its store needs to find the lease again when the worker reports back.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    pub mail: OutgoingMail,
    pub attempts: u32,
    /// The reference in SQL; in Redis the queue entry itself, which holds the mail.
    pub receipt: String,
}

/// The durable outbox (SPEC §3 Robustness): what must leave the service (code mail now), kept
/// until delivered; a code request returns once its mail is here. One outbox of deliveries,
/// leased to workers on any instance, retried with backoff, dropped once useless.
#[async_trait]
pub trait Outbox: Send + Sync {
    async fn enqueue(&self, mail: &OutgoingMail) -> StoreResult<()>;
    /// Leases up to `max` due mails to this worker until `lease_until`.
    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>>;
    /// Marks delivered mails sent, in one write (the worker delivers in batches).
    async fn mark_sent(&self, mails: &[QueuedMail], now: Millis) -> StoreResult<()>;
    async fn mark_retry(
        &self,
        mail: &QueuedMail,
        next_attempt_at: Millis,
        error: &str,
    ) -> StoreResult<()>;
    async fn mark_failed(&self, mail: &QueuedMail, error: &str) -> StoreResult<()>;
    /// How the mail of this code stands (see [`delivery_of`]: `failed` also while a failed mail
    /// waits for its retry); `None` when the store knows no such mail.
    async fn delivery(&self, code: &CodeRecord) -> StoreResult<Option<Delivery>>;
    /// The earliest instant a queued mail becomes due, to sleep until then.
    async fn next_due(&self) -> StoreResult<Option<Millis>>;
}

/// A code request's writes as one operation, offered by a backend that holds sessions, codes,
/// limits and the outbox together and can write them in one round trip (a single Redis:
/// docs/benchmarks.md, workload 2). Optional ([`Stores::code_request`]): without it the flow
/// makes the same writes in steps ([`in_steps`]), and the answer is the same.
#[async_trait]
pub trait CodeRequestWrites: Send + Sync {
    /// The limits (as [`LimitStore::hit_limits`]); when they allow, the new session if there
    /// is one, the code and its mail. A refusal writes nothing more; the answer is the refusal,
    /// else `Allowed` once everything is written.
    async fn issue_code_and_mail(
        &self,
        limits: &[LimitCheck],
        now: Millis,
        new_session: Option<&SessionRecord>,
        code: &CodeRecord,
        mail: &OutgoingMail,
    ) -> StoreResult<Limit>;
}

/// [`CodeRequestWrites::issue_code_and_mail`] as separate calls, in order.
// One argument per concern the writes touch, and the request's own parts.
#[allow(clippy::too_many_arguments)]
pub async fn in_steps(
    sessions: &dyn SessionStore,
    codes: &dyn CodeStore,
    limit_store: &dyn LimitStore,
    outbox: &dyn Outbox,
    limits: &[LimitCheck],
    now: Millis,
    new_session: Option<&SessionRecord>,
    code: &CodeRecord,
    mail: &OutgoingMail,
) -> StoreResult<Limit> {
    let verdict = limit_store.hit_limits(limits, now).await?;
    if verdict != Limit::Allowed {
        return Ok(verdict);
    }
    if let Some(s) = new_session {
        sessions.create_session(s).await?;
    }
    codes.issue_code(code).await?;
    outbox.enqueue(mail).await?;
    Ok(Limit::Allowed)
}

/// The deployment's record of its server secret: a fingerprint, never the secret
/// ([`crate::deployment`]; docs/operations.md, "One secret per deployment"). It lives where the
/// state bound to the secret lives (codes and queued mail, keyed and sealed with it): Redis when
/// it holds them, else the SQL database. One record per deployment (per Redis key prefix).
#[async_trait]
pub trait SecretRecord: Send + Sync {
    /// Records `fingerprint` unless one is recorded already, in one atomic step, so that of
    /// instances starting at once with different secrets exactly one records its own. Answers
    /// what was recorded before: `None` when nothing was, and `fingerprint` is now.
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>>;
    /// Records `fingerprint` whatever was recorded (`mailcode secret rotate`); answers the one
    /// it replaced.
    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>>;
    /// The recorded fingerprint, without recording anything.
    async fn recorded(&self) -> StoreResult<Option<String>>;
}

/// Every backend the app runs on, chosen once at start-up, one handle per concern.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub codes: Arc<dyn CodeStore>,
    pub limits: Arc<dyn LimitStore>,
    pub users: Arc<dyn UserStore>,
    pub outbox: Arc<dyn Outbox>,
    /// A code request's writes in one step, where the backend offers it.
    pub code_request: Option<Arc<dyn CodeRequestWrites>>,
    /// The fingerprint of the deployment's secret, next to the state bound to the secret.
    pub deployment: Arc<dyn SecretRecord>,
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
