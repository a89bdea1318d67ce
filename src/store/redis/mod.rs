//! The Redis backend for sessions, codes, rate limits and the mail queue: the data read on
//! every request lives in memory, with a TTL on every key; users stay in SQL. Same semantics as
//! `sqlite.rs`, checked by the same suite (`tests/store_suite`). The keys, their records and
//! TTLs, the sign-in protocol that spans Cluster slots and how limits run on a Cluster are
//! described for operators in docs/operations.md, "Redis: keys and records"; the record format
//! itself is defined once, in `codec/format.rs`, for the Rust codec and the Lua scripts alike.
//!
//! Restarts: every connection speaks RESP3, so one that Redis closes is replaced as soon as its
//! reader sees the end of the stream; a read or an idempotent write that meets it anyway is sent
//! once more, a counting or consuming one is not ([`Resend`]; docs/operations.md, "Failure
//! behaviour").
//!
//! Must not: store a raw session id or a code (only [`SessionKey`]s and HMACs reach here);
//! decide expiry by Redis' clock (every decision compares stored instants with the caller's
//! `now`, TTLs only collect garbage, never shorter than 1 s); take more than `op_timeout` per
//! operation (then `Unavailable`: 503, and the connection manager reconnects by itself, or the
//! next operation asks the sentinels again); `unwrap` anything read from Redis (corrupt data is
//! `Internal`).

mod code_desk;
mod codec;
mod mail;
mod per_thread;
mod scripts;
mod topology;

use per_thread::PerThread;
pub use topology::{parse_sentinel_url, SentinelUrl};
use topology::{Conn, Resend};

use ::redis::{ScriptInvocation, Value};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::*;
use codec::format::{limit_head, PENDING, SEP};
use codec::{
    codes_in, decode_code, decode_session, encode_code, encode_session, encode_session_with_code,
    from_index_member, index_member, stored_user, tag,
};
pub use codec::{format, tag as session_tag, Keys};
use scripts::{Lua, ACTIVATE, CHECK, CODE_PUT, DELETE, HITS, INDEX_ADD, REDEEM, TOUCH};

/// The shortest TTL ever set, so that a key logically dead already still vanishes soon.
const MIN_TTL_MS: i64 = 1_000;
/// Codes outlive their expiry by an hour, so that a late submission reads `Expired`, not
/// `Missing` (as SQLite's sweep keeps them).
const CODE_GRACE_MS: i64 = 3_600_000;

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// Plain Redis only: HTTP threads' own connections (`per_thread.rs`).
    per_thread: Option<Arc<PerThread>>,
    keys: Arc<Keys>,
    op_timeout: Duration,
}

impl RedisStore {
    /// Enters a session in its user's index and stretches the index's TTL to the latest
    /// absolute expiry in it.
    async fn index_add(&self, user_id: i64, s: &SessionRecord, now: Millis) -> StoreResult<()> {
        let mut call = INDEX_ADD.prepare();
        call.key(self.keys.index(user_id))
            .arg(index_score(s.absolute_expires_at))
            .arg(index_member(&s.key))
            .arg(now);
        self.invoke::<i64>(&call).await.map(drop)
    }

    async fn index_remove(&self, user_id: i64, keys: &[&SessionKey]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let members: Vec<Vec<u8>> = keys.iter().map(|k| index_member(k)).collect();
        self.query::<i64>(
            ::redis::cmd("ZREM")
                .arg(self.keys.index(user_id))
                .arg(members),
            Resend::Safe,
        )
        .await
        .map(drop)
    }

    /// Deletes a session and its codes (in its record); returns the record that was there.
    async fn delete_one(&self, key: &SessionKey) -> StoreResult<Option<String>> {
        let mut call = DELETE.prepare();
        call.key(self.keys.session(key));
        self.invoke(&call).await
    }

    /// A stored record as the caller may see it: active, or pending and committed by its marker
    /// (then activated now, the step its sign-in could not finish).
    async fn accept(&self, key: &SessionKey, raw: &str) -> StoreResult<Option<SessionRecord>> {
        let Some(rest) = raw.strip_prefix(PENDING) else {
            return decode_session(key, raw).map(Some);
        };
        let (old, active) = rest.split_once(SEP).ok_or_else(|| corrupt("session"))?;
        let record = decode_session(key, active)?;
        let marker: Option<String> = self
            .query(
                ::redis::cmd("GET").arg(self.keys.marker_of_tag(old)),
                Resend::Safe,
            )
            .await?;
        if marker != Some(tag(key)) {
            return Ok(None);
        }
        self.activate(key).await?;
        Ok(Some(record))
    }

    /// Rewrites a pending record as active (a script: codes put into it meanwhile stay),
    /// unless the session was deleted meanwhile.
    async fn activate(&self, key: &SessionKey) -> StoreResult<bool> {
        let mut call = ACTIVATE.prepare();
        call.key(self.keys.session(key));
        Ok(self.invoke::<i64>(&call).await? == 1)
    }

    async fn load(&self, key: &SessionKey, now: Millis) -> StoreResult<Option<SessionRecord>> {
        let raw: Option<String> = self
            .query(
                ::redis::cmd("GET").arg(self.keys.session(key)),
                Resend::Safe,
            )
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        Ok(self.accept(key, &raw).await?.filter(|s| s.is_live(now)))
    }

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

    async fn create(&self, s: &SessionRecord) -> StoreResult<()> {
        let record = encode_session(s)?;
        self.query::<Value>(
            ::redis::cmd("SET")
                .arg(self.keys.session(&s.key))
                .arg(record)
                .arg("PX")
                .arg(ttl(s.expires_at() - s.last_seen_at)),
            Resend::Safe,
        )
        .await?;
        // Record first, index second: a key listed in an index but missing in Redis is gone
        // for good, so listing may prune it. The id is handed out only once both are written.
        if let Some(u) = &s.user {
            if let Err(e) = self.index_add(u.id, s, s.last_seen_at).await {
                let _ = self.delete_one(&s.key).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let Some(raw) = self.delete_one(key).await? else {
            return Ok(false);
        };
        // The index entry would be pruned when listing anyway; a failure here changes nothing.
        if let Some(u) = stored_user(key, &raw) {
            if let Err(e) = self.index_remove(u, &[key]).await {
                tracing::debug!("session index not pruned: {e}");
            }
        }
        Ok(true)
    }

    async fn list(&self, user_id: i64, now: Millis) -> StoreResult<Vec<SessionRecord>> {
        let index = self.keys.index(user_id);
        // Scores are whole seconds rounded up: an entry at or below `now` in seconds rounded
        // down has ended (one in the current second may have too: `is_live` decides below).
        let now_s = now.div_euclid(1000);
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now_s)
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(&index)
            .arg(format!("({now_s}"))
            .arg("+inf");
        let pipe = &pipe;
        let (members,): (Vec<Vec<u8>>,) = self
            .send(Resend::Safe, |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let keys = members
            .iter()
            .map(|m| from_index_member(m))
            .collect::<StoreResult<Vec<_>>>()?;
        let names: Vec<String> = keys.iter().map(|k| self.keys.session(k)).collect();
        let raws: Vec<Option<String>> = if self.is_cluster() {
            // Each session has its own tag, so its own slot: one GET each, sent together.
            let gets = names.iter().map(|n| async move {
                self.query::<Option<String>>(::redis::cmd("GET").arg(n), Resend::Safe)
                    .await
            });
            futures::future::join_all(gets)
                .await
                .into_iter()
                .collect::<StoreResult<_>>()?
        } else {
            self.query(::redis::cmd("MGET").arg(names), Resend::Safe)
                .await?
        };
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (key, raw) in keys.iter().zip(raws) {
            match raw {
                None => gone.push(key),
                Some(raw) => {
                    if let Some(s) = self.accept(key, &raw).await? {
                        let mine = s.user.as_ref().is_some_and(|u| u.id == user_id);
                        if mine && s.is_live(now) {
                            live.push(s);
                        }
                    }
                }
            }
        }
        self.index_remove(user_id, &gone).await?;
        live.sort_by(|a, b| (a.created_at, a.key.as_str()).cmp(&(b.created_at, b.key.as_str())));
        Ok(live)
    }

    async fn revoke(&self, user_id: i64, except: Option<&SessionKey>) -> StoreResult<u64> {
        let members: Vec<Vec<u8>> = self
            .query(
                ::redis::cmd("ZRANGE")
                    .arg(self.keys.index(user_id))
                    .arg(0)
                    .arg(-1),
                Resend::Safe,
            )
            .await?;
        let except = except.map(index_member);
        let targets = members
            .iter()
            .filter(|m| Some(m.as_slice()) != except.as_deref())
            .map(|m| from_index_member(m))
            .collect::<StoreResult<Vec<_>>>()?;
        // One script per session (each in its own slot), sent together on the one connection.
        let deleted = futures::future::join_all(targets.iter().map(|k| self.delete_one(k))).await;
        let mut ended = 0;
        for d in deleted {
            ended += u64::from(d?.is_some());
        }
        let targets: Vec<&SessionKey> = targets.iter().collect();
        self.index_remove(user_id, &targets).await?;
        Ok(ended)
    }

    async fn judge(
        &self,
        script: &Lua,
        session: &SessionKey,
        purpose: CodePurpose,
        submitted: (&Email, &str, Millis, u32),
        action: (&str, Option<&SessionKey>, i64),
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
        let (verdict, attempts): (i64, i64) = self.invoke(&call).await?;
        let attempts = u32::try_from(attempts).map_err(|_| corrupt("code"))?;
        Ok((verdict, attempts))
    }

    #[allow(clippy::too_many_arguments)]
    async fn redeem(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        mac: &str,
        now: Millis,
        max: u32,
        action: Redeem,
        deadline: Instant,
    ) -> StoreResult<Redeemed> {
        let submitted = (email, mac, now, max);
        let new = match action {
            Redeem::UseAttempt => {
                let (verdict, attempts) = self
                    .judge(&REDEEM, session, purpose, submitted, ("attempt", None, 0))
                    .await?;
                return match verdict {
                    0 => Ok(Redeemed::Gone),
                    1 => Ok(Redeemed::AttemptUsed {
                        attempts_left: max.saturating_sub(attempts),
                    }),
                    _ => Err(corrupt("redeem answer")),
                };
            }
            Redeem::SignIn { new } => new,
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

    /// One counted limit on its own (`HITS` with one key: one slot, so also on a Cluster).
    async fn hit_one(&self, check: &LimitCheck, now: Millis) -> StoreResult<Limit> {
        let mut call = HITS.prepare();
        call.arg(now);
        self.push_limit(&mut call, check, now);
        let (refused, reset_at): (i64, i64) = self.invoke(&call).await?;
        Ok(limit_answer(refused, reset_at, now))
    }

    /// A limit's key and its four arguments, as `limits_lua` reads them.
    fn push_limit(&self, call: &mut ScriptInvocation<'_>, c: &LimitCheck, now: Millis) {
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

/// `Pdeployment:secret`, one key without TTL (a slot of its own on a Cluster). `SET … NX GET`
/// (Redis 7.0, which `connect` requires) records and answers what was there in one command.
/// Without persistence a restarted Redis has forgotten it: the next check (`/readyz`) records
/// it again, and an instance whose secret differs from the one recorded then says so.
#[async_trait]
impl SecretRecord for RedisStore {
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.deployment_secret())
            .arg(fingerprint)
            .arg("NX")
            .arg("GET")
            .to_owned();
        // Sent twice, the second answers the fingerprint the first recorded: the same verdict.
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }

    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("SET")
            .arg(self.keys.deployment_secret())
            .arg(fingerprint)
            .arg("GET")
            .to_owned();
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }

    async fn recorded(&self) -> StoreResult<Option<String>> {
        let cmd = ::redis::cmd("GET")
            .arg(self.keys.deployment_secret())
            .to_owned();
        bounded(self.op_timeout, self.query(&cmd, Resend::Safe)).await
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        bounded(self.op_timeout, self.create(s)).await
    }

    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        bounded(self.op_timeout, self.load(key, now)).await
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        now: Millis,
        idle_expires_at: Millis,
    ) -> StoreResult<()> {
        // A script, never a plain SET: a session deleted meanwhile stays deleted.
        let mut call = TOUCH.prepare();
        call.key(self.keys.session(key))
            .arg(now)
            .arg(idle_expires_at);
        bounded(self.op_timeout, self.invoke::<i64>(&call))
            .await
            .map(drop)
    }

    async fn delete_session(&self, key: &SessionKey) -> StoreResult<bool> {
        bounded(self.op_timeout, self.delete(key)).await
    }

    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        bounded(self.op_timeout, self.list(user_id, now)).await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
    ) -> StoreResult<u64> {
        bounded(self.op_timeout, self.revoke(user_id, except)).await
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
            self.judge(&CHECK, session, purpose, submitted, ("check", None, 0)),
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
        let deadline = Instant::now() + self.op_timeout;
        let redeem = self.redeem(
            session,
            purpose,
            email,
            mac,
            now,
            max_attempts,
            action,
            deadline,
        );
        match tokio::time::timeout_at(deadline, redeem).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable("timed out".into())),
        }
    }

    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        bounded(self.op_timeout, self.current(session, now)).await
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
            // reach (docs/operations.md, "Limits across slots"): the same checks one by one, in order, stopping at
            // the first refusal. Same answers and counts as `HITS`, but not atomic: a concurrent
            // request may count between two checks (the counters stay exact, a limit may let
            // one more in at its edge), and a failure midway leaves the earlier hits counted.
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

#[async_trait]
impl Health for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        bounded(
            self.op_timeout,
            self.query::<String>(&::redis::cmd("PING"), Resend::Safe),
        )
        .await
        .map(drop)
    }
}

/// A session's score in its user's index: its absolute expiry in whole seconds, rounded up (a
/// number of seconds takes 4 bytes less than one of milliseconds in the index's listpack).
fn index_score(absolute_expires_at: Millis) -> i64 {
    absolute_expires_at.div_euclid(1000) + i64::from(absolute_expires_at.rem_euclid(1000) != 0)
}

/// What `HITS` and `CODE_REQUEST` answer: {0, 0}, or the refusing limit's position and its
/// window's end.
fn limit_answer(refused: i64, reset_at: i64, now: Millis) -> Limit {
    if refused > 0 {
        Limit::Limited {
            retry_after_ms: (reset_at - now).max(1),
        }
    } else {
        Limit::Allowed
    }
}

fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2)
}

fn limit_from(count: i64, reset_at: i64, limit: u32, now: Millis) -> Limit {
    if count > i64::from(limit) {
        Limit::Limited {
            retry_after_ms: (reset_at - now).max(1),
        }
    } else {
        Limit::Allowed
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt {what} record in Redis"))
}

/// Never a TTL that is negative or so short that a key dies while still being written.
fn ttl(ms: i64) -> i64 {
    ms.max(MIN_TTL_MS)
}
