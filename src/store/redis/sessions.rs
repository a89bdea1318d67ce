//! Sessions on Redis (`SessionStore`): one record per session, its codes kept in it, and a
//! sorted set per user indexing that user's sessions by absolute expiry. The keys and records:
//! docs/operations.md, "Redis: keys and records".
use super::*;
use ::redis::Value;
use codec::format::{PENDING, SEP};
use codec::{decode_session, encode_session, from_index_member, index_member, stored_user, tag};
use scripts::{ACTIVATE, DELETE, INDEX_ADD, TOUCH};

impl RedisStore {
    /// Enters a session in its user's index and stretches the index's TTL to the latest
    /// absolute expiry in it.
    pub(super) async fn index_add(
        &self,
        user_id: i64,
        s: &SessionRecord,
        now: Millis,
    ) -> StoreResult<()> {
        let mut call = INDEX_ADD.prepare();
        call.key(self.keys.index(user_id))
            .arg(index_score(s.absolute_expires_at))
            .arg(index_member(&s.key))
            .arg(now);
        self.invoke::<i64>(&call).await.map(drop)
    }

    pub(super) async fn index_remove(&self, user_id: i64, keys: &[&SessionKey]) -> StoreResult<()> {
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

    /// Deletes a session and its codes (in its record), and queues `events` when it existed
    /// (in the same script where the topology allows); returns the record that was there.
    async fn delete_one(
        &self,
        key: &SessionKey,
        events: &[OutgoingMail],
    ) -> StoreResult<Option<String>> {
        let entries = Self::event_entries(events)?;
        let together = self.events_in_script() && !entries.is_empty();
        let mut call = DELETE.prepare();
        call.key(self.keys.session(key));
        if together {
            call.key(self.keys.hook_new());
            for e in &entries {
                call.arg(e);
            }
        }
        let was: Option<String> = self.invoke(&call).await?;
        if was.is_some() && !together {
            self.push_events(&entries).await?;
        }
        Ok(was)
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
    pub(super) async fn activate(&self, key: &SessionKey) -> StoreResult<bool> {
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
                let _ = self.delete_one(&s.key, &[]).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &SessionKey, events: &[OutgoingMail]) -> StoreResult<bool> {
        let Some(raw) = self.delete_one(key, events).await? else {
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

    /// Each session ends in its own script (each in its own slot); the events follow once
    /// they all have ended.
    async fn revoke(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
        events: &[OutgoingMail],
    ) -> StoreResult<u64> {
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
        let deleted =
            futures::future::join_all(targets.iter().map(|k| self.delete_one(k, &[]))).await;
        let mut ended = 0;
        for d in deleted {
            ended += u64::from(d?.is_some());
        }
        let targets: Vec<&SessionKey> = targets.iter().collect();
        self.index_remove(user_id, &targets).await?;
        self.push_events(&Self::event_entries(events)?).await?;
        Ok(ended)
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

    async fn delete_session(&self, key: &SessionKey, events: &[OutgoingMail]) -> StoreResult<bool> {
        bounded(self.op_timeout, self.delete(key, events)).await
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
        events: &[OutgoingMail],
    ) -> StoreResult<u64> {
        bounded(self.op_timeout, self.revoke(user_id, except, events)).await
    }
}

/// A session's score in its user's index: its absolute expiry in whole seconds, rounded up (a
/// number of seconds takes 4 bytes less than one of milliseconds in the index's listpack).
fn index_score(absolute_expires_at: Millis) -> i64 {
    absolute_expires_at.div_euclid(1000) + i64::from(absolute_expires_at.rem_euclid(1000) != 0)
}
