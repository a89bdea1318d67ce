//! A signed-in user's sessions: who am I, sign out, list, revoke; and the operator's account
//! and session actions used by the command line, under the same rules.
use super::events::Subject;
use super::*;
use crate::domain::{Password, UserId, Username};
use crate::store::{CreateUserError, NewUser, User};
use crate::webhooks::EventKind;

impl Core {
    /// Deletes the caller's session at once; a request still in flight cannot bring it back,
    /// because renewal only ever updates an existing session.
    pub async fn logout(&self, current: Option<&SessionRecord>) -> FlowResult<()> {
        if let Some(s) = current {
            self.end_session(s).await?;
        }
        Ok(())
    }

    /// Deletes one session, reporting `session.ended` for a signed-in one (SPEC §7) in the same
    /// step.
    async fn end_session(&self, s: &SessionRecord) -> FlowResult<()> {
        let events = match &s.user {
            Some(u) => match self.subject_of(u).await? {
                Some(user_id) => {
                    let who = Subject {
                        user_id,
                        username: &u.username,
                        email: &u.email,
                    };
                    self.event(EventKind::SessionEnded, &who, Some(s))
                }
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        self.stores.sessions.delete_session(&s.key, &events).await?;
        self.events_written(&events);
        Ok(())
    }

    /// Ends every session of `user` but `except`, with `first` (the account event behind it)
    /// and a `session.ended` per session, written in the same step (SPEC §7). A session that
    /// starts between the listing and the revocation ends without its own event.
    pub(super) async fn end_sessions_of(
        &self,
        user: &User,
        except: Option<&SessionKey>,
        first: Option<EventKind>,
    ) -> FlowResult<u64> {
        let events = if self.subscribers.is_empty() {
            Vec::new()
        } else {
            let who = Subject::of_user(user);
            let first = first.map_or_else(Vec::new, |k| self.event(k, &who, None));
            let sessions = self.sessions_of(user.id).await?;
            self.ended(first, &who, &sessions, except)
        };
        let n = self
            .stores
            .sessions
            .revoke_user_sessions(user.id, except, &events)
            .await?;
        self.events_written(&events);
        Ok(n)
    }

    pub async fn list_sessions(
        &self,
        current: Option<&SessionRecord>,
    ) -> FlowResult<Vec<SessionRecord>> {
        let (_, user) = require_user(current)?;
        self.sessions_of(user.id).await
    }

    /// Revokes one of the caller's own sessions (by its public id).
    pub async fn revoke_session(
        &self,
        current: Option<&SessionRecord>,
        target: &SessionKey,
    ) -> FlowResult<()> {
        let (_, user) = require_user(current)?;
        self.revoke_session_of(user.id, target).await
    }

    async fn sessions_of(&self, user_id: i64) -> FlowResult<Vec<SessionRecord>> {
        Ok(self
            .stores
            .sessions
            .list_user_sessions(user_id, self.now())
            .await?)
    }

    /// Ends `target` if it is one of the user's live sessions, else `SessionNotFound`: whoever
    /// asks (the user over HTTP, the operator for that user), nobody ends another user's
    /// session.
    async fn revoke_session_of(&self, user_id: i64, target: &SessionKey) -> FlowResult<()> {
        let theirs = self.sessions_of(user_id).await?;
        let Some(session) = theirs.iter().find(|s| &s.key == target) else {
            return Err(FlowError::SessionNotFound);
        };
        self.end_session(session).await
    }

    // ---- operator actions (command line) ----

    /// Creates an account (registration and `mailcode user add`); the password is hashed here.
    pub async fn add_user(
        &self,
        username: &Username,
        email: &Email,
        password: &Password,
    ) -> FlowResult<(i64, UserId)> {
        let hash = self.hasher.hash(password).await?;
        let now = self.now();
        let public_id = UserId::new(now);
        self.stores
            .users
            .create_user(&NewUser {
                public_id,
                username: username.as_str().to_owned(),
                username_key: username.key().to_owned(),
                email: email.as_str().to_owned(),
                password_hash: hash,
                created_at: now,
            })
            .await
            .map(|id| (id, public_id))
            .map_err(|e| match e {
                CreateUserError::UsernameTaken => FlowError::UsernameTaken,
                CreateUserError::EmailTaken => FlowError::EmailTaken,
                CreateUserError::Store(s) => FlowError::Store(s),
            })
    }

    /// `mailcode user add`: an account created by the operator, reported as `user.created`
    /// (SPEC §7) once it exists. Not in the same step as the account (the users' database is not
    /// the outbox's store): a crash between the two loses the event, never the account.
    pub async fn operator_add_user(
        &self,
        username: &Username,
        email: &Email,
        password: &Password,
    ) -> FlowResult<UserId> {
        let (_, user_id) = self.add_user(username, email, password).await?;
        let who = Subject {
            user_id,
            username: username.as_str(),
            email: email.as_str(),
        };
        let events = self.event(EventKind::UserCreated, &who, None);
        for e in &events {
            self.stores.webhooks.enqueue(e).await?;
        }
        self.events_written(&events);
        Ok(user_id)
    }

    /// Finds a user by username or email, as an operator types it.
    pub async fn find_user(&self, who: &str) -> FlowResult<Option<User>> {
        if let Ok(email) = Email::parse(who) {
            if let Some(u) = self.stores.users.find_by_email(&email).await? {
                return Ok(Some(u));
            }
        }
        match Username::parse_for_login(who) {
            Ok(name) => Ok(self
                .stores
                .users
                .find_by_username(&name.lookup_keys())
                .await?),
            Err(_) => Ok(None),
        }
    }

    /// Every account, for `mailcode user list`.
    pub async fn list_users(&self) -> FlowResult<Vec<User>> {
        Ok(self.stores.users.list_users().await?)
    }

    /// A user's live sessions (`mailcode sessions list`).
    pub async fn user_sessions(&self, user: &User) -> FlowResult<Vec<SessionRecord>> {
        self.sessions_of(user.id).await
    }

    /// Ends one of a user's sessions (`mailcode sessions revoke --id`); `SessionNotFound` when
    /// it is not theirs, as over HTTP.
    pub async fn revoke_user_session(&self, user: &User, target: &SessionKey) -> FlowResult<()> {
        self.revoke_session_of(user.id, target).await
    }

    /// Ends all of a user's sessions (`mailcode sessions revoke`); how many there were.
    pub async fn revoke_user_sessions(&self, user: &User) -> FlowResult<u64> {
        self.end_sessions_of(user, None, None).await
    }

    /// Disabling a user ends all of that user's sessions (SPEC §3 Sessions); `user.disabled`
    /// is written with their end (SPEC §7).
    pub async fn disable_user(&self, user: &User) -> FlowResult<u64> {
        self.stores.users.set_disabled(user.id, true).await?;
        self.end_sessions_of(user, None, Some(EventKind::UserDisabled))
            .await
    }

    pub async fn enable_user(&self, user: &User) -> FlowResult<()> {
        Ok(self.stores.users.set_disabled(user.id, false).await?)
    }

    pub async fn set_password(&self, user: &User, password: &Password) -> FlowResult<u64> {
        let hash = self.hasher.hash(password).await?;
        self.stores.users.set_password(user.id, &hash).await?;
        self.end_sessions_of(user, None, Some(EventKind::UserPasswordReset))
            .await
    }
}
