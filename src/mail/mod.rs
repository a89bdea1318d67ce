//! Mail: what a code mail says ([`templates`]), how it leaves ([`Transport`]: real SMTP or the
//! development outbox) and the worker that drains the durable queue ([`queue`]).
pub mod outbox;
pub mod queue;
pub mod templates;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

use crate::store::OutgoingMail;
use templates::Rendered;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("delivery failed: {0}")]
    Deliver(String),
}

/// How many mails the worker claims and sends at once, each over its own SMTP connection; the
/// pool keeps as many open between batches. (lettre opens a connection for every send that finds
/// its pool empty and closes what its pool has no room for: with its default room for 10, every
/// batch opened and closed ~20 connections, a connect storm for a relay that counts them.)
pub const MAIL_BATCH: u32 = 32;

/// Where mail goes. The outbox exists for development only (SPEC §1).
#[derive(Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(outbox::Outbox),
}

impl Transport {
    /// `smtp://`, `smtps://`, `smtp://…?tls=required` (STARTTLS), user and password in the URL.
    pub fn smtp(url: &str, timeout: Duration) -> Result<Self, String> {
        let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("bad SMTP URL: {e}"))?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(MAIL_BATCH))
            .build();
        Ok(Transport::Smtp(t))
    }

    pub fn is_outbox(&self) -> bool {
        matches!(self, Transport::Outbox(_))
    }

    /// Sends `mail`, written as `written` (its order opened and rendered).
    pub async fn send(
        &self,
        from: &Mailbox,
        mail: &OutgoingMail,
        written: &Rendered,
    ) -> Result<(), SendError> {
        let message = build_message(from, &mail.to, written)?;
        match self {
            Transport::Smtp(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Deliver(e.to_string())),
            Transport::Outbox(o) => o
                .write(mail, written, &message.formatted())
                .await
                .map_err(|e| SendError::Deliver(e.to_string())),
        }
    }

    /// Whether mail can leave now (readiness).
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Transport::Smtp(t) => match t.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err("SMTP server did not answer".into()),
                Err(e) => Err(e.to_string()),
            },
            Transport::Outbox(o) => o.check().await,
        }
    }
}

fn build_message(from: &Mailbox, to: &str, mail: &Rendered) -> Result<Message, SendError> {
    let to: Mailbox = to.parse().map_err(|e| SendError::Build(format!("{e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.clone()),
                ),
        )
        .map_err(|e| SendError::Build(e.to_string()))
}
