//! [`Outbox`] and [`DeadLetters`] on every SQL dialect: one `mail_queue` table, a `kind` column
//! telling code mails from webhook deliveries (SPEC §7), each handle serving one kind.
use async_trait::async_trait;

use super::SqlStore;
use crate::clock::Millis;
use crate::store::sql::{clip, outbox, Claim, Dialect, SqlRow, Val};
use crate::store::{
    delivery_of, CodeRecord, DeadLetters, Delivery, FailedDelivery, Outbox, OutgoingMail,
    QueuedMail, StoreResult, KIND_WEBHOOK,
};

fn mail_from_row(r: &impl SqlRow) -> Result<QueuedMail, sqlx::Error> {
    Ok(QueuedMail {
        attempts: r.count("attempts")?,
        receipt: r.text("mail_ref")?,
        mail: OutgoingMail {
            mail_ref: r.text("mail_ref")?,
            code: None,
            to: r.text("to_addr")?,
            order: r.text("mail_order")?,
            expires_at: r.int("expires_at")?,
            created_at: r.int("created_at")?,
        },
    })
}

impl<D: Dialect> SqlStore<D> {
    /// Leases due deliveries as the dialect can ([`Claim`]); the earliest due first.
    async fn claim_once(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> Result<Vec<QueuedMail>, sqlx::Error> {
        let max = i64::from(max);
        match D::SQL.outbox.claim {
            Claim::Returning(stmt) => {
                let mut conn = D::write(&self.pools).await?;
                let args = [
                    Val::Int(lease_until),
                    Val::Int(now),
                    Val::Int(max),
                    Val::Text(self.kind),
                ];
                let rows = D::fetch_all(&mut conn, stmt, &args).await?;
                // RETURNING keeps no order: the earliest due first, as chosen.
                let mut due = rows
                    .iter()
                    .map(|r| Ok(((r.int("next_attempt_at")?, r.int("id")?), mail_from_row(r)?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                due.sort_by_key(|(order, _)| *order);
                Ok(due.into_iter().map(|(_, m)| m).collect())
            }
            Claim::LockThenLease { due, lease } => {
                let mut tx = D::begin(&self.pools).await?;
                let args = [Val::Text(self.kind), Val::Int(now), Val::Int(max)];
                let rows = D::fetch_all(&mut tx, due, &args).await?;
                let mails = rows
                    .iter()
                    .map(mail_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let ids = rows
                    .iter()
                    .map(|r| r.int("id").map(Val::Int))
                    .collect::<Result<Vec<_>, _>>()?;
                if !ids.is_empty() {
                    D::execute_list(&mut tx, lease, &[Val::Int(lease_until)], &ids).await?;
                }
                tx.commit().await?;
                Ok(mails)
            }
        }
    }
}

#[async_trait]
impl<D: Dialect> Outbox for SqlStore<D> {
    async fn enqueue(&self, m: &OutgoingMail) -> StoreResult<()> {
        if self.kind == KIND_WEBHOOK {
            return self
                .run(|| async move {
                    let mut conn = D::write(&self.pools).await?;
                    outbox::insert_events::<D>(&mut conn, std::slice::from_ref(m)).await
                })
                .await;
        }
        if let Some(queued) = D::queue_mail(&self.pools, m) {
            return queued.await;
        }
        let args = [
            Val::Text(&m.mail_ref),
            Val::Text(&m.to),
            Val::Text(&m.order),
            Val::Int(m.created_at),
            Val::Int(m.expires_at),
        ];
        self.write(D::SQL.outbox.insert_mail, &args).await.map(drop)
    }

    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        self.run(|| self.claim_once(now, lease_until, max)).await
    }

    async fn mark_sent(&self, mails: &[QueuedMail], _now: Millis) -> StoreResult<()> {
        if mails.is_empty() {
            return Ok(());
        }
        let refs: Vec<Val> = mails.iter().map(|m| Val::Text(&m.mail.mail_ref)).collect();
        let refs = &refs;
        self.run(|| async move {
            let mut conn = D::write(&self.pools).await?;
            D::execute_list(&mut conn, D::SQL.outbox.mark_sent, &[], refs).await
        })
        .await
        .map(drop)
    }

    async fn mark_retry(
        &self,
        mail: &QueuedMail,
        next_attempt_at: Millis,
        error: &str,
    ) -> StoreResult<()> {
        let args = [
            Val::Int(next_attempt_at),
            Val::Text(clip(error)),
            Val::Text(&mail.mail.mail_ref),
        ];
        self.write(D::SQL.outbox.mark_retry, &args).await.map(drop)
    }

    async fn mark_failed(&self, mail: &QueuedMail, error: &str) -> StoreResult<()> {
        let args = [Val::Text(clip(error)), Val::Text(&mail.mail.mail_ref)];
        self.write(D::SQL.outbox.mark_failed, &args).await.map(drop)
    }

    async fn delivery(&self, code: &CodeRecord) -> StoreResult<Option<Delivery>> {
        let args = [Val::Text(&code.mail_ref)];
        self.read_one(D::SQL.outbox.delivery, &args, |r| {
            let last_error = r.opt_text("last_error")?;
            Ok(delivery_of(&r.text("status")?, last_error.is_some()))
        })
        .await
    }

    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        let args = [Val::Text(self.kind)];
        let due = self
            .read_one(D::SQL.outbox.next_due, &args, |r| r.opt_int("due"))
            .await?;
        Ok(due.flatten())
    }
}

#[async_trait]
impl<D: Dialect> DeadLetters for SqlStore<D> {
    async fn failed(&self, max: u32) -> StoreResult<Vec<FailedDelivery>> {
        self.run(|| async move {
            let mut conn = D::write(&self.pools).await?;
            outbox::failed::<D>(&mut conn, max).await
        })
        .await
    }

    async fn retry(&self, id: &str, now: Millis, expires_at: Millis) -> StoreResult<bool> {
        self.run(|| async move {
            let mut conn = D::write(&self.pools).await?;
            outbox::requeue::<D>(&mut conn, id, now, expires_at).await
        })
        .await
    }
}
