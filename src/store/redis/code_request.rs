//! A code request's writes in one round trip (docs/benchmarks.md, workload 2): its limits, the new
//! session with the code in its record (or the code put into the visitor's session record),
//! and the queued mail (an entry in the list of new mails, `outbox.rs`),
//! decided and written by one script, [`CODE_REQUEST`], so that a refusal writes nothing and an
//! allowed request writes all of it, atomically. On a
//! Cluster those keys lie in different slots (docs/operations.md, "Limits across slots"), so
//! there the same writes go in steps: 3 round trips instead of 1.
use super::*;
use ::redis::Value;
use codec::{encode_code, encode_session_with_code};
use limits::limit_answer;
use scripts::CODE_REQUEST;

impl RedisStore {
    /// A new visitor's session and code are one record, one `SET`. A session with a user takes
    /// the general path: it also enters its user's index.
    pub async fn create_session_with_code(
        &self,
        s: &SessionRecord,
        c: &CodeRecord,
    ) -> StoreResult<()> {
        if s.user.is_some() || c.session != s.key {
            self.create_session(s).await?;
            return self.issue_code(c).await;
        }
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.session(&s.key))
            .arg(encode_session_with_code(s, c)?)
            .arg("PX")
            .arg(ttl(s.expires_at() - s.last_seen_at))
            .to_owned();
        bounded(self.op_timeout, self.query::<Value>(&cmd, Resend::Safe))
            .await
            .map(drop)
    }
}

#[async_trait]
impl CodeRequestWrites for RedisStore {
    async fn issue_code_and_mail(
        &self,
        limits: &[LimitCheck],
        now: Millis,
        new_session: Option<&SessionRecord>,
        code: &CodeRecord,
        mail: &OutgoingMail,
    ) -> StoreResult<Limit> {
        // A session with a user also enters its user's index (`create`): not a code request's.
        let with_user = new_session.is_some_and(|s| s.user.is_some() || s.key != code.session);
        if self.is_cluster() || with_user {
            // In steps, as the flow would make them, with the session and its code still one
            // record: 3 round trips.
            let verdict = self.hit_limits(limits, now).await?;
            if verdict != Limit::Allowed {
                return Ok(verdict);
            }
            match new_session {
                Some(s) => self.create_session_with_code(s, code).await?,
                None => self.issue_code(code).await?,
            }
            self.enqueue(mail).await?;
            return Ok(Limit::Allowed);
        }
        let mut call = CODE_REQUEST.prepare();
        call.arg(now);
        for c in limits {
            self.push_limit(&mut call, c, now);
        }
        call.key(self.keys.session(&code.session));
        // A new session carries its code in its record; only an existing one needs it apart.
        match new_session {
            Some(s) => call
                .arg(encode_session_with_code(s, code)?)
                .arg(ttl(s.expires_at() - s.last_seen_at))
                .arg("")
                .arg("")
                .arg(""),
            None => call
                .arg("")
                .arg(0)
                .arg(code.purpose.as_str())
                .arg(encode_code(code)?)
                .arg(CODE_GRACE_MS),
        };
        call.key(self.keys.mail_new()).arg(self.mail_entry(mail)?);
        let (refused, reset_at): (i64, i64) = bounded(self.op_timeout, self.invoke(&call)).await?;
        Ok(limit_answer(refused, reset_at, now))
    }
}
