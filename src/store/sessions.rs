//! What a session store does (SPEC §3 Sessions).
use async_trait::async_trait;

use super::{OutgoingMail, StoreResult};
use crate::clock::Millis;
use crate::domain::{SessionKey, SessionRecord};

/// Sessions (SPEC §3 Sessions): records by key, and the index of a user's sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()>;
    /// The live session with this key, if any. Expired sessions are not returned.
    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>>;
    /// Records activity; never recreates a session that was deleted meanwhile.
    async fn touch_session(
        &self,
        key: &SessionKey,
        now: Millis,
        idle_expires_at: Millis,
    ) -> StoreResult<()>;
    /// Deletes one session and its codes; true when it existed. `events` (webhook deliveries
    /// reporting the end, SPEC §7) are queued in the same step, only when it existed.
    async fn delete_session(&self, key: &SessionKey, events: &[OutgoingMail]) -> StoreResult<bool>;
    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>>;
    /// Ends every session of a user (but `except`); returns how many ended. `events` are
    /// queued in the same step (SPEC §7: the change and its events, or neither).
    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
        events: &[OutgoingMail],
    ) -> StoreResult<u64>;
}
