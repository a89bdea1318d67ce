//! The webhook courier (SPEC §7): one attempt of one delivery through [`Sender`], and when to try
//! again ([`retry_delay`], for 24 h). The outbox worker (`crate::mail::queue::Worker`) drains
//! the webhook deliveries with it as it drains mail with the mail courier: each attempt a task
//! of its own with its own deadline, so a receiver that hangs holds only its own deliveries.
use std::sync::Arc;
use std::time::Instant;

use super::deliver::{retry_delay, Outcome, Sender};
use crate::clock::{Clock, Millis};
use crate::mail::queue::{Attempt, Courier};
use crate::metrics as m;
use crate::store::QueuedMail;

pub struct WebhookCourier {
    pub sender: Sender,
    pub clock: Arc<dyn Clock>,
}

/// The event type of a queued body, for metrics and logs ("unknown" for a body this version
/// cannot read, which is still delivered as it is).
fn event_type(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Head>(body)
        .map(|h| h.kind)
        .unwrap_or_else(|_| "unknown".into())
}

/// The user an event body names, to keep a user's events in order at each URL (SPEC §7).
fn user_of(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Data {
        user_id: String,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        data: Data,
    }
    serde_json::from_str::<Body>(body)
        .ok()
        .map(|b| b.data.user_id)
}

#[async_trait::async_trait]
impl Courier for WebhookCourier {
    /// One user's events at one URL, one after the other: `user.created` before
    /// `user.signed_in`, as far as retries allow.
    fn order_key(&self, q: &QueuedMail) -> Option<String> {
        user_of(&q.mail.order).map(|u| format!("{u} {}", q.mail.to))
    }

    async fn attempt(&self, q: &QueuedMail) -> Attempt {
        let kind = event_type(&q.mail.order);
        let started = Instant::now();
        let outcome = self
            .sender
            .attempt(
                &q.mail.to,
                &q.mail.mail_ref,
                &q.mail.order,
                self.clock.now_ms(),
            )
            .await;
        metrics::histogram!(m::WEBHOOK_DURATION, "event" => kind.clone())
            .record(started.elapsed().as_secs_f64());
        let reason = match outcome {
            Outcome::Delivered { .. } => {
                metrics::counter!(m::WEBHOOK_ATTEMPTS, "event" => kind, "outcome" => "delivered")
                    .increment(1);
                return Attempt::Delivered;
            }
            Outcome::Failed { reason } => reason,
        };
        // The schedule counts from the event: the n-th retry comes that long after the
        // attempt before it, until the day is spent.
        let now = self.clock.now_ms();
        let next: Option<Millis> = retry_delay(q.attempts).map(|d| now + d.as_millis() as Millis);
        match next {
            Some(next) if next <= q.mail.expires_at => {
                metrics::counter!(m::WEBHOOK_ATTEMPTS, "event" => kind.clone(), "outcome" => "retry")
                    .increment(1);
                tracing::warn!(
                    webhook_id = %q.mail.mail_ref,
                    event = %kind,
                    attempts = q.attempts + 1,
                    error = %reason,
                    "webhook delivery failed; will retry"
                );
                Attempt::Retry {
                    error: reason,
                    next,
                }
            }
            _ => {
                metrics::counter!(m::WEBHOOK_ATTEMPTS, "event" => kind.clone(), "outcome" => "failed")
                    .increment(1);
                tracing::error!(
                    webhook_id = %q.mail.mail_ref,
                    event = %kind,
                    attempts = q.attempts + 1,
                    error = %reason,
                    "webhook given up after 24 h: `mailcode webhooks failed` lists it"
                );
                Attempt::GiveUp { error: reason }
            }
        }
    }
}
