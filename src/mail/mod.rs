//! Mail: what a code mail says ([`templates`]), how it leaves ([`Transport`]: real SMTP or the
//! development outbox) and the worker that drains the durable queue ([`queue`]).
pub mod outbox;
pub mod queue;
pub mod smtp;
pub mod templates;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::Message;
use std::sync::Arc;
use std::time::Duration;

use crate::secret_url::SecretUrl;

use crate::store::OutgoingMail;
use templates::Rendered;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("delivery failed: {0}")]
    Deliver(String),
    #[error("no answer within {0:?} (the deadline of one delivery attempt, --smtp-timeout)")]
    Deadline(Duration),
}

/// lettre's timeout of each SMTP read and write; an attempt as a whole has its own deadline.
const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where mail goes. The outbox exists for development only (SPEC §1).
#[derive(Clone)]
pub enum Transport {
    Smtp {
        relay: Arc<smtp::Relay>,
        /// SPEC §3 Robustness: one bound for a whole attempt, from connect to the end of DATA.
        deadline: Duration,
    },
    Outbox(outbox::Outbox),
}

impl Transport {
    /// `smtp://`, `smtps://`, `smtp://…?tls=required` (STARTTLS), user and password in the URL;
    /// up to `connections` connections kept open between mails.
    pub fn smtp(url: &SecretUrl, deadline: Duration, connections: usize) -> Result<Self, String> {
        let relay = smtp::Relay::from_url(url, SMTP_COMMAND_TIMEOUT.min(deadline), connections)
            .map_err(|e| format!("bad SMTP URL \"{url}\": {e}"))?;
        Ok(Transport::Smtp {
            relay: Arc::new(relay),
            deadline,
        })
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
            Transport::Smtp { relay, deadline } => {
                let bytes = message.formatted();
                match tokio::time::timeout(*deadline, relay.send(message.envelope(), &bytes)).await
                {
                    Ok(sent) => sent.map_err(|e| SendError::Deliver(e.to_string())),
                    // The send was dropped where it stood, and its connection with it.
                    Err(_) => Err(SendError::Deadline(*deadline)),
                }
            }
            Transport::Outbox(o) => o
                .write(mail, written, &message.formatted())
                .await
                .map_err(|e| SendError::Deliver(e.to_string())),
        }
    }

    /// Whether mail can leave now (readiness).
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Transport::Smtp { relay, deadline } => {
                match tokio::time::timeout(*deadline, relay.check()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "the SMTP server did not answer within {deadline:?}"
                    )),
                }
            }
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
