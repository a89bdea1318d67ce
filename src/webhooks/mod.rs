//! Events the application can act on (SPEC §7): what an event says, who receives it
//! ([`Subscribers`]), how it is signed (Standard Webhooks), one delivery attempt with its
//! deadline ([`deliver`]) and the worker that drains the outbox's webhook deliveries
//! ([`worker`]).
//!
//! An event is written by the flows into the store step that makes its change (a sign-in's
//! redeem, a session's end, a revocation), one delivery per URL, in the same durable outbox as
//! mail: it exists exactly when its change happened, and leaves without delaying the request.
pub mod deliver;
pub mod secret;
pub mod worker;

use serde::Serialize;
use std::sync::Arc;

use crate::clock::{rfc3339, Millis};
use crate::domain::UserId;
use crate::store::OutgoingMail;

/// How long an event is retried before it is given up (SPEC §7: 24 h).
pub const RETRY_FOR_MS: Millis = 24 * 3600 * 1000;

/// The receivers of every event (`--webhook-url`), in order: a URL's position is part of the
/// `webhook-id` of its deliveries ([`Event::id_for`]).
#[derive(Clone, Default)]
pub struct Subscribers {
    urls: Arc<[String]>,
}

/// URLs may hold credentials: `Debug` shows how many there are, not what they are.
impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscribers({} URLs)", self.urls.len())
    }
}

impl Subscribers {
    pub fn new(urls: Vec<String>) -> Self {
        Subscribers { urls: urls.into() }
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The deliveries of one event, one per URL, due at once; none without URLs.
    pub fn deliveries(&self, kind: EventKind, at: Millis, data: &EventData) -> Vec<OutgoingMail> {
        if self.urls.is_empty() {
            return Vec::new();
        }
        let event = match Event::new(kind, at, data) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, event = kind.as_str(), "event not written");
                return Vec::new();
            }
        };
        self.urls
            .iter()
            .enumerate()
            .map(|(i, url)| OutgoingMail {
                mail_ref: event.id_for(i),
                code: None,
                to: url.clone(),
                order: event.body.clone(),
                expires_at: at + RETRY_FOR_MS,
                created_at: at,
            })
            .collect()
    }
}

/// What happened (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventKind {
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.signed_in")]
    UserSignedIn,
    #[serde(rename = "user.password_reset")]
    UserPasswordReset,
    #[serde(rename = "user.disabled")]
    UserDisabled,
    #[serde(rename = "session.ended")]
    SessionEnded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserCreated => "user.created",
            EventKind::UserSignedIn => "user.signed_in",
            EventKind::UserPasswordReset => "user.password_reset",
            EventKind::UserDisabled => "user.disabled",
            EventKind::SessionEnded => "session.ended",
        }
    }
}

/// Who it happened to. Never a code, password, token or session id: `session_id` is the
/// public id of `GET /api/sessions`.
#[derive(Debug, Clone, Serialize)]
pub struct EventData {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// An event as it is queued: its id (the `webhook-id`, the same on every attempt) and the body
/// every URL receives.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: EventKind,
    pub at: Millis,
    pub body: String,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: EventKind,
    timestamp: String,
    data: &'a EventData,
}

impl Event {
    /// A new event with a fresh id: `msg_` and a UUIDv7, so ids sort by time.
    pub fn new(kind: EventKind, at: Millis, data: &EventData) -> Result<Event, serde_json::Error> {
        let body = serde_json::to_string(&Body {
            kind,
            timestamp: rfc3339(at),
            data,
        })?;
        Ok(Event {
            id: format!("msg_{:032x}", UserId::new(at).as_u128()),
            kind,
            at,
            body,
        })
    }

    /// The `webhook-id` of this event at one URL: unique per event and per URL (SPEC §7), the
    /// same on every retry. `index` is the URL's position in `--webhook-url`.
    pub fn id_for(&self, index: usize) -> String {
        if index == 0 {
            self.id.clone()
        } else {
            format!("{}_{index}", self.id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_body_is_the_spec_shape_and_holds_no_secret() {
        let data = EventData {
            user_id: UserId::new(1_800_000_000_000),
            username: "ada".into(),
            email: "ada@example.com".into(),
            session_id: Some("5e".repeat(32)),
            ip: None,
            user_agent: Some("agent".into()),
        };
        let e = Event::new(EventKind::UserSignedIn, 1_800_000_000_000, &data).expect("JSON");
        let v: serde_json::Value = serde_json::from_str(&e.body).expect("JSON");
        assert_eq!(v["type"], "user.signed_in");
        assert_eq!(v["timestamp"], "2027-01-15T08:00:00Z");
        assert_eq!(v["data"]["username"], "ada");
        assert_eq!(v["data"]["user_id"], data.user_id.to_text());
        assert!(v["data"].get("ip").is_none());
        assert!(e.id.starts_with("msg_") && e.id.len() == 36, "{}", e.id);
        assert_ne!(e.id_for(0), e.id_for(1));
        assert_eq!(e.id_for(1), e.id_for(1));
        let other = Event::new(EventKind::UserSignedIn, 1_800_000_000_000, &data).expect("JSON");
        assert_ne!(other.id, e.id, "unique per event");
    }
}
