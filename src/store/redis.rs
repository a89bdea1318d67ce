//! Redis backend for sessions, codes, attempt counters and rate limits (production).
//! (Being written: see issue 3.)
use async_trait::async_trait;
use std::time::Duration;

use super::*;

#[derive(Clone)]
pub struct RedisStore {
    _prefix: String,
}

impl RedisStore {
    /// Connects to `url` (redis://, rediss://, redis+sentinel://…); every key starts with `prefix`.
    pub async fn connect(_url: &str, prefix: &str, _op_timeout: Duration) -> StoreResult<Self> {
        Err(StoreError::Unavailable(format!(
            "the Redis backend is not built yet (prefix {prefix})"
        )))
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(&self, _s: &SessionRecord) -> StoreResult<()> {
        unimplemented!()
    }
    async fn load_session(
        &self,
        _key: &SessionKey,
        _now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        unimplemented!()
    }
    async fn touch_session(
        &self,
        _key: &SessionKey,
        _now: Millis,
        _idle: Millis,
    ) -> StoreResult<()> {
        unimplemented!()
    }
    async fn delete_session(&self, _key: &SessionKey) -> StoreResult<bool> {
        unimplemented!()
    }
    async fn list_user_sessions(
        &self,
        _user_id: i64,
        _now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        unimplemented!()
    }
    async fn revoke_user_sessions(
        &self,
        _user_id: i64,
        _except: Option<&SessionKey>,
    ) -> StoreResult<u64> {
        unimplemented!()
    }
    async fn issue_code(&self, _code: &CodeRecord) -> StoreResult<()> {
        unimplemented!()
    }
    async fn check_code(
        &self,
        _s: &SessionKey,
        _p: CodePurpose,
        _e: &Email,
        _m: &str,
        _n: Millis,
        _max: u32,
    ) -> StoreResult<CodeCheck> {
        unimplemented!()
    }
    async fn redeem_code(
        &self,
        _s: &SessionKey,
        _p: CodePurpose,
        _e: &Email,
        _m: &str,
        _n: Millis,
        _max: u32,
        _a: Redeem,
    ) -> StoreResult<Redeemed> {
        unimplemented!()
    }
    async fn current_code(&self, _s: &SessionKey, _now: Millis) -> StoreResult<Option<CodeRecord>> {
        unimplemented!()
    }
    async fn hit_limit(
        &self,
        _key: &str,
        _limit: u32,
        _window: Duration,
        _now: Millis,
    ) -> StoreResult<Limit> {
        unimplemented!()
    }
    async fn peek_limit(&self, _key: &str, _limit: u32, _now: Millis) -> StoreResult<Limit> {
        unimplemented!()
    }
    async fn ping(&self) -> StoreResult<()> {
        unimplemented!()
    }
}
