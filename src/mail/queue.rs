//! The worker that drains the durable mail queue (SPEC §3 Robustness): retried with backoff while
//! the code is valid, surviving restarts (the queue lives in the store, leases expire), dropped,
//! logged and counted once the code has expired. A code request never waits for this.
use lettre::message::Mailbox;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

use crate::clock::{Clock, Millis};
use crate::crypto::MailSeal;
use crate::mail::templates::MailOrder;
use crate::mail::{Transport, MAIL_BATCH};
use crate::metrics as m;
use crate::store::{MailQueue, OutgoingMail, QueuedMail};

pub struct Worker {
    pub queue: Arc<dyn MailQueue>,
    pub transport: Transport,
    pub from: Mailbox,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
    /// Opens what the code request sealed before it was queued.
    pub seal: MailSeal,
}

/// Backoff after the n-th failed attempt: 1 s, 2 s, 4 s, … capped at 60 s.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(6)).min(Duration::from_secs(60))
}

/// How long a worker may hold a mail before another may take it (a crashed worker's lease ends).
const LEASE: Duration = Duration::from_secs(60);

impl Worker {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let now = self.clock.now_ms();
            let lease_until = now + LEASE.as_millis() as Millis;
            let batch = match self.queue.claim_due(now, lease_until, MAIL_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "mail queue unavailable");
                    Vec::new()
                }
            };
            let busy = !batch.is_empty();
            let sent: Vec<QueuedMail> =
                futures::future::join_all(batch.into_iter().map(|q| self.deliver(q)))
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
            if let Err(e) = self.queue.mark_sent(&sent, self.clock.now_ms()).await {
                // Their leases end and they are sent again: at least once, never lost.
                tracing::error!(error = %e, mails = sent.len(), "mails sent but not marked sent");
            }
            if busy {
                continue;
            }
            let wait = match self.queue.next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - self.clock.now_ms()).clamp(10, 1000) as u64)
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Sends one mail; the mail again when it was delivered (marked sent with the batch).
    async fn deliver(&self, q: QueuedMail) -> Option<QueuedMail> {
        let now = self.clock.now_ms();
        if q.mail.expires_at <= now {
            self.drop_expired(&q, "the code expired before the mail could be delivered")
                .await;
            return None;
        }
        let written = match self.open(&q.mail) {
            Ok(order) => order.render(),
            Err(e) => {
                // Sealed under another secret (it changed while the mail waited), altered in the
                // store, or queued by an older version: it can never be sent. Retrying would not
                // help.
                metrics::counter!(m::MAIL_DROPPED).increment(1);
                tracing::error!(mail = %q.mail.mail_ref, error = %e, "mail dropped: cannot open it");
                if let Err(e) = self.queue.mark_failed(&q, &e.to_string()).await {
                    tracing::error!(error = %e, mail = %q.mail.mail_ref, "cannot mark mail failed");
                }
                return None;
            }
        };
        match self.transport.send(&self.from, &q.mail, &written).await {
            Ok(()) => {
                metrics::counter!(m::MAIL_DELIVERED).increment(1);
                Some(q)
            }
            Err(e) => {
                let next = self.clock.now_ms() + backoff(q.attempts).as_millis() as Millis;
                if next >= q.mail.expires_at {
                    self.drop_expired(&q, &e.to_string()).await;
                } else {
                    metrics::counter!(m::MAIL_RETRIED).increment(1);
                    tracing::warn!(error = %e, mail = %q.mail.mail_ref, attempts = q.attempts + 1, "mail delivery failed; will retry");
                    if let Err(e) = self.queue.mark_retry(&q, next, &e.to_string()).await {
                        tracing::error!(error = %e, mail = %q.mail.mail_ref, "cannot reschedule mail");
                    }
                }
                None
            }
        }
    }

    /// What the mail says. Fails for an order sealed under another secret, altered, or queued
    /// by a version of mailcode that queued written mails (before the order existed).
    fn open(&self, mail: &OutgoingMail) -> Result<MailOrder, crate::crypto::Unsealable> {
        MailOrder::decode(&self.seal.open(&mail.order)?).ok_or(crate::crypto::Unsealable)
    }

    async fn drop_expired(&self, q: &QueuedMail, why: &str) {
        metrics::counter!(m::MAIL_DROPPED).increment(1);
        tracing::error!(
            mail = %q.mail.mail_ref,
            attempts = q.attempts,
            reason = why,
            "mail dropped: its code expired undelivered"
        );
        if let Err(e) = self.queue.mark_failed(q, why).await {
            tracing::error!(error = %e, mail = %q.mail.mail_ref, "cannot mark mail failed");
        }
    }
}
