//! A signed-in user's sessions: who am I, sign out, list, revoke; and the operator's account
//! and session actions used by the command line, under the same rules.
use super::*;
use crate::domain::{Password, UserId, Username};
use crate::store::{CreateUserError, NewUser, User};

impl Core {
    /// Deletes the caller's session at once; a request still in flight cannot bring it back,
    /// because renewal only ever updates an existing session.
    pub async fn logout(&self, current: Option<&SessionRecord>) -> FlowResult<()> {
        if let Some(s) = current {
            self.stores.sessions.delete_session(&s.key).await?;
        }
        Ok(())
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
        if !theirs.iter().any(|s| &s.key == target) {
            return Err(FlowError::SessionNotFound);
        }
        self.stores.sessions.delete_session(target).await?;
        Ok(())
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
        Ok(self
            .stores
            .sessions
            .revoke_user_sessions(user.id, None)
            .await?)
    }

    /// Disabling a user ends all of that user's sessions (SPEC §3 Sessions).
    pub async fn disable_user(&self, user: &User) -> FlowResult<u64> {
        self.stores.users.set_disabled(user.id, true).await?;
        Ok(self
            .stores
            .sessions
            .revoke_user_sessions(user.id, None)
            .await?)
    }

    pub async fn enable_user(&self, user: &User) -> FlowResult<()> {
        Ok(self.stores.users.set_disabled(user.id, false).await?)
    }

    pub async fn set_password(&self, user: &User, password: &Password) -> FlowResult<u64> {
        let hash = self.hasher.hash(password).await?;
        self.stores.users.set_password(user.id, &hash).await?;
        Ok(self
            .stores
            .sessions
            .revoke_user_sessions(user.id, None)
            .await?)
    }
}
