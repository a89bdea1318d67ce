//! The events each flow reports (SPEC §7), built here and written by the store step that makes
//! the change: a sign-in's redeem, a session's end, a revocation. A session that merely times
//! out reports nothing.
use super::*;
use crate::store::{OutgoingMail, User};
use crate::webhooks::{EventData, EventKind};

/// Who an event is about, as its body names them.
pub(super) struct Subject<'a> {
    pub user_id: UserId,
    pub username: &'a str,
    pub email: &'a str,
}

impl<'a> Subject<'a> {
    pub fn of_user(u: &'a User) -> Self {
        Subject {
            user_id: u.public_id,
            username: &u.username,
            email: &u.email,
        }
    }
}

impl Core {
    /// One event's deliveries (one per `--webhook-url`), none when no URL is configured.
    pub(super) fn event(
        &self,
        kind: EventKind,
        who: &Subject<'_>,
        session: Option<&SessionRecord>,
    ) -> Vec<OutgoingMail> {
        if self.subscribers.is_empty() {
            return Vec::new();
        }
        let data = EventData {
            user_id: who.user_id,
            username: who.username.to_owned(),
            email: who.email.to_owned(),
            session_id: session.map(|s| s.key.as_str().to_owned()),
            ip: session.map(|s| s.ip.clone()),
            user_agent: session
                .map(|s| s.user_agent.clone())
                .filter(|u| !u.is_empty()),
        };
        self.subscribers.deliveries(kind, self.now(), &data)
    }

    /// `session.ended` for each of `sessions` (but `except`), after `first` (the account event
    /// that ends them, if any), in that order.
    pub(super) fn ended(
        &self,
        first: Vec<OutgoingMail>,
        who: &Subject<'_>,
        sessions: &[SessionRecord],
        except: Option<&SessionKey>,
    ) -> Vec<OutgoingMail> {
        let mut all = first;
        for s in sessions.iter().filter(|s| Some(&s.key) != except) {
            all.extend(self.event(EventKind::SessionEnded, who, Some(s)));
        }
        all
    }

    /// The subject of a session's events: its user, whose id an older session may not hold
    /// (then read from the account).
    pub(super) async fn subject_of(&self, u: &SessionUser) -> FlowResult<Option<UserId>> {
        if self.subscribers.is_empty() {
            return Ok(None);
        }
        if let Some(id) = u.public_id {
            return Ok(Some(id));
        }
        Ok(self
            .stores
            .users
            .find_by_id(u.id)
            .await?
            .map(|a| a.public_id))
    }

    /// Wakes the webhook worker after events were written.
    pub(super) fn events_written(&self, events: &[OutgoingMail]) {
        if !events.is_empty() {
            self.webhook_wake.notify_one();
        }
    }
}
