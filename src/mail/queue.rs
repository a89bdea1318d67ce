//! The worker that drains the durable outbox (SPEC §3 Robustness): deliveries leased from the
//! store, each attempt a task with its own deadline, surviving restarts (the queue lives in the
//! store, leases expire). Mail is retried with backoff while its code is valid, then dropped,
//! logged and counted; a code request never waits for this. Webhooks use the same worker with
//! their own courier (`crate::webhooks::worker`).
use lettre::message::Mailbox;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::clock::{Clock, Millis};
use crate::crypto::MailSeal;
use crate::mail::templates::MailOrder;
use crate::mail::{SendError, Transport};
use crate::metrics as m;
use crate::store::{Outbox as OutboxStore, OutgoingMail, QueuedMail, StoreError, StoreResult};

/// Drains one kind of the durable outbox (SPEC §3 Robustness, §7): claims due deliveries,
/// hands each to its [`Courier`] as a task of its own, and records how it went. Mail and
/// webhooks each have their own worker over their own part of the outbox, so a receiver that
/// hangs never holds a code mail's slot.
pub struct Worker {
    pub queue: Arc<dyn OutboxStore>,
    /// Makes one attempt of one delivery.
    pub courier: Arc<dyn Courier>,
    /// Names the deliveries in logs: "mail", "webhook".
    pub what: &'static str,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
    /// Deliveries in progress at once (SPEC §3 Robustness: one that hangs holds one slot).
    pub concurrency: usize,
    /// The deadline of one attempt; a lease outlives it, so no other worker takes a delivery
    /// that is still being tried.
    pub attempt_deadline: Duration,
    /// Bounds each queue operation: a store that hangs must not stop the worker for good.
    pub store_timeout: Duration,
    /// How long a wake-up waits for more deliveries to claim them together: none for code
    /// mail (the visitor waits for it); a moment for webhooks, which arrive one per sign-in
    /// and otherwise cost a claim and a poll each (docs/benchmarks.md, mailcode-hooks).
    pub gather: Duration,
}

/// How one attempt of one delivery ended, as its courier judges it.
#[derive(Debug)]
pub enum Attempt {
    Delivered,
    /// Failed; try again at `next`.
    Retry {
        error: String,
        next: Millis,
    },
    /// Failed for good (too late, or it can never succeed): kept as failed.
    GiveUp {
        error: String,
    },
}

/// One kind of delivery: how an attempt is made, and when it is tried again.
#[async_trait::async_trait]
pub trait Courier: Send + Sync {
    async fn attempt(&self, q: &QueuedMail) -> Attempt;
    /// Deliveries of one claim with the same key are made one after the other, in the order
    /// claimed (oldest first); `None`, the default, delivers each on its own.
    fn order_key(&self, _q: &QueuedMail) -> Option<String> {
        None
    }
}

/// The code mail's courier: opens the sealed order, writes the mail and sends it; retries with
/// [`backoff`] while the code is valid.
pub struct MailCourier {
    pub transport: Transport,
    pub from: Mailbox,
    pub clock: Arc<dyn Clock>,
    /// Opens what the code request sealed before it was queued.
    pub seal: MailSeal,
}

/// Backoff after the n-th failed attempt of a mail: 1 s, 2 s, 4 s, … capped at 60 s.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(6)).min(Duration::from_secs(60))
}

/// A lease lasts this much longer than an attempt may (a crashed worker's lease ends).
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// How long a stopping worker lets the deliveries in progress finish; the rest are made again
/// once their leases end (at least once, never lost).
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Worker {
    /// Delivers as a stream, not in batches: a slot freed by one mail is refilled at once, so a
    /// mail server that holds one connection delays that mail alone (SPEC §3 Robustness).
    ///
    /// Each attempt is a task of its own, not a future this loop polls: a future that had taken
    /// the embedded store's one write connection and was not polled while the loop awaited the
    /// queue held that connection until the store deadline, and every code request with it.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        // The outcomes of finished attempts are written one at a time: on the embedded store
        // every write goes through one connection, and a code request's own write waits behind
        // whatever is queued there.
        let writes = Arc::new(Semaphore::new(1));
        let mut delivering: JoinSet<Vec<QueuedMail>> = JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            let free = me.concurrency.saturating_sub(delivering.len());
            let mut claimed_all = false;
            if free > 0 {
                let now = me.clock.now_ms();
                let lease_until = now + (me.attempt_deadline + LEASE_MARGIN).as_millis() as Millis;
                match me
                    .bounded(me.queue.claim_due(now, lease_until, free as u32))
                    .await
                {
                    Ok(batch) => {
                        claimed_all = batch.len() == free;
                        for group in me.in_order(batch) {
                            let (worker, writes) = (me.clone(), writes.clone());
                            delivering.spawn(async move {
                                let mut delivered = Vec::new();
                                for q in group {
                                    delivered.extend(worker.deliver(q, &writes).await);
                                }
                                delivered
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, what = me.what, "outbox unavailable"),
                }
            }
            if claimed_all && delivering.len() < me.concurrency {
                continue;
            }
            let wait = if delivering.len() >= me.concurrency {
                // Every slot is taken: only a finished mail frees one.
                Duration::from_secs(3600)
            } else {
                match me.bounded(me.queue.next_due()).await {
                    Ok(Some(due)) => {
                        Duration::from_millis((due - me.clock.now_ms()).clamp(10, 1000) as u64)
                    }
                    _ => Duration::from_secs(1),
                }
            };
            tokio::select! {
                // Finished deliveries first: one marked sent late outlives its lease and is
                // sent again.
                biased;
                Some(done) = delivering.join_next(), if !delivering.is_empty() => {
                    // A task that panicked is a mail whose lease ends: it is sent again.
                    let mut sent: Vec<QueuedMail> = done.unwrap_or_default();
                    // Every other mail that finished meanwhile, marked in the same write.
                    while let Some(more) = delivering.try_join_next() {
                        sent.extend(more.unwrap_or_default());
                    }
                    me.mark_sent(&sent).await;
                }
                _ = me.wake.notified() => {
                    if !me.gather.is_zero() {
                        tokio::time::sleep(me.gather).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        let finishing = async {
            while let Some(done) = delivering.join_next().await {
                me.mark_sent(&done.unwrap_or_default()).await;
            }
        };
        let _ = tokio::time::timeout(STOP_GRACE, finishing).await;
        // What is still in delivery is cancelled as the set drops; those leases end.
    }

    /// A claim as the tasks that deliver it: deliveries sharing an order key together, in the
    /// order claimed; the others one per task.
    fn in_order(&self, batch: Vec<QueuedMail>) -> Vec<Vec<QueuedMail>> {
        let mut groups: Vec<(Option<String>, Vec<QueuedMail>)> = Vec::new();
        for q in batch {
            let key = self.courier.order_key(&q);
            match groups.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
                Some((_, g)) => g.push(q),
                None => groups.push((key, vec![q])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }

    async fn mark_sent(&self, sent: &[QueuedMail]) {
        if sent.is_empty() {
            return;
        }
        if let Err(e) = self
            .bounded(self.queue.mark_sent(sent, self.clock.now_ms()))
            .await
        {
            // Their leases end and they are sent again: at least once, never lost.
            tracing::error!(error = %e, what = self.what, count = sent.len(), "delivered but not marked sent");
        }
    }

    /// A queue operation with the store's deadline.
    async fn bounded<T>(&self, op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        tokio::time::timeout(self.store_timeout, op)
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("no answer in time".into())))
    }

    /// Makes one attempt; the delivery again when it was delivered (marked sent with others).
    async fn deliver(&self, q: QueuedMail, writes: &Semaphore) -> Option<QueuedMail> {
        let what = self.what;
        let outcome = self.courier.attempt(&q).await;
        let _turn = match outcome {
            Attempt::Delivered => return Some(q),
            _ => writes.acquire().await,
        };
        match outcome {
            Attempt::Delivered => {}
            Attempt::Retry { error, next } => {
                if let Err(e) = self.bounded(self.queue.mark_retry(&q, next, &error)).await {
                    tracing::error!(error = %e, what, id = %q.mail.mail_ref, "cannot reschedule");
                }
            }
            Attempt::GiveUp { error } => {
                if let Err(e) = self.bounded(self.queue.mark_failed(&q, &error)).await {
                    tracing::error!(error = %e, what, id = %q.mail.mail_ref, "cannot mark failed");
                }
            }
        }
        None
    }
}

#[async_trait::async_trait]
impl Courier for MailCourier {
    async fn attempt(&self, q: &QueuedMail) -> Attempt {
        let now = self.clock.now_ms();
        if q.mail.expires_at <= now {
            return self.drop_expired(q, "the code expired before the mail could be delivered");
        }
        let written = match self.open(&q.mail) {
            Ok(order) => order.render(),
            Err(e) => {
                // Sealed under another secret (it changed while the mail waited), altered in the
                // store, or queued by an older version: it can never be sent. Retrying would not
                // help.
                metrics::counter!(m::MAIL_DROPPED).increment(1);
                tracing::error!(mail = %q.mail.mail_ref, error = %e, "mail dropped: cannot open it");
                return Attempt::GiveUp {
                    error: e.to_string(),
                };
            }
        };
        match self.transport.send(&self.from, &q.mail, &written).await {
            Ok(()) => {
                metrics::counter!(m::MAIL_DELIVERED).increment(1);
                Attempt::Delivered
            }
            Err(e) => {
                let kind = if matches!(e, SendError::Deadline(_)) {
                    "deadline"
                } else {
                    "error"
                };
                metrics::counter!(m::MAIL_ATTEMPTS_FAILED, "kind" => kind).increment(1);
                let next = self.clock.now_ms() + backoff(q.attempts).as_millis() as Millis;
                if next >= q.mail.expires_at {
                    return self.drop_expired(q, &e.to_string());
                }
                metrics::counter!(m::MAIL_RETRIED).increment(1);
                tracing::warn!(error = %e, mail = %q.mail.mail_ref, attempts = q.attempts + 1, "mail delivery failed; will retry");
                Attempt::Retry {
                    error: e.to_string(),
                    next,
                }
            }
        }
    }
}

impl MailCourier {
    /// What the mail says. Fails for an order sealed under another secret, altered, or queued
    /// by a version of mailcode that queued written mails (before the order existed).
    fn open(&self, mail: &OutgoingMail) -> Result<MailOrder, crate::crypto::Unsealable> {
        MailOrder::decode(&self.seal.open(&mail.order)?).ok_or(crate::crypto::Unsealable)
    }

    fn drop_expired(&self, q: &QueuedMail, why: &str) -> Attempt {
        metrics::counter!(m::MAIL_DROPPED).increment(1);
        tracing::error!(
            mail = %q.mail.mail_ref,
            attempts = q.attempts,
            reason = why,
            "mail dropped: its code expired undelivered"
        );
        Attempt::GiveUp {
            error: why.to_owned(),
        }
    }
}
