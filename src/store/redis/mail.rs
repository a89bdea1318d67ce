//! The mail queue on Redis (SPEC §3 Robustness), used whenever sessions and codes are there.
//!
//! Why here and not in SQL: a code mail is worth nothing without its code, and the code lives in
//! Redis; a queue in SQL made every code request wait for a durable SQL write (the single
//! SQLite writer, or a MySQL round trip and commit) on top of Redis (issue 5, workload 2). In
//! Redis the mail is as durable as the code it carries: both survive a restart of mailcode, and
//! both survive a restart of Redis exactly when Redis persists (AOF or RDB), as sessions do.
//!
//! Layout, all under the hash tag `{mail}` (one Cluster slot, so that the worker's scripts and
//! the queuing pipeline run on a Cluster as they are; mail is a trickle next to session reads).
//! The order (what the mail says) arrives sealed (`crypto::MailSeal`): no code is readable here. The
//! two queue keys are the only ones without a TTL; Redis deletes each whenever it is empty. A
//! mail is named by its reference (random, 96 bits), the one the code record keeps for
//! `delivery`.
//!
//! | key                | type   | holds                                                   | TTL |
//! |--------------------|--------|---------------------------------------------------------|-----|
//! | `P{mail}n`         | list   | references of mails queued and not claimed yet, oldest first (all due at once) | none |
//! | `P{mail}q`         | zset   | references of claimed mails and of mails waiting for a retry, scored by when the lease ends or the retry is due (ms) | none |
//! | `P{mail}m:<ref>`   | hash   | `s` state (`q` queued, `qf` queued after a failed attempt, `s` sent, `f` failed), `a` attempts, `x` expiry, `c` creation, `t` to, `o` order, `e` last error | code expiry + 1 h |
//!
//! A mail leaves the queue when it is sent or failed (its order and address are deleted, its
//! state kept until its TTL), or when its TTL ended while nobody could send it (the next claim
//! drops the reference). One key per mail: a code request creates five keys (issue 5).
//! Leases work as in SQL: claiming moves a mail into the sorted set with its lease's end as
//! score, so a crashed worker's mails are claimed again once it passes (at least once, never
//! lost). New mails go to the list, not the sorted set: appending to a list costs Redis the same
//! however long it is, while every insert into a sorted set holding the backlog walked its skip
//! list and grew its dictionary (issue 5, workload 2, where the backlog reaches ~200,000 mails
//! in a run: Redis CPU per code request 31.9 µs against 33.8 µs, six alternating runs); the
//! sorted set now holds only what is leased or waiting for a retry. Builds before this one
//! queued new mails in the sorted set, scored by creation: those are claimed as due, first.
use super::*;
use scripts::{MAIL_CLAIM, MAIL_FINISH, MAIL_NEXT_DUE, MAIL_RETRY};

/// How long a mail and its state outlive the code they carry: as long as the code's own grace.
pub(super) fn mail_ttl(expires_at: Millis, now: Millis) -> i64 {
    ttl(expires_at - now + CODE_GRACE_MS)
}

impl RedisStore {
    async fn finish(&self, refs: &[String], state: &str) -> StoreResult<()> {
        if refs.is_empty() {
            return Ok(());
        }
        let mut call = MAIL_FINISH.prepare_invoke();
        call.key(self.keys.mail_queue())
            .arg(self.keys.mail_base())
            .arg(state);
        for r in refs {
            call.arg(r);
        }
        bounded(self.op_timeout, self.invoke::<i64>(&call))
            .await
            .map(drop)
    }
}

#[async_trait]
impl MailQueue for RedisStore {
    async fn enqueue(&self, mail: &OutgoingMail) -> StoreResult<()> {
        // Plain commands in MULTI/EXEC rather than a script: a Lua call costs Redis ~15 µs more
        // than the commands themselves (issue 5). A code request queues its mail with
        // `CodeDesk` instead, in the script that also checks its limits, on one Redis.
        let item = self.keys.mail_item(&mail.mail_ref);
        let ttl = mail_ttl(mail.expires_at, mail.created_at);
        let mut p = ::redis::pipe();
        // A transaction on one Redis (all or nothing); on a Cluster, where the client sends no
        // transactions, the queue entry goes last so that a failure midway queues nothing (the
        // rest expires with its TTL).
        if !self.is_cluster() {
            p.atomic();
        }
        p.cmd("HSET")
            .arg(&item)
            .arg("s")
            .arg("q")
            .arg("a")
            .arg(0)
            .arg("x")
            .arg(mail.expires_at)
            .arg("c")
            .arg(mail.created_at)
            .arg("t")
            .arg(&mail.to)
            .arg("o")
            .arg(&mail.order)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&item)
            .arg(ttl)
            .ignore()
            .cmd("RPUSH")
            .arg(self.keys.mail_new())
            .arg(&mail.mail_ref)
            .ignore();
        self.run_pipeline(&p).await
    }

    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        let mut call = MAIL_CLAIM.prepare_invoke();
        call.key(self.keys.mail_queue())
            .key(self.keys.mail_new())
            .arg(self.keys.mail_base())
            .arg(now)
            .arg(lease_until)
            .arg(max);
        let flat: Vec<String> = bounded(self.op_timeout, self.invoke(&call)).await?;
        let number = |s: &str| s.parse::<i64>().map_err(|_| corrupt("queued mail"));
        flat.chunks(6)
            .map(|f| match f {
                [mail_ref, attempts, expires, created, to, order] => Ok(QueuedMail {
                    attempts: u32::try_from(number(attempts)?)
                        .map_err(|_| corrupt("queued mail"))?,
                    mail: OutgoingMail {
                        mail_ref: mail_ref.clone(),
                        to: to.clone(),
                        order: order.clone(),
                        expires_at: number(expires)?,
                        created_at: number(created)?,
                    },
                }),
                _ => Err(corrupt("queued mail")),
            })
            .collect()
    }

    async fn mark_sent(&self, refs: &[String], _now: Millis) -> StoreResult<()> {
        self.finish(refs, "s").await
    }

    async fn mark_retry(
        &self,
        mail_ref: &str,
        next_attempt_at: Millis,
        error: &str,
    ) -> StoreResult<()> {
        let mut call = MAIL_RETRY.prepare_invoke();
        call.key(self.keys.mail_queue())
            .arg(self.keys.mail_base())
            .arg(mail_ref)
            .arg(next_attempt_at)
            .arg(error);
        bounded(self.op_timeout, self.invoke::<i64>(&call))
            .await
            .map(drop)
    }

    async fn mark_failed(&self, mail_ref: &str, _error: &str) -> StoreResult<()> {
        self.finish(&[mail_ref.to_owned()], "f").await
    }

    async fn delivery(&self, mail_ref: &str) -> StoreResult<Option<Delivery>> {
        let cmd = ::redis::cmd("HGET")
            .arg(self.keys.mail_item(mail_ref))
            .arg("s")
            .to_owned();
        let state: Option<String> = bounded(self.op_timeout, self.query(&cmd)).await?;
        Ok(state.map(|s| match s.as_str() {
            "s" => delivery_of("sent", false),
            "f" => delivery_of("failed", false),
            "qf" => delivery_of("queued", true),
            _ => delivery_of("queued", false),
        }))
    }

    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        let mut call = MAIL_NEXT_DUE.prepare_invoke();
        call.key(self.keys.mail_queue())
            .key(self.keys.mail_new())
            .arg(self.keys.mail_base());
        bounded(self.op_timeout, self.invoke(&call)).await
    }
}
