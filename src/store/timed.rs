//! Store latency metrics (STYLE §8): every store call is timed into the histogram
//! `mailcode_store_duration_seconds{op}`, whatever the backend. A thin wrapper, so backends stay
//! free of metrics code.
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// Wraps a store and times each call.
pub struct Timed<T: ?Sized>(pub Arc<T>);

async fn time<R>(op: &'static str, fut: impl std::future::Future<Output = R>) -> R {
    let started = Instant::now();
    let out = fut.await;
    metrics::histogram!(crate::metrics::STORE_DURATION, "op" => op)
        .record(started.elapsed().as_secs_f64());
    out
}

#[async_trait]
impl SessionStore for Timed<dyn SessionStore> {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        time("create_session", self.0.create_session(s)).await
    }
    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        time("load_session", self.0.load_session(key, now)).await
    }
    async fn touch_session(&self, key: &SessionKey, now: Millis, idle: Millis) -> StoreResult<()> {
        time("touch_session", self.0.touch_session(key, now, idle)).await
    }
    async fn delete_session(&self, key: &SessionKey) -> StoreResult<bool> {
        time("delete_session", self.0.delete_session(key)).await
    }
    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        time(
            "list_user_sessions",
            self.0.list_user_sessions(user_id, now),
        )
        .await
    }
    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
    ) -> StoreResult<u64> {
        time(
            "revoke_user_sessions",
            self.0.revoke_user_sessions(user_id, except),
        )
        .await
    }
    async fn issue_code(&self, code: &CodeRecord) -> StoreResult<()> {
        time("issue_code", self.0.issue_code(code)).await
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
        time(
            "check_code",
            self.0
                .check_code(session, purpose, email, mac, now, max_attempts),
        )
        .await
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
        time(
            "redeem_code",
            self.0
                .redeem_code(session, purpose, email, mac, now, max_attempts, action),
        )
        .await
    }
    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        time("current_code", self.0.current_code(session, now)).await
    }
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        time("hit_limit", self.0.hit_limit(key, limit, window, now)).await
    }
    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        time("peek_limit", self.0.peek_limit(key, limit, now)).await
    }
    async fn ping(&self) -> StoreResult<()> {
        time("ping_sessions", self.0.ping()).await
    }
}

#[async_trait]
impl UserStore for Timed<dyn UserStore> {
    async fn create_user(&self, u: &NewUser) -> Result<i64, CreateUserError> {
        time("create_user", self.0.create_user(u)).await
    }
    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        time("delete_user", self.0.delete_user(id)).await
    }
    async fn find_by_username(&self, username_key: &str) -> StoreResult<Option<User>> {
        time("find_by_username", self.0.find_by_username(username_key)).await
    }
    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        time("find_by_email", self.0.find_by_email(email)).await
    }
    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()> {
        time("set_password", self.0.set_password(id, hash)).await
    }
    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()> {
        time("set_disabled", self.0.set_disabled(id, disabled)).await
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        time("list_users", self.0.list_users()).await
    }
    async fn ping(&self) -> StoreResult<()> {
        time("ping_users", self.0.ping()).await
    }
}
