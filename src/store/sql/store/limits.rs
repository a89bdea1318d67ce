//! [`LimitStore`] on every SQL dialect, around the shared rules (`sql/limits.rs`).
use async_trait::async_trait;
use std::time::Duration;

use super::SqlStore;
use crate::clock::Millis;
use crate::store::sql::{limits, Dialect};
use crate::store::{Limit, LimitCheck, LimitStore, StoreResult};

#[async_trait]
impl<D: Dialect> LimitStore for SqlStore<D> {
    async fn hit_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<Limit> {
        self.run(|| async move {
            if D::SQL.limits.read_counter.is_none() {
                let mut conn = D::write(&self.pools).await?;
                return limits::count_hit::<D>(&mut conn, key, limit, window, now).await;
            }
            // The count is read back by a second statement: in the transaction that holds the
            // counted row locked, so it reads exactly what this hit made of it.
            let mut tx = D::begin(&self.pools).await?;
            let verdict = limits::count_hit::<D>(&mut tx, key, limit, window, now).await?;
            tx.commit().await?;
            Ok(verdict)
        })
        .await
    }

    async fn peek_limit(&self, key: &str, limit: u32, now: Millis) -> StoreResult<Limit> {
        self.run(|| async move {
            let mut conn = D::read(&self.pools).await?;
            limits::read_limit::<D>(&mut conn, key, limit, now).await
        })
        .await
    }

    async fn hit_limits(&self, checks: &[LimitCheck], now: Millis) -> StoreResult<Limit> {
        // One transaction: each counted row stays locked until the commit, and a lost lock race
        // runs the whole transaction again (nothing of a rolled-back try was counted).
        self.run(|| async move {
            let mut tx = D::begin(&self.pools).await?;
            let verdict = limits::hit_limits::<D>(&mut tx, checks, now).await?;
            // Committed refused or not: the hits counted up to the refusal stay counted.
            tx.commit().await?;
            Ok(verdict)
        })
        .await
    }
}
