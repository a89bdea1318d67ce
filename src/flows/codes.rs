//! Asking for a code (SPEC §3 Codes and Rate limits) and asking how its mail is doing.
//!
//! The answer is the same, in status, body and store work, whether or not an account exists for
//! the address: only the mail differs.
use super::*;
use crate::clock::ms;
use crate::domain::CodePurpose;
use crate::mail::templates::{MailBody, MailOrder};
use crate::store::{CodeRecord, Delivery, Limit, LimitCheck, OutgoingMail};

#[derive(Debug)]
pub struct CodeSent {
    /// Set when this request had to start a session: the client must keep this id.
    pub new_session: Option<(SessionId, SessionKind)>,
    pub expires_at: Millis,
    pub resend_available_at: Millis,
    pub delivery: Delivery,
}

#[derive(Debug)]
pub struct CodeStatus {
    pub purpose: CodePurpose,
    pub delivery: Delivery,
    pub expires_at: Millis,
    pub resend_available_at: Millis,
}

impl Core {
    pub async fn request_code(
        &self,
        client: &ClientInfo,
        current: Option<&SessionRecord>,
        purpose: CodePurpose,
        email: &Email,
        kind: SessionKind,
    ) -> FlowResult<CodeSent> {
        if self.blocked_domains.contains(email.domain()) {
            metrics::counter!(crate::metrics::REJECTIONS, "reason" => "blocked_domain")
                .increment(1);
            return Err(FlowError::InvalidEmail(
                "this mail domain is not accepted".into(),
            ));
        }
        let p = &self.policy;
        // Looked up first: a request that fails on a store that is down spends no quota. Done for
        // every address, known or not, so the answer costs the same (SPEC §3).
        let account = self.stores.users.find_by_email(email).await?;
        // Cheapest and widest first, so a refused request spends no narrower quota.
        let limits = [
            LimitCheck::hit(
                format!("ip:code:{}", client.ip),
                p.code_requests_per_ip,
                p.limit_window,
            ),
            self.guess_budget_check(email),
            // The resend cooldown is a spacing of the hourly count, per purpose: one record.
            LimitCheck::hit(
                format!("email:{}", email.as_str()),
                p.codes_per_email,
                p.limit_window,
            )
            .spaced(purpose.as_str(), p.code_cooldown),
        ];

        // A session starts here, when there is something to keep (SPEC §3 Sessions).
        let (session_key, new_session) = match current {
            Some(s) => (s.key.clone(), None),
            None => {
                let (id, record) = self.new_session(kind, None, client);
                (record.key.clone(), Some((id, record)))
            }
        };

        let code = crate::crypto::new_code();
        let now = self.now();
        let record = CodeRecord {
            session: session_key.clone(),
            purpose,
            email: email.as_str().to_owned(),
            mac: self.secret.code_mac(&session_key, purpose, email, &code),
            created_at: now,
            expires_at: now + ms(p.code_ttl),
            resend_available_at: now + ms(p.code_cooldown),
            attempts: 0,
            mail_ref: hex::encode(rand::random::<[u8; 12]>()),
        };

        let body = match (purpose, &account) {
            (CodePurpose::Register, Some(_)) => MailBody::AlreadyRegistered,
            (CodePurpose::Register, None) => MailBody::Code(code),
            (_, Some(_)) => MailBody::Code(code),
            (_, None) => MailBody::NoAccount,
        };
        let order = MailOrder {
            purpose,
            body,
            lang: client.lang,
            minutes: p.code_ttl.as_secs() / 60,
        };
        // Mail goes only to the stored address of the matched account (SPEC §3 Accounts).
        let to = account
            .map(|a| a.email)
            .unwrap_or_else(|| email.as_str().to_owned());
        let mail = OutgoingMail {
            mail_ref: record.mail_ref.clone(),
            code: Some(record.key()),
            to,
            // Sealed while it waits in the queue: it holds the code in clear (see `MailSeal`).
            order: self.mail_seal.seal(&order.encode()),
            expires_at: record.expires_at,
            created_at: now,
        };

        // The limits, then (if they allow) the session, the code and the mail: one store round
        // trip on a single Redis, a refusal writing nothing.
        let verdict = self
            .stores
            .issue_code_and_mail(
                &limits,
                now,
                new_session.as_ref().map(|(_, s)| s),
                &record,
                &mail,
            )
            .await?;
        if let Limit::Limited { retry_after_ms } = verdict {
            return Err(rate_limited(retry_after_ms));
        }
        self.mail_wake.notify_one();
        metrics::counter!(crate::metrics::CODES_SENT, "purpose" => purpose.as_str()).increment(1);

        Ok(CodeSent {
            new_session: new_session.map(|(id, _)| (id, kind)),
            expires_at: record.expires_at,
            resend_available_at: record.resend_available_at,
            delivery: Delivery::Queued,
        })
    }

    /// The delivery state of the session's current code (SPEC §2 `/api/login/email-code/status`).
    pub async fn code_status(&self, current: Option<&SessionRecord>) -> FlowResult<CodeStatus> {
        let session = current.ok_or(FlowError::NoSession)?;
        let code = self
            .stores
            .codes
            .current_code(&session.key, self.now())
            .await?
            .ok_or(FlowError::NoCode)?;
        let delivery = self
            .stores
            .outbox
            .delivery(&code)
            .await?
            .unwrap_or(Delivery::Failed);
        Ok(CodeStatus {
            purpose: code.purpose,
            delivery,
            expires_at: code.expires_at,
            resend_available_at: code.resend_available_at,
        })
    }

    /// Checks a submitted code before anything else (SPEC §3: the code before the password),
    /// spending an attempt and the email's guess budget when it is wrong.
    pub(super) async fn check_submitted_code(
        &self,
        session: &SessionRecord,
        purpose: CodePurpose,
        email: &Email,
        code: &crate::domain::OneTimeCode,
    ) -> FlowResult<String> {
        use crate::store::CodeCheck;
        self.check_guess_budget(email).await?;
        let mac = self.secret.code_mac(&session.key, purpose, email, code);
        let verdict = self
            .stores
            .codes
            .check_code(
                &session.key,
                purpose,
                email,
                &mac,
                self.now(),
                self.policy.code_max_attempts,
            )
            .await?;
        let reject = |reason: &'static str| {
            metrics::counter!(crate::metrics::REJECTIONS, "reason" => reason).increment(1);
        };
        match verdict {
            CodeCheck::Right => Ok(mac),
            CodeCheck::Wrong { attempts_left } => {
                reject("code_invalid");
                self.spend_guess(email).await?;
                Err(FlowError::CodeInvalid {
                    attempts_left: Some(attempts_left),
                })
            }
            CodeCheck::Missing => {
                reject("code_missing");
                Err(FlowError::CodeInvalid {
                    attempts_left: None,
                })
            }
            CodeCheck::Expired => {
                reject("code_expired");
                Err(FlowError::CodeExpired)
            }
            CodeCheck::Dead => {
                reject("code_dead");
                Err(FlowError::CodeAttemptsExceeded)
            }
        }
    }
}
