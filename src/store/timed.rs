//! Store latency metrics (STYLE §8): every store call is timed into the histogram
//! `mailcode_store_duration_seconds{op}`, whatever the backend. A thin wrapper, so backends stay
//! free of metrics code.
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// Wraps a store and times each call.
pub struct Timed<T: ?Sized>(pub Arc<T>);

/// Times `$fut` into the histogram of `$op`, whose handle is registered once per call site.
macro_rules! time {
    ($op:literal, $fut:expr $(,)?) => {{
        static H: std::sync::OnceLock<metrics::Histogram> = std::sync::OnceLock::new();
        let h = H.get_or_init(|| {
            crate::metrics::handle();
            metrics::histogram!(crate::metrics::STORE_DURATION, "op" => $op)
        });
        let started = Instant::now();
        let out = $fut.await;
        h.record(started.elapsed().as_secs_f64());
        out
    }};
}

#[async_trait]
impl SessionStore for Timed<dyn SessionStore> {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        time!("create_session", self.0.create_session(s))
    }
    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        time!("load_session", self.0.load_session(key, now))
    }
    async fn touch_session(&self, key: &SessionKey, now: Millis, idle: Millis) -> StoreResult<()> {
        time!("touch_session", self.0.touch_session(key, now, idle))
    }
    async fn delete_session(&self, key: &SessionKey, events: &[OutgoingMail]) -> StoreResult<bool> {
        time!("delete_session", self.0.delete_session(key, events))
    }
    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        time!(
            "list_user_sessions",
            self.0.list_user_sessions(user_id, now),
        )
    }
    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
        events: &[OutgoingMail],
    ) -> StoreResult<u64> {
        time!(
            "revoke_user_sessions",
            self.0.revoke_user_sessions(user_id, except, events),
        )
    }
}

// As the trait: every part of the code's binding.
#[allow(clippy::too_many_arguments)]
#[async_trait]
impl CodeStore for Timed<dyn CodeStore> {
    async fn issue_code(&self, code: &CodeRecord) -> StoreResult<()> {
        time!("issue_code", self.0.issue_code(code))
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
        time!(
            "check_code",
            self.0
                .check_code(session, purpose, email, mac, now, max_attempts),
        )
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
        time!(
            "redeem_code",
            self.0
                .redeem_code(session, purpose, email, mac, now, max_attempts, action),
        )
    }
    async fn current_code(
        &self,
        session: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<CodeRecord>> {
        time!("current_code", self.0.current_code(session, now))
    }
}

#[async_trait]
impl LimitStore for Timed<dyn LimitStore> {
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        time!("hit_limit", self.0.hit_limit(key, limit, window, now))
    }
    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        time!("peek_limit", self.0.peek_limit(key, limit, now))
    }
    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit> {
        time!("hit_limits", self.0.hit_limits(checks, now))
    }
}

#[async_trait]
impl UserStore for Timed<dyn UserStore> {
    async fn create_user(&self, u: &NewUser) -> Result<i64, CreateUserError> {
        time!("create_user", self.0.create_user(u))
    }
    async fn delete_user(&self, id: i64) -> StoreResult<()> {
        time!("delete_user", self.0.delete_user(id))
    }
    async fn find_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        time!("find_user_by_id", self.0.find_by_id(id))
    }
    async fn find_by_username(&self, keys: &[String]) -> StoreResult<Option<User>> {
        time!("find_by_username", self.0.find_by_username(keys))
    }
    async fn find_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        time!("find_by_email", self.0.find_by_email(email))
    }
    async fn set_password(&self, id: i64, hash: &str) -> StoreResult<()> {
        time!("set_password", self.0.set_password(id, hash))
    }
    async fn set_disabled(&self, id: i64, disabled: bool) -> StoreResult<()> {
        time!("set_disabled", self.0.set_disabled(id, disabled))
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        time!("list_users", self.0.list_users())
    }
}

#[async_trait]
impl Outbox for Timed<dyn Outbox> {
    async fn enqueue(&self, mail: &OutgoingMail) -> StoreResult<()> {
        time!("enqueue_mail", self.0.enqueue(mail))
    }
    async fn claim_due(
        &self,
        now: Millis,
        lease_until: Millis,
        max: u32,
    ) -> StoreResult<Vec<QueuedMail>> {
        time!("claim_mail", self.0.claim_due(now, lease_until, max))
    }
    async fn mark_sent(&self, mails: &[QueuedMail], now: Millis) -> StoreResult<()> {
        time!("mark_mail_sent", self.0.mark_sent(mails, now))
    }
    async fn mark_retry(
        &self,
        mail: &QueuedMail,
        next_attempt_at: Millis,
        error: &str,
    ) -> StoreResult<()> {
        time!(
            "mark_mail_retry",
            self.0.mark_retry(mail, next_attempt_at, error)
        )
    }
    async fn mark_failed(&self, mail: &QueuedMail, error: &str) -> StoreResult<()> {
        time!("mark_mail_failed", self.0.mark_failed(mail, error))
    }
    async fn delivery(&self, code: &CodeRecord) -> StoreResult<Option<Delivery>> {
        time!("mail_delivery", self.0.delivery(code))
    }
    async fn next_due(&self) -> StoreResult<Option<Millis>> {
        time!("next_mail_due", self.0.next_due())
    }
}

/// A store's ping, timed as `ping_<what>` (`ping_sessions`, `ping_users`). Not a hot path: the
/// histogram is looked up per call.
pub struct TimedPing {
    pub what: &'static str,
    pub store: Arc<dyn Health>,
}

#[async_trait]
impl Health for TimedPing {
    async fn ping(&self) -> StoreResult<()> {
        let started = Instant::now();
        let out = self.store.ping().await;
        metrics::histogram!(crate::metrics::STORE_DURATION, "op" => format!("ping_{}", self.what))
            .record(started.elapsed().as_secs_f64());
        out
    }
}

#[async_trait]
impl CodeRequestWrites for Timed<dyn CodeRequestWrites> {
    async fn issue_code_and_mail(
        &self,
        limits: &[LimitCheck],
        now: Millis,
        new_session: Option<&SessionRecord>,
        code: &CodeRecord,
        mail: &OutgoingMail,
    ) -> StoreResult<Limit> {
        time!(
            "issue_code_and_mail",
            self.0
                .issue_code_and_mail(limits, now, new_session, code, mail)
        )
    }
}
