//! The outbox rows the rules write inside another operation's transaction: the webhook
//! deliveries of an event, written with the change it reports (SPEC §7), so that an event exists
//! exactly when its change was committed.
use super::{Dialect, SqlRow, Val};
use crate::clock::Millis;
use crate::store::{FailedDelivery, OutgoingMail, KIND_WEBHOOK};

/// Queues `events` (webhook deliveries, due at once) in the caller's transaction.
pub async fn insert_events<D: Dialect>(
    conn: &mut D::Conn,
    events: &[OutgoingMail],
) -> Result<(), sqlx::Error> {
    for e in events {
        let args = [
            Val::Text(&e.mail_ref),
            Val::Text(KIND_WEBHOOK),
            Val::Text(&e.to),
            Val::Text(&e.order),
            Val::Int(e.created_at),
            Val::Int(e.expires_at),
        ];
        D::execute(conn, D::SQL.outbox.insert_delivery, &args).await?;
    }
    Ok(())
}

/// The newest given-up webhook deliveries (`mailcode webhooks failed`).
pub async fn failed<D: Dialect>(
    conn: &mut D::Conn,
    max: u32,
) -> Result<Vec<FailedDelivery>, sqlx::Error> {
    let rows = D::fetch_all(conn, D::SQL.outbox.failed, &[Val::Int(i64::from(max))]).await?;
    rows.iter()
        .map(|r| {
            Ok(FailedDelivery {
                id: r.text("mail_ref")?,
                to: r.text("to_addr")?,
                attempts: r.count("attempts")?,
                created_at: r.int("created_at")?,
                body: r.text("mail_order")?,
                last_error: r.opt_text("last_error")?,
            })
        })
        .collect()
}

/// Queues a given-up webhook delivery again; false when there is none with that id.
pub async fn requeue<D: Dialect>(
    conn: &mut D::Conn,
    id: &str,
    now: Millis,
    expires_at: Millis,
) -> Result<bool, sqlx::Error> {
    let args = [Val::Text(id), Val::Int(now), Val::Int(expires_at)];
    Ok(D::execute(conn, D::SQL.outbox.requeue, &args).await? == 1)
}
