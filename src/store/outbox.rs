//! What the outbox does (SPEC §3 Robustness): deliveries kept until they leave, and a code
//! request's writes in one step where a backend offers it.
use async_trait::async_trait;

use super::{
    CodeKey, CodeRecord, CodeStore, Limit, LimitCheck, LimitStore, SessionStore, StoreResult,
};
use crate::clock::Millis;
use crate::domain::SessionRecord;

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

/// The two kinds of delivery in the one outbox (SPEC §7: webhooks go through the same durable
/// queue as mail), each drained by its own worker, so that a receiver that hangs never holds a
/// code mail's slot. A store's outbox handle serves one kind ([`Stores::webhooks`]).
pub const KIND_MAIL: &str = "mail";
pub const KIND_WEBHOOK: &str = "webhook";

/// A delivery that was given up (a webhook undelivered for 24 h), for `mailcode webhooks
/// failed`.
#[derive(Debug, Clone)]
pub struct FailedDelivery {
    /// The `webhook-id`, which `mailcode webhooks retry` takes.
    pub id: String,
    /// The receiver's URL, as configured.
    pub to: String,
    pub attempts: u32,
    pub created_at: Millis,
    /// The body as it was sent.
    pub body: String,
    /// The last attempt's error, where the store keeps it.
    pub last_error: Option<String>,
}

/// What could not be delivered, kept a while for the operator (`mailcode webhooks failed`).
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// The newest given-up webhook deliveries, at most `max`.
    async fn failed(&self, max: u32) -> StoreResult<Vec<FailedDelivery>>;
    /// Queues a given-up delivery again (as new: due now, attempts from 0, another 24 h);
    /// false when no given-up delivery has that id.
    async fn retry(&self, id: &str, now: Millis, expires_at: Millis) -> StoreResult<bool>;
}

/// A delivery as queued. A code mail: to whom, and what it says as a
/// [`crate::mail::templates::MailOrder`], which holds the code in clear, so the flow seals it
/// before it reaches a store and the worker opens it and writes the mail just before sending
/// ([`crate::crypto::MailSeal`]); stores only carry it. A webhook: its URL, its body, its id.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    /// The mail's reference; a webhook's `webhook-id`.
    pub mail_ref: String,
    /// The code this mail carries: a store that keeps a mail's state with its code (Redis)
    /// finds the code by it. `None` on a mail read back from a store that does not keep it.
    pub code: Option<CodeKey>,
    /// The address; a webhook's URL.
    pub to: String,
    /// The sealed order; a webhook's body.
    pub order: String,
    /// After this instant the mail is useless (its code expired): dropped, not retried.
    pub expires_at: Millis,
    pub created_at: Millis,
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
