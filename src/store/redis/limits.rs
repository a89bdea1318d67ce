//! Fixed-window limits on Redis (`LimitStore`, SPEC §3 Rate limits): one key per counter, its
//! spacing kept in it; several limits of one request in one script, or one by one on a Cluster
//! (docs/operations.md, "Limits across slots").
use super::*;
use crate::store::sql::limits::limit_from;
use ::redis::ScriptInvocation;
use codec::format::limit_head;
use scripts::HITS;

impl RedisStore {
    /// One counted limit on its own (`HITS` with one key: one slot, so also on a Cluster).
    async fn hit_one(&self, check: &LimitCheck, now: Millis) -> StoreResult<Limit> {
        let mut call = HITS.prepare();
        call.arg(now);
        self.push_limit(&mut call, check, now);
        let (refused, reset_at): (i64, i64) = self.invoke(&call).await?;
        Ok(limit_answer(refused, reset_at, now))
    }

    /// A limit's key and its four arguments, as `limits_lua` reads them.
    pub(super) fn push_limit(&self, call: &mut ScriptInvocation<'_>, c: &LimitCheck, now: Millis) {
        call.key(self.keys.limit(&c.key)).arg(c.limit);
        if c.count {
            call.arg(now.saturating_add(window_ms(c.window)));
        } else {
            call.arg("");
        }
        match &c.spacing {
            Some(s) if c.count => call.arg(s.name).arg(now.saturating_add(window_ms(s.gap))),
            _ => call.arg("").arg(""),
        };
    }

    async fn peek_one(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        let raw: Option<String> = self
            .query(::redis::cmd("GET").arg(self.keys.limit(key)), Resend::Safe)
            .await?;
        let Some(raw) = raw else {
            return Ok(Limit::Allowed);
        };
        let (count, reset_at) = limit_head(&raw).ok_or_else(|| corrupt("limit"))?;
        Ok(if reset_at > now {
            // At the limit already: one more would be refused.
            limit_from(count + 1, reset_at, limit, now)
        } else {
            Limit::Allowed
        })
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        let check = LimitCheck::hit(key, limit, window);
        bounded(self.op_timeout, self.hit_one(&check, now)).await
    }

    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        bounded(self.op_timeout, self.peek_one(key, limit, now)).await
    }

    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit> {
        if checks.is_empty() {
            return Ok(Limit::Allowed);
        }
        if self.is_cluster() {
            // The limit keys of one request lie in different slots, where one script cannot
            // reach (docs/operations.md, "Limits across slots"): the same checks one by one, in
            // order, stopping at the first refusal. Same answers and counts as `HITS`, but not
            // atomic: a concurrent request may count between two checks (the counters stay
            // exact, a limit may let one more in at its edge), and a failure midway leaves the
            // earlier hits counted.
            return bounded(self.op_timeout, async {
                for c in checks {
                    let verdict = if c.count {
                        self.hit_one(c, now).await?
                    } else {
                        self.peek_one(&c.key, c.limit, now).await?
                    };
                    if verdict != Limit::Allowed {
                        return Ok(verdict);
                    }
                }
                Ok(Limit::Allowed)
            })
            .await;
        }
        let mut call = HITS.prepare();
        call.arg(now);
        for c in checks {
            self.push_limit(&mut call, c, now);
        }
        let (refused, reset_at): (i64, i64) = bounded(self.op_timeout, self.invoke(&call)).await?;
        Ok(limit_answer(refused, reset_at, now))
    }
}

/// What `HITS` and `CODE_REQUEST` answer: {0, 0}, or the refusing limit's position and its
/// window's end. A position above 0 refuses as a count above a ceiling of 0 does.
pub(super) fn limit_answer(refused: i64, reset_at: i64, now: Millis) -> Limit {
    limit_from(refused, reset_at, 0, now)
}

fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2)
}
