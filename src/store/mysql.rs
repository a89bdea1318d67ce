//! MySQL/MariaDB backend: users, the mail queue, and sessions when there is no Redis.
//! (Being written: see issue 3.)
use async_trait::async_trait;
use std::time::Duration;

use super::*;

#[derive(Clone)]
pub struct MySqlStore {
    _private: (),
}

impl MySqlStore {
    /// Connects to `url` (mysql://…) and applies the migrations.
    pub async fn open(_url: &str, _acquire_timeout: Duration) -> StoreResult<Self> {
        Err(StoreError::Unavailable(format!(
            "the MySQL backend is not built yet"
        )))
    }
}

#[async_trait]
impl SessionStore for MySqlStore {
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

impl MySqlStore {
    /// Deletes what has expired (sessions, codes, limits, old mails).
    pub async fn sweep(&self, _now: Millis) -> StoreResult<()> {
        unimplemented!()
    }
}

#[async_trait]
impl UserStore for MySqlStore {
    async fn create_user(&self, _u: &NewUser) -> Result<i64, CreateUserError> {
        unimplemented!()
    }
    async fn delete_user(&self, _id: i64) -> StoreResult<()> {
        unimplemented!()
    }
    async fn find_by_username(&self, _k: &str) -> StoreResult<Option<User>> {
        unimplemented!()
    }
    async fn find_by_email(&self, _e: &Email) -> StoreResult<Option<User>> {
        unimplemented!()
    }
    async fn set_password(&self, _id: i64, _h: &str) -> StoreResult<()> {
        unimplemented!()
    }
    async fn set_disabled(&self, _id: i64, _d: bool) -> StoreResult<()> {
        unimplemented!()
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        unimplemented!()
    }
    async fn ping(&self) -> StoreResult<()> {
        unimplemented!()
    }
}

#[async_trait]
impl MailQueue for MySqlStore {
    async fn enqueue(&self, _m: &OutgoingMail) -> StoreResult<()> {
        unimplemented!()
    }
    async fn claim_due(
        &self,
        _now: Millis,
        _lease: Millis,
        _max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        unimplemented!()
    }
    async fn mark_sent(&self, _id: i64, _now: Millis) -> StoreResult<()> {
        unimplemented!()
    }
    async fn mark_retry(&self, _id: i64, _next: Millis, _e: &str) -> StoreResult<()> {
        unimplemented!()
    }
    async fn mark_failed(&self, _id: i64, _e: &str) -> StoreResult<()> {
        unimplemented!()
    }
    async fn delivery(&self, _r: &str) -> StoreResult<Option<Delivery>> {
        unimplemented!()
    }
    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        unimplemented!()
    }
}
