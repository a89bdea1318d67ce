//! The mail queue on Redis (SPEC §3 Robustness), used whenever sessions and codes are there:
//! a code mail is worth nothing without its code, which lives in Redis, so the mail is as
//! durable as the code it carries (docs/operations.md, "Where each piece of state lives").
//!
//! Two keys under the hash tag `{mail}` (one Cluster slot, so the worker's scripts run on a
//! Cluster as they are): a list of new mails, all due at once, and a sorted set of leased mails
//! and retries, scored by when the lease ends or the retry is due. An entry is the whole mail
//! (`codec::format::ENTRY`), its order sealed (`crypto::MailSeal`): no code is readable here;
//! the state of its delivery is kept in its code's record, which the status route reads with
//! the code. New mails go to the list, not the sorted set: appending to a list costs the same
//! however long it is, while an insert into a sorted set holding the backlog walks its skip list
//! (docs/benchmarks.md, workload 2).
//!
//! Leases work as in SQL: claiming moves an entry into the sorted set with its lease's end as
//! score, so a crashed worker's mails are claimed again once it passes (at least once, never
//! lost); the entry is the lease's receipt (`QueuedMail::receipt`). A mail leaves the queue when
//! it is sent or failed, its state written into its code first (if that code still names it: a
//! code sent again names its newer mail). The layout: docs/operations.md, "Redis: keys and
//! records".
use super::*;
use codec::{decode_mail_entry, encode_mail_entry, MailState};
use scripts::{HOOK_RETRY, MAIL_CLAIM, MAIL_NEXT_DUE, MAIL_REQUEUE, MAIL_STATE};

/// How many given-up webhook deliveries are kept for the operator.
const FAILED_KEPT: i64 = 1000;

impl RedisStore {
    /// The same store, its outbox handle serving webhook deliveries (SPEC §7): the same queue
    /// layout under keys of their own (`Keys::hook_queue`), drained by their own worker.
    pub fn webhook_outbox(&self) -> Self {
        RedisStore {
            webhooks: true,
            ..self.clone()
        }
    }

    fn queue_key(&self) -> String {
        if self.webhooks {
            self.keys.hook_queue()
        } else {
            self.keys.mail_queue()
        }
    }

    fn new_key(&self) -> String {
        if self.webhooks {
            self.keys.hook_new()
        } else {
            self.keys.mail_new()
        }
    }

    /// The queue entries of webhook deliveries (they name no code).
    pub(super) fn event_entries(events: &[OutgoingMail]) -> StoreResult<Vec<String>> {
        events.iter().map(|e| encode_mail_entry("", e, 0)).collect()
    }

    /// Whether a change's script can queue its events itself: on one Redis, yes; on a Cluster
    /// the session and the queue lie in different slots, and the events are queued right after
    /// the change (docs/operations.md, "Webhooks").
    pub(super) fn events_in_script(&self) -> bool {
        !self.is_cluster()
    }

    /// Queues webhook entries on their own.
    pub(super) async fn push_events(&self, entries: &[String]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let cmd = ::redis::cmd("RPUSH")
            .arg(self.keys.hook_new())
            .arg(entries)
            .to_owned();
        self.query::<i64>(&cmd, Resend::IfUnsent).await.map(drop)
    }

    /// The queue entry of a mail carrying `code`.
    pub(super) fn mail_entry(&self, mail: &OutgoingMail) -> StoreResult<String> {
        // A mail that names no code is kept with an empty name: it still leaves, with no code
        // to tell how it went.
        let code = mail
            .code
            .as_ref()
            .map(|c| self.keys.code(&c.session, c.purpose))
            .unwrap_or_default();
        encode_mail_entry(&code, mail, 0)
    }

    /// Writes `state` into the codes of these mails (those that still name them). One script
    /// on one Redis; on a Cluster, where the codes lie in different slots, one per code.
    async fn set_states(&self, mails: &[QueuedMail], state: MailState) -> StoreResult<()> {
        if mails.is_empty() {
            return Ok(());
        }
        let mut targets = Vec::with_capacity(mails.len());
        for m in mails {
            let (_, code) = decode_mail_entry(m.receipt.clone())?;
            if code.is_empty() {
                // A webhook delivery: no code keeps its state.
                continue;
            }
            // A name this store did not make has no code to tell: its mail still leaves.
            match self.keys.home_of_code(&code) {
                Some((session, purpose)) => {
                    targets.push((session, purpose, m.mail.mail_ref.as_str()))
                }
                None => tracing::error!("a queued mail names no code of this store"),
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        let call = |targets: &[(String, CodePurpose, &str)]| {
            let mut call = MAIL_STATE.prepare();
            call.arg(state.as_str());
            for (session, purpose, mail_ref) in targets {
                call.key(session).arg(purpose.as_str()).arg(*mail_ref);
            }
            call
        };
        if self.is_cluster() {
            let calls: Vec<_> = targets
                .iter()
                .map(|t| call(std::slice::from_ref(t)))
                .collect();
            let runs = calls.iter().map(|c| self.invoke::<i64>(c));
            bounded(self.op_timeout, async {
                futures::future::try_join_all(runs).await.map(drop)
            })
            .await
        } else {
            bounded(self.op_timeout, self.invoke::<i64>(&call(&targets)))
                .await
                .map(drop)
        }
    }

    /// The state first, then out of the queue: a failure between the two leaves the mail
    /// leased, and sent again once the lease ends (at least once).
    async fn finish(&self, mails: &[QueuedMail], state: MailState) -> StoreResult<()> {
        if mails.is_empty() {
            return Ok(());
        }
        self.set_states(mails, state).await?;
        let mut zrem = ::redis::cmd("ZREM");
        zrem.arg(self.queue_key());
        for m in mails {
            zrem.arg(&m.receipt);
        }
        bounded(self.op_timeout, self.query::<i64>(&zrem, Resend::Safe))
            .await
            .map(drop)
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn enqueue(&self, mail: &OutgoingMail) -> StoreResult<()> {
        // A code request on one Redis queues its mail with `CodeRequestWrites` instead, in the
        // script that also checks its limits.
        let cmd = ::redis::cmd("RPUSH")
            .arg(self.new_key())
            .arg(self.mail_entry(mail)?)
            .to_owned();
        bounded(self.op_timeout, self.query::<i64>(&cmd, Resend::IfUnsent))
            .await
            .map(drop)
    }

    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        let mut call = MAIL_CLAIM.prepare();
        call.key(self.queue_key())
            .key(self.new_key())
            .arg(now)
            .arg(lease_until)
            .arg(max);
        let entries: Vec<String> = bounded(self.op_timeout, self.invoke(&call)).await?;
        let mut mails = Vec::with_capacity(entries.len());
        let mut unreadable = Vec::new();
        for e in entries {
            match decode_mail_entry(e.clone()) {
                Ok((m, _)) => mails.push(m),
                Err(_) => unreadable.push(e),
            }
        }
        if !unreadable.is_empty() {
            // Only this store writes entries; one it cannot read must not stop the queue.
            tracing::error!(
                entries = unreadable.len(),
                "unreadable mail queue entries dropped"
            );
            let mut zrem = ::redis::cmd("ZREM");
            zrem.arg(self.queue_key()).arg(&unreadable);
            bounded(self.op_timeout, self.query::<i64>(&zrem, Resend::Safe)).await?;
        }
        Ok(mails)
    }

    async fn mark_sent(&self, mails: &[QueuedMail], _now: Millis) -> StoreResult<()> {
        self.finish(mails, MailState::Sent).await
    }

    async fn mark_retry(
        &self,
        mail: &QueuedMail,
        next_attempt_at: Millis,
        _error: &str,
    ) -> StoreResult<()> {
        let (_, code_key) = decode_mail_entry(mail.receipt.clone())?;
        let again = encode_mail_entry(&code_key, &mail.mail, mail.attempts + 1)?;
        self.set_states(std::slice::from_ref(mail), MailState::Retrying)
            .await?;
        let mut call = MAIL_REQUEUE.prepare();
        call.key(self.queue_key())
            .arg(&mail.receipt)
            .arg(again)
            .arg(next_attempt_at);
        bounded(self.op_timeout, self.invoke::<i64>(&call))
            .await
            .map(drop)
    }

    async fn mark_failed(&self, mail: &QueuedMail, _error: &str) -> StoreResult<()> {
        if self.webhooks {
            // Kept for `mailcode webhooks failed` before it leaves the queue, the last attempt
            // counted.
            let kept = encode_mail_entry("", &mail.mail, mail.attempts + 1)?;
            let mut pipe = ::redis::pipe();
            pipe.cmd("LPUSH")
                .arg(self.keys.hook_failed())
                .arg(&kept)
                .ignore()
                .cmd("LTRIM")
                .arg(self.keys.hook_failed())
                .arg(0)
                .arg(FAILED_KEPT - 1)
                .ignore();
            let pipe = &pipe;
            bounded(
                self.op_timeout,
                self.send(Resend::IfUnsent, |mut c| async move {
                    pipe.query_async::<()>(&mut c).await
                }),
            )
            .await?;
        }
        self.finish(std::slice::from_ref(mail), MailState::Failed)
            .await
    }

    async fn delivery(&self, code: &CodeRecord) -> StoreResult<Option<Delivery>> {
        // Kept with the code, read from the session's record: if a code sent again has replaced
        // this one since, the answer is the newer code's mail, the one the visitor now waits
        // for (the SQL outbox, keeping each mail's row, still tells the older one's).
        let cmd = ::redis::cmd("GET")
            .arg(self.keys.session(&code.session))
            .to_owned();
        let raw: Option<String> = bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await?;
        let Some(raw) = raw else { return Ok(None) };
        for (purpose, record) in codec::codes_in(&raw)? {
            if purpose == code.purpose {
                let (_, delivery) = codec::decode_code(&code.session, purpose, record)?;
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }

    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        let mut call = MAIL_NEXT_DUE.prepare();
        call.key(self.queue_key()).key(self.new_key());
        bounded(self.op_timeout, self.invoke(&call)).await
    }
}

#[async_trait]
impl DeadLetters for RedisStore {
    async fn failed(&self, max: u32) -> StoreResult<Vec<FailedDelivery>> {
        let cmd = ::redis::cmd("LRANGE")
            .arg(self.keys.hook_failed())
            .arg(0)
            .arg(i64::from(max) - 1)
            .to_owned();
        let entries: Vec<String> = bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let (q, _) = decode_mail_entry(e)?;
            out.push(FailedDelivery {
                id: q.mail.mail_ref,
                to: q.mail.to,
                attempts: q.attempts,
                created_at: q.mail.created_at,
                body: q.mail.order,
                last_error: None,
            });
        }
        Ok(out)
    }

    async fn retry(&self, id: &str, now: Millis, expires_at: Millis) -> StoreResult<bool> {
        let cmd = ::redis::cmd("LRANGE")
            .arg(self.keys.hook_failed())
            .arg(0)
            .arg(-1)
            .to_owned();
        let entries: Vec<String> = bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await?;
        for e in entries {
            let (q, _) = decode_mail_entry(e.clone())?;
            if q.mail.mail_ref != id {
                continue;
            }
            let again = OutgoingMail {
                created_at: now,
                expires_at,
                ..q.mail
            };
            let mut call = HOOK_RETRY.prepare();
            call.key(self.keys.hook_failed())
                .key(self.keys.hook_new())
                .arg(&e)
                .arg(encode_mail_entry("", &again, 0)?);
            let moved: i64 = bounded(self.op_timeout, self.invoke(&call)).await?;
            return Ok(moved == 1);
        }
        Ok(false)
    }
}
