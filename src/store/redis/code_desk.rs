//! A code request's writes in one round trip (docs/benchmarks.md, workload 2): its limits, the new
//! session with the code in its record (or the code put into the visitor's session record),
//! and the queued mail (an entry in the list of new mails, `mail.rs`),
//! decided and written by one script, [`CODE_REQUEST`], so that a refusal writes nothing and an
//! allowed request writes all of it, atomically. On a
//! Cluster those keys lie in different slots (docs/operations.md, "Limits across slots"), so there the
//! same writes go in steps ([`in_steps`]): 3 round trips instead of 1.
use super::*;
use scripts::CODE_REQUEST;

#[async_trait]
impl CodeDesk for RedisStore {
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
            return in_steps(self, self, limits, now, new_session, code, mail).await;
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
        call.key(self.keys.mail_new())
            .arg(self.mail_entry(code, mail)?);
        let (refused, reset_at): (i64, i64) = bounded(self.op_timeout, self.invoke(&call)).await?;
        Ok(limit_answer(refused, reset_at, now))
    }
}
