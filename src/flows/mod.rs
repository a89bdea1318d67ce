//! The use cases: the rules of SPEC §3, independent of HTTP. Handlers parse input into domain
//! types, call one method of [`Core`], and turn its answer or [`FlowError`] into a response.
mod access;
mod codes;
mod events;
mod ops;
mod sessions;
mod sign_in;

pub use codes::{CodeSent, CodeStatus};
pub use ops::Readiness;
pub use sign_in::{CodeSubmission, SignedIn};

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::Notify;

use crate::clock::{ms, Clock, Millis};
use crate::crypto::{self, Secret};
use crate::domain::{
    Email, SessionId, SessionKey, SessionKind, SessionRecord, SessionUser, UserId,
};
use crate::i18n::Lang;
use crate::mail::Transport;
use crate::passwords::{HashError, Hasher};
use crate::policy::Policy;
use crate::store::{Limit, LimitCheck, StoreError, Stores};

/// What the flows know about the client: already resolved (trusted proxies applied).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub user_agent: String,
    pub lang: Lang,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("no session")]
    NoSession,
    #[error("wrong code")]
    CodeInvalid { attempts_left: Option<u32> },
    #[error("code expired")]
    CodeExpired,
    #[error("code dead after too many attempts")]
    CodeAttemptsExceeded,
    #[error("login failed")]
    LoginFailed { attempts_left: Option<u32> },
    #[error("not logged in")]
    NotLoggedIn,
    #[error("username taken")]
    UsernameTaken,
    #[error("email taken")]
    EmailTaken,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("invalid email: {0}")]
    InvalidEmail(String),
    #[error("no such session")]
    SessionNotFound,
    #[error("no pending code")]
    NoCode,
    #[error("passwordless sign-in is disabled")]
    PasswordlessDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<HashError> for FlowError {
    fn from(e: HashError) -> Self {
        FlowError::Internal(e.to_string())
    }
}

pub type FlowResult<T> = Result<T, FlowError>;

/// Everything the use cases need, built once at start-up (`crate::app::build`) and shared.
/// Its stores are its own: the HTTP handlers and the command line go through its methods.
pub struct Core {
    stores: Stores,
    clock: Arc<dyn Clock>,
    secret: Secret,
    /// Seals queued mail (it carries the code in clear); derived from `secret` once.
    mail_seal: crypto::MailSeal,
    policy: Policy,
    hasher: Hasher,
    passwordless: bool,
    /// Wakes the mail worker when a mail was queued.
    mail_wake: Arc<Notify>,
    /// How mail leaves; asked by [`Core::readiness`] only (the mail worker sends).
    transport: Transport,
    /// Domains refused with `INVALID_EMAIL` (disposable mail services).
    blocked_domains: HashSet<String>,
    /// Access tokens and their keys (SPEC §6).
    tokens: crate::tokens::AccessTokens,
    /// Where events go (SPEC §7); none configured, none written.
    subscribers: crate::webhooks::Subscribers,
    /// Wakes the webhook worker when events were written.
    webhook_wake: Arc<Notify>,
}

/// What [`Core::new`] is made of. The mail worker is given the same `mail_seal` and
/// `mail_wake` (`crate::app::build`).
pub struct CoreParts {
    pub stores: Stores,
    pub clock: Arc<dyn Clock>,
    pub secret: Secret,
    pub mail_seal: crypto::MailSeal,
    pub policy: Policy,
    pub hasher: Hasher,
    pub passwordless: bool,
    pub mail_wake: Arc<Notify>,
    pub transport: Transport,
    pub blocked_domains: HashSet<String>,
    pub tokens: crate::tokens::AccessTokens,
    pub subscribers: crate::webhooks::Subscribers,
    pub webhook_wake: Arc<Notify>,
}

impl Core {
    pub fn new(p: CoreParts) -> Self {
        Core {
            stores: p.stores,
            clock: p.clock,
            secret: p.secret,
            mail_seal: p.mail_seal,
            policy: p.policy,
            hasher: p.hasher,
            passwordless: p.passwordless,
            mail_wake: p.mail_wake,
            transport: p.transport,
            blocked_domains: p.blocked_domains,
            tokens: p.tokens,
            subscribers: p.subscribers,
            webhook_wake: p.webhook_wake,
        }
    }

    /// The numbers of SPEC §3 this instance runs with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// The live session for a credential the client presented, renewing its idle timeout at most
    /// once per `session_touch_every` (SPEC §3: not written on every request).
    pub async fn load_session(&self, id: &SessionId) -> FlowResult<Option<SessionRecord>> {
        let key = crypto::session_key(id);
        let now = self.now();
        let Some(mut s) = self.stores.sessions.load_session(&key, now).await? else {
            return Ok(None);
        };
        if let Some(user) = s.user.as_mut().filter(|u| u.public_id.is_none()) {
            // A session written before user ids (SPEC §6) names only the account's row: its id
            // comes from the account, until the session ends.
            user.public_id = self
                .stores
                .users
                .find_by_id(user.id)
                .await?
                .map(|u| u.public_id);
        }
        if now - s.last_seen_at >= ms(self.policy.session_touch_every) {
            s.last_seen_at = now;
            s.idle_expires_at = now + ms(self.policy.session_idle);
            self.stores
                .sessions
                .touch_session(&key, now, s.idle_expires_at)
                .await?;
        }
        Ok(Some(s))
    }

    /// A fresh session record (not stored yet) and the id the client will hold.
    fn new_session(
        &self,
        kind: SessionKind,
        user: Option<SessionUser>,
        client: &ClientInfo,
    ) -> (SessionId, SessionRecord) {
        let id = crypto::new_session_id();
        let now = self.now();
        let mut ua = client.user_agent.clone();
        if ua.len() > 256 {
            let mut cut = 256;
            while !ua.is_char_boundary(cut) {
                cut -= 1;
            }
            ua.truncate(cut);
        }
        let record = SessionRecord {
            key: crypto::session_key(&id),
            kind,
            user,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + ms(self.policy.session_idle),
            absolute_expires_at: now + ms(self.policy.session_absolute),
            user_agent: ua,
            ip: client.ip.to_string(),
        };
        (id, record)
    }

    /// Counts one hit against a limit, turning a refusal into `RATE_LIMITED`.
    async fn limit(&self, key: &str, limit: u32, window: std::time::Duration) -> FlowResult<()> {
        match self
            .stores
            .limits
            .hit_limit(key, limit, window, self.now())
            .await?
        {
            Limit::Allowed => Ok(()),
            Limit::Limited { retry_after_ms } => Err(rate_limited(retry_after_ms)),
        }
    }

    /// SPEC §3: after 10 wrong codes for one email within an hour, codes for it are refused.
    async fn check_guess_budget(&self, email: &Email) -> FlowResult<()> {
        match self
            .stores
            .limits
            .peek_limit(&guess_key(email), self.policy.guess_budget, self.now())
            .await?
        {
            Limit::Allowed => Ok(()),
            Limit::Limited { retry_after_ms } => Err(rate_limited(retry_after_ms)),
        }
    }

    /// The guess budget as one of a code request's limit checks: read, not counted.
    fn guess_budget_check(&self, email: &Email) -> LimitCheck {
        LimitCheck::peek(guess_key(email), self.policy.guess_budget)
    }

    async fn spend_guess(&self, email: &Email) -> FlowResult<()> {
        self.stores
            .limits
            .hit_limit(
                &guess_key(email),
                self.policy.guess_budget,
                self.policy.guess_budget_window,
                self.now(),
            )
            .await?;
        Ok(())
    }
}

fn guess_key(email: &Email) -> String {
    format!("guess:{}", email.as_str())
}

fn rate_limited(retry_after_ms: Millis) -> FlowError {
    metrics::counter!(crate::metrics::REJECTIONS, "reason" => "rate_limited").increment(1);
    FlowError::RateLimited {
        retry_after_secs: ((retry_after_ms + 999) / 1000).max(1) as u64,
    }
}

/// The session a caller presented, as the HTTP layer found it.
pub fn require_user(session: Option<&SessionRecord>) -> FlowResult<(&SessionRecord, &SessionUser)> {
    match session {
        Some(s) => match &s.user {
            Some(u) => Ok((s, u)),
            None => Err(FlowError::NotLoggedIn),
        },
        None => Err(FlowError::NotLoggedIn),
    }
}
