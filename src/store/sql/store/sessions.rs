//! [`SessionStore`] on every SQL dialect. On SQLite `load_session` reads on the read pool and
//! `touch_session` is one UPDATE on the writer: GET /api/me's whole cost (docs/benchmarks.md).
use async_trait::async_trait;

use super::SqlStore;
use crate::clock::Millis;
use crate::domain::{SessionKey, SessionRecord};
use crate::store::sql::{outbox, sessions, Dialect, Val};
use crate::store::{OutgoingMail, SessionStore, StoreResult};

#[async_trait]
impl<D: Dialect> SessionStore for SqlStore<D> {
    async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        self.run(|| async move {
            let mut conn = D::write(&self.pools).await?;
            sessions::insert::<D>(&mut conn, s).await
        })
        .await
    }

    async fn load_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> StoreResult<Option<SessionRecord>> {
        let found = self
            .read_one(D::SQL.sessions.load, &[Val::Text(key.as_str())], |r| {
                sessions::from_row(r)
            })
            .await?;
        Ok(found.filter(|s| s.is_live(now)))
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        now: Millis,
        idle_expires_at: Millis,
    ) -> StoreResult<()> {
        let args = [
            Val::Int(now),
            Val::Int(idle_expires_at),
            Val::Text(key.as_str()),
        ];
        self.write(D::SQL.sessions.touch, &args).await.map(drop)
    }

    async fn delete_session(&self, key: &SessionKey, events: &[OutgoingMail]) -> StoreResult<bool> {
        self.run(|| async move {
            let mut tx = D::begin(&self.pools).await?;
            let existed = sessions::end::<D>(&mut tx, key, events).await?;
            tx.commit().await?;
            Ok(existed)
        })
        .await
    }

    async fn list_user_sessions(
        &self,
        user_id: i64,
        now: Millis,
    ) -> StoreResult<Vec<SessionRecord>> {
        let args = [Val::Int(user_id), Val::Int(now)];
        self.read_all(D::SQL.sessions.of_user, &args, sessions::from_row)
            .await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&SessionKey>,
        events: &[OutgoingMail],
    ) -> StoreResult<u64> {
        let except = except.map(|k| k.as_str()).unwrap_or("");
        let args = [Val::Int(user_id), Val::Text(except)];
        let args = &args;
        self.run(|| async move {
            let mut tx = D::begin(&self.pools).await?;
            D::execute(&mut tx, D::SQL.sessions.revoke_codes, args).await?;
            let n = D::execute(&mut tx, D::SQL.sessions.revoke, args).await?;
            outbox::insert_events::<D>(&mut tx, events).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }
}
