//! What a code store does (SPEC §3 Codes): codes kept as keyed hashes, bound to a session, an
//! email and a purpose; checked and redeemed atomically.
use async_trait::async_trait;

use super::{OutgoingMail, StoreResult};
use crate::clock::Millis;
use crate::domain::{CodePurpose, Email, SessionKey, SessionRecord};

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
// Built once per sign-in and passed by reference to the store: the size is no cost.
#[allow(clippy::large_enum_variant)]
pub enum Redeem {
    /// Consume the code, end the old session and start `new` (fixation defence), atomically.
    /// `events` (webhook deliveries, SPEC §7) are queued in the same step.
    SignIn {
        new: SessionRecord,
        events: Vec<OutgoingMail>,
    },
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
