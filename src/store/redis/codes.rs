//! Codes on Redis (`CodeStore`): kept in their session's record, judged by one script, and
//! redeemed by the sign-in protocol that spans Cluster slots (a pending session, then the
//! commit point, then its activation: docs/operations.md, "Redis: keys and records").
use super::*;
use ::redis::Value;
use codec::format::{PENDING, SEP};
use codec::{codes_in, decode_code, encode_code, encode_session, tag};
use scripts::{Lua, CHECK, CODE_PUT, REDEEM};
use tokio::time::Instant;

/// A code as submitted: the address, the code's HMAC, the caller's `now` and the most attempts
/// a code allows.
type Submitted<'a> = (&'a Email, &'a str, Millis, u32);

impl RedisStore {
    /// Keeps a code in its session's record; a session gone meanwhile gets none (`CODE_PUT`).
    async fn put_code(&self, c: &CodeRecord) -> StoreResult<()> {
        let mut call = CODE_PUT.prepare();
        call.key(self.keys.session(&c.session))
            .arg(c.purpose.as_str())
            .arg(encode_code(c)?)
            .arg(c.created_at)
            .arg(CODE_GRACE_MS);
        self.invoke::<i64>(&call).await.map(drop)
    }

    async fn judge(
        &self,
        script: &Lua,
        session: &SessionKey,
        purpose: CodePurpose,
        submitted: Submitted<'_>,
        action: (&str, Option<&SessionKey>, i64),
        events: &[String],
    ) -> StoreResult<(i64, u32)> {
        let (email, mac, now, max) = submitted;
        let (what, new, marker_ttl) = action;
        let mut call = script.prepare();
        call.key(self.keys.session(session))
            .key(self.keys.marker(session))
            .arg(purpose.as_str())
            .arg(email.as_str())
            .arg(mac)
            .arg(now)
            .arg(max)
            .arg(what)
            .arg(new.map(tag).unwrap_or_default())
            .arg(marker_ttl);
        if !events.is_empty() {
            call.key(self.keys.hook_new());
            for e in events {
                call.arg(e);
            }
        }
        let (verdict, attempts): (i64, i64) = self.invoke(&call).await?;
        let attempts = u32::try_from(attempts).map_err(|_| corrupt("code"))?;
        Ok((verdict, attempts))
    }

    async fn redeem(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        submitted: Submitted<'_>,
        action: Redeem,
        deadline: Instant,
    ) -> StoreResult<Redeemed> {
        let (_, _, now, max) = submitted;
        let new = match action {
            Redeem::UseAttempt => {
                let (verdict, attempts) = self
                    .judge(
                        &REDEEM,
                        session,
                        purpose,
                        submitted,
                        ("attempt", None, 0),
                        &[],
                    )
                    .await?;
                return match verdict {
                    0 => Ok(Redeemed::Gone),
                    1 => Ok(Redeemed::AttemptUsed {
                        attempts_left: max.saturating_sub(attempts),
                    }),
                    _ => Err(corrupt("redeem answer")),
                };
            }
            Redeem::SignIn { new, events } => (new, events),
        };
        let (new, events) = new;
        let entries = Self::event_entries(&events)?;
        // With the commit point where the topology allows (SPEC §7), else right after it.
        let (in_script, after): (&[String], &[String]) = if self.events_in_script() {
            (&entries, &[])
        } else {
            (&[], &entries)
        };
        // (1) The new session, pending: no one accepts it until the script below commits it.
        let active = encode_session(&new)?;
        let new_ttl = ttl(new.expires_at() - now);
        let pending = format!("{PENDING}{}{SEP}{active}", tag(session));
        let name = self.keys.session(&new.key);
        self.query::<Value>(
            ::redis::cmd("SET")
                .arg(&name)
                .arg(pending)
                .arg("PX")
                .arg(new_ttl),
            Resend::Safe,
        )
        .await?;
        if let Some(u) = &new.user {
            self.index_add(u.id, &new, now).await?;
        }
        // (2) The commit point: code consumed, old session gone, marker written, atomically.
        let (verdict, _) = self
            .judge(
                &REDEEM,
                session,
                purpose,
                submitted,
                ("signin", Some(&new.key), new_ttl),
                in_script,
            )
            .await?;
        if verdict != 2 {
            // Lost (or the code was wrong, used, expired): take back what (1) wrote.
            let _ = self
                .query::<i64>(::redis::cmd("DEL").arg(&name), Resend::Safe)
                .await;
            if let Some(u) = &new.user {
                let _ = self.index_remove(u.id, &[&new.key]).await;
            }
            return Ok(Redeemed::Gone);
        }
        // (3) Signed in whatever happens now: a record left pending is activated when first read.
        let finish = async {
            self.push_events(after).await?;
            if self.activate(&new.key).await? {
                self.query::<i64>(
                    ::redis::cmd("DEL").arg(self.keys.marker(session)),
                    Resend::Safe,
                )
                .await?;
            }
            StoreResult::Ok(())
        };
        match tokio::time::timeout_at(deadline, finish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("sign-in committed, activation left to the next read: {e}")
            }
            Err(_) => {
                tracing::warn!("sign-in committed, activation left to the next read: timed out")
            }
        }
        Ok(Redeemed::SignedIn)
    }

    async fn current(&self, session: &SessionKey, now: Millis) -> StoreResult<Option<CodeRecord>> {
        let raw: Option<String> = self
            .query(
                ::redis::cmd("GET").arg(self.keys.session(session)),
                Resend::Safe,
            )
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let mut best: Option<CodeRecord> = None;
        for (purpose, record) in codes_in(&raw)? {
            let (c, _) = decode_code(session, purpose, record)?;
            if c.expires_at > now && best.as_ref().is_none_or(|b| c.created_at > b.created_at) {
                best = Some(c);
            }
        }
        Ok(best)
    }
}

#[async_trait]
impl CodeStore for RedisStore {
    /// Kept in the session's record: a session gone meanwhile gets no code (it could never be
    /// entered), which is not an error.
    async fn issue_code(&self, c: &CodeRecord) -> StoreResult<()> {
        bounded(self.op_timeout, self.put_code(c)).await
    }

    async fn check_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        let submitted = (email, mac, now, max_attempts);
        let (verdict, attempts) = bounded(
            self.op_timeout,
            self.judge(&CHECK, session, purpose, submitted, ("check", None, 0), &[]),
        )
        .await?;
        Ok(match verdict {
            0 => CodeCheck::Missing,
            1 => CodeCheck::Expired,
            2 => CodeCheck::Dead,
            3 => CodeCheck::Right,
            4 => CodeCheck::Wrong {
                attempts_left: max_attempts.saturating_sub(attempts),
            },
            _ => return Err(corrupt("check answer")),
        })
    }

    async fn redeem_code(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max_attempts: u32,
        action: Redeem,
    ) -> StoreResult<Redeemed> {
        // The last step of a sign-in gives up at `deadline` on its own (a committed sign-in
        // stands): the whole call is bounded from the same instant.
        let deadline = Instant::now() + self.op_timeout;
        let submitted = (email, mac, now, max_attempts);
        bounded(
            self.op_timeout,
            self.redeem(session, purpose, submitted, action, deadline),
        )
        .await
    }

    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        bounded(self.op_timeout, self.current(session, now)).await
    }
}
