//! Turning a right code into a signed-in session: sign-in with password, passwordless sign-in,
//! registration and password reset. Each ends in one atomic `redeem_code`, which consumes the
//! code, ends the pre-login session and starts a new one (fixation defence), so that of many
//! racing requests exactly one wins and a failure leaves either everything or nothing.
use super::events::Subject;
use super::*;
use crate::domain::{CodePurpose, OneTimeCode, Password, Username};
use crate::store::{Redeem, Redeemed, User};
use crate::webhooks::EventKind;

#[derive(Debug)]
pub struct SignedIn {
    pub id: SessionId,
    pub session: SessionRecord,
    pub user: SessionUser,
}

/// A submitted code, as every code route receives it.
#[derive(Debug, Clone, Copy)]
pub struct CodeSubmission<'a> {
    pub email: &'a Email,
    pub code: &'a OneTimeCode,
    /// The client asked for a bearer token instead of a cookie.
    pub want_token: bool,
}

/// A submission whose session was found and whose code is right for it: what a sign-in
/// redeems, or spends an attempt of when the rest is wrong.
struct Submission<'a> {
    session: &'a SessionRecord,
    email: &'a Email,
    want_token: bool,
    purpose: CodePurpose,
    /// The code's MAC, as stored with it.
    mac: String,
}

impl Core {
    /// SPEC §2 `/api/login/get-token`: username, password, email and code.
    pub async fn sign_in(
        &self,
        client: &ClientInfo,
        current: Option<&SessionRecord>,
        submitted: CodeSubmission<'_>,
        username: &Username,
        password: &Password,
    ) -> FlowResult<SignedIn> {
        let sub = self
            .begin_submission(client, current, submitted, CodePurpose::Login)
            .await?;
        // By NFKC_Casefold key, so `ＡＬＩＣＥ` signs in as `alice` (SPEC §3 Accounts).
        let user = self
            .stores
            .users
            .find_by_username(&username.lookup_keys())
            .await?;
        // Always one argon2id verification, known user or not (SPEC §3 Accounts).
        let verified = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
        let user = user.filter(|u| verified && !u.disabled && u.email == sub.email.as_str());
        self.finish(client, &sub, user).await
    }

    /// SPEC §2 `/api/login/code`, only with `--passwordless`.
    pub async fn sign_in_with_code(
        &self,
        client: &ClientInfo,
        current: Option<&SessionRecord>,
        submitted: CodeSubmission<'_>,
    ) -> FlowResult<SignedIn> {
        if !self.passwordless {
            return Err(FlowError::PasswordlessDisabled);
        }
        let sub = self
            .begin_submission(client, current, submitted, CodePurpose::Login)
            .await?;
        let user = self
            .stores
            .users
            .find_by_email(sub.email)
            .await?
            .filter(|u| !u.disabled);
        self.finish(client, &sub, user).await
    }

    /// SPEC §2 `/api/register`: 409 for a taken name or address only after a valid code.
    pub async fn register(
        &self,
        client: &ClientInfo,
        current: Option<&SessionRecord>,
        submitted: CodeSubmission<'_>,
        username: &Username,
        password: &Password,
    ) -> FlowResult<SignedIn> {
        let sub = self
            .begin_submission(client, current, submitted, CodePurpose::Register)
            .await?;
        let email = sub.email;
        if self
            .stores
            .users
            .find_by_username(&[username.key().to_owned()])
            .await?
            .is_some()
        {
            return Err(FlowError::UsernameTaken);
        }
        if self.stores.users.find_by_email(email).await?.is_some() {
            return Err(FlowError::EmailTaken);
        }
        let (id, public_id) = self.add_user(username, email, password).await?;
        let user = SessionUser {
            id,
            username: username.as_str().to_owned(),
            email: email.as_str().to_owned(),
            public_id: Some(public_id),
        };
        let result = self.redeem_into_session(client, &sub, user).await;
        if result.is_err() {
            // Another request used the code first (or the store failed): the account we just
            // created must not outlive the registration that failed.
            if let Err(e) = self.stores.users.delete_user(id).await {
                tracing::error!(error = %e, user = id, "cannot undo a failed registration");
            }
        }
        result
    }

    /// SPEC §2 `/api/password/reset`: every session of the user ends, a new one starts.
    pub async fn reset_password(
        &self,
        client: &ClientInfo,
        current: Option<&SessionRecord>,
        submitted: CodeSubmission<'_>,
        new_password: &Password,
    ) -> FlowResult<SignedIn> {
        let sub = self
            .begin_submission(client, current, submitted, CodePurpose::Reset)
            .await?;
        let user = self
            .stores
            .users
            .find_by_email(sub.email)
            .await?
            .filter(|u| !u.disabled);
        let Some(user) = user else {
            return self.finish(client, &sub, None).await;
        };
        let hash = self.hasher.hash(new_password).await?;
        let signed = self.finish(client, &sub, Some(user.clone())).await?;
        self.stores.users.set_password(user.id, &hash).await?;
        self.end_sessions_of(
            &user,
            Some(&signed.session.key),
            Some(EventKind::UserPasswordReset),
        )
        .await?;
        Ok(signed)
    }

    /// What every code submission does first, in this order: it counts as a login attempt for
    /// the client's IP, needs the session the code was sent to, and its code must be right
    /// (SPEC §3: the code before the password).
    async fn begin_submission<'a>(
        &self,
        client: &ClientInfo,
        current: Option<&'a SessionRecord>,
        submitted: CodeSubmission<'a>,
        purpose: CodePurpose,
    ) -> FlowResult<Submission<'a>> {
        self.limit(
            &format!("ip:login:{}", client.ip),
            self.policy.logins_per_ip,
            self.policy.limit_window,
        )
        .await?;
        let session = current.ok_or_else(|| {
            metrics::counter!(crate::metrics::REJECTIONS, "reason" => "no_session").increment(1);
            FlowError::NoSession
        })?;
        let mac = self
            .check_submitted_code(session, purpose, submitted.email, submitted.code)
            .await?;
        Ok(Submission {
            session,
            email: submitted.email,
            want_token: submitted.want_token,
            purpose,
            mac,
        })
    }

    /// With a user: redeem the code into a signed-in session. Without one (unknown user, wrong
    /// password, disabled account, address mismatch): spend an attempt and answer `LOGIN_FAILED`,
    /// the same for every cause.
    async fn finish(
        &self,
        client: &ClientInfo,
        sub: &Submission<'_>,
        user: Option<User>,
    ) -> FlowResult<SignedIn> {
        match user {
            Some(u) => {
                let user = SessionUser {
                    id: u.id,
                    username: u.username,
                    email: u.email,
                    public_id: Some(u.public_id),
                };
                self.redeem_into_session(client, sub, user).await
            }
            None => {
                metrics::counter!(crate::metrics::REJECTIONS, "reason" => "login_failed")
                    .increment(1);
                let outcome = self
                    .stores
                    .codes
                    .redeem_code(
                        &sub.session.key,
                        sub.purpose,
                        sub.email,
                        &sub.mac,
                        self.now(),
                        self.policy.code_max_attempts,
                        Redeem::UseAttempt,
                    )
                    .await?;
                Err(FlowError::LoginFailed {
                    attempts_left: match outcome {
                        Redeemed::AttemptUsed { attempts_left } => Some(attempts_left),
                        _ => None,
                    },
                })
            }
        }
    }

    async fn redeem_into_session(
        &self,
        client: &ClientInfo,
        sub: &Submission<'_>,
        user: SessionUser,
    ) -> FlowResult<SignedIn> {
        let kind = if sub.want_token {
            SessionKind::Token
        } else {
            sub.session.kind
        };
        let (id, record) = self.new_session(kind, Some(user.clone()), client);
        // Written with the redeem that signs in (SPEC §7): a registration's account exists
        // exactly when its sign-in does (a failed one is undone), so `user.created` rides here.
        let mut events = Vec::new();
        if let Some(user_id) = user.public_id {
            let who = Subject {
                user_id,
                username: &user.username,
                email: &user.email,
            };
            if sub.purpose == CodePurpose::Register {
                events.extend(self.event(EventKind::UserCreated, &who, None));
            }
            events.extend(self.event(EventKind::UserSignedIn, &who, Some(&record)));
        }
        let outcome = self
            .stores
            .codes
            .redeem_code(
                &sub.session.key,
                sub.purpose,
                sub.email,
                &sub.mac,
                self.now(),
                self.policy.code_max_attempts,
                Redeem::SignIn {
                    new: record.clone(),
                    events: events.clone(),
                },
            )
            .await?;
        match outcome {
            Redeemed::SignedIn => {
                self.events_written(&events);
                metrics::counter!(crate::metrics::SIGN_INS, "purpose" => sub.purpose.as_str())
                    .increment(1);
                Ok(SignedIn {
                    id,
                    session: record,
                    user,
                })
            }
            // A concurrent request consumed the code first.
            _ => Err(FlowError::CodeInvalid {
                attempts_left: None,
            }),
        }
    }
}
