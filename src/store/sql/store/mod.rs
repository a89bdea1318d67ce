//! The one SQL store, generic over its [`Dialect`]: every store trait implemented once, one file
//! per trait, on the shared rules (`sql/codes.rs`, `limits.rs`, `sessions.rs`, …) and the
//! dialect's statements. SQLite, MySQL/MariaDB and PostgreSQL differ only in what their dialect
//! says: the SQL text, how connections are had (SQLite: one writer, a read pool and its batchers,
//! docs/benchmarks.md; a server: one pool), how due deliveries are claimed, how expired rows are
//! swept, which unique index a refused account names.
//!
//! What it must not do: read the server's clock (every decision comes from stored values and the
//! `now` the caller passes); split an atomic operation of the store traits across transactions
//! (each is one transaction locking the rows it decides on where the database locks rows; SQLite
//! serves one writer at a time); hang when a server is gone (every operation on a server is
//! bounded by [`super::run`] and the pool's acquire timeout, and the pool reconnects by itself);
//! trust what it reads (rows are decoded with errors, never `unwrap`).
mod codes;
mod keys;
mod limits;
mod outbox;
mod sessions;
mod users;

use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Dialect, Val};
use crate::clock::Millis;
use crate::store::{Health, StoreResult, KIND_MAIL, KIND_WEBHOOK};

pub struct SqlStore<D: Dialect> {
    pools: Arc<D::Pools>,
    /// Upper bound of one store operation, lock retries included (SPEC §3: 503 within 2 s),
    /// where the dialect bounds them ([`Dialect::BOUNDED`]).
    op_timeout: Duration,
    /// Which deliveries of the outbox this handle serves ([`KIND_MAIL`], or [`KIND_WEBHOOK`]
    /// for [`SqlStore::webhook_outbox`]).
    kind: &'static str,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            pools: self.pools.clone(),
            op_timeout: self.op_timeout,
            kind: self.kind,
        }
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Connects to `url` (the dialect says which URLs it takes), applies the migrations, then
    /// brings the accounts up to this version: username keys of an older rule recomputed
    /// (`store::rekey`), user ids given to accounts older than them (SPEC §6). `acquire_timeout`
    /// bounds getting a connection, connecting included, and each store operation.
    pub async fn open(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let pools = D::connect(url, acquire_timeout).await?;
        let err = D::classify;
        let stale = {
            let mut conn = D::write(&pools).await.map_err(err)?;
            super::users::stale_keys::<D>(&mut conn)
                .await
                .map_err(err)?
        };
        if stale {
            let mut tx = D::begin(&pools).await.map_err(err)?;
            let plan = super::users::rekey_usernames::<D>(&mut tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            crate::store::rekey::log(&plan);
        }
        let mut conn = D::write(&pools).await.map_err(err)?;
        super::users::assign_user_ids::<D>(&mut conn)
            .await
            .map_err(err)?;
        drop(conn);
        Ok(SqlStore {
            pools: Arc::new(pools),
            op_timeout: acquire_timeout,
            kind: KIND_MAIL,
        })
    }

    /// The same store, its outbox handle serving webhook deliveries (SPEC §7).
    pub fn webhook_outbox(&self) -> Self {
        SqlStore {
            kind: KIND_WEBHOOK,
            ..self.clone()
        }
    }

    /// The dialect's connections, for what only that dialect does with them.
    pub fn pools(&self) -> &D::Pools {
        &self.pools
    }

    /// Deletes what has expired (sessions, codes, limits, old deliveries: given-up webhooks stay
    /// a week for `mailcode webhooks failed`, docs/operations.md); run now and then by the app.
    /// As the dialect says ([`super::Sweep`]): in batches of their own, or in one transaction.
    pub async fn sweep(&self, now: Millis) -> StoreResult<()> {
        let sweep = D::SQL.sweep;
        let args = [Val::Int(now)];
        let args = &args;
        let Some(batch) = sweep.batch else {
            return self
                .run(|| async move {
                    let mut tx = D::begin(&self.pools).await?;
                    for stmt in sweep.statements {
                        D::execute(&mut tx, *stmt, args).await?;
                    }
                    tx.commit().await
                })
                .await;
        };
        for stmt in sweep.statements {
            loop {
                let deleted = self
                    .run(|| async move {
                        let mut conn = D::write(&self.pools).await?;
                        D::execute(&mut conn, *stmt, args).await
                    })
                    .await?;
                if deleted < batch {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Runs `op` (one transaction, or one statement): within the operation deadline and again
    /// when it lost a lock race ([`super::run`]) where the dialect bounds operations, else once.
    async fn run<T, F, Fut>(&self, mut op: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        if D::BOUNDED {
            super::run::<D, T, F, Fut>(self.op_timeout, op).await
        } else {
            op().await.map_err(D::classify)
        }
    }

    /// Runs one statement on a write connection; answers how many rows it changed.
    async fn write(&self, stmt: super::Stmt, args: &[Val<'_>]) -> StoreResult<u64> {
        self.run(|| async move {
            let mut conn = D::write(&self.pools).await?;
            D::execute(&mut conn, stmt, args).await
        })
        .await
    }

    /// The row one statement finds on a read connection, mapped by `map`.
    async fn read_one<T: Send>(
        &self,
        stmt: super::Stmt,
        args: &[Val<'_>],
        map: impl Fn(&D::Row) -> Result<T, sqlx::Error> + Send + Sync,
    ) -> StoreResult<Option<T>> {
        let map = &map;
        self.run(|| async move {
            let mut conn = D::read(&self.pools).await?;
            let row = D::fetch_optional(&mut conn, stmt, args).await?;
            row.as_ref().map(map).transpose()
        })
        .await
    }

    /// The rows one statement finds on a read connection, mapped by `map`.
    async fn read_all<T: Send>(
        &self,
        stmt: super::Stmt,
        args: &[Val<'_>],
        map: impl Fn(&D::Row) -> Result<T, sqlx::Error> + Send + Sync,
    ) -> StoreResult<Vec<T>> {
        let map = &map;
        self.run(|| async move {
            let mut conn = D::read(&self.pools).await?;
            let rows = D::fetch_all(&mut conn, stmt, args).await?;
            rows.iter().map(map).collect()
        })
        .await
    }
}

#[async_trait]
impl<D: Dialect> Health for SqlStore<D> {
    async fn ping(&self) -> StoreResult<()> {
        self.write(D::SQL.ping, &[]).await.map(drop)
    }
}
