//! The PostgreSQL store: users and the outbox, and sessions, codes and limits when there is no
//! Redis, shared by any number of mailcode instances. It is the one SQL store
//! ([`super::store::SqlStore`]) on the PostgreSQL dialect ([`Pg`]); this file opens its pool.
use sqlx::postgres::{PgConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;

use super::postgres::Pg;
use super::Dialect;
use crate::store::{StoreError, StoreResult};

pub type PostgresStore = super::store::SqlStore<Pg>;

/// How long a statement waits for a row lock; our transactions hold locks for milliseconds, so
/// a longer wait is a stuck client elsewhere: it becomes a retry, then a 503.
const LOCK_TIMEOUT: &str = "1000ms";

/// Connects to `url` (`postgres://` or `postgresql://USER:PASS@HOST:PORT/DB`, with
/// `?sslmode=disable|prefer|require|verify-ca|verify-full` as libpq reads it) and applies the
/// migrations. `acquire_timeout` bounds getting a connection, connecting included.
pub(super) async fn connect(url: &str, acquire_timeout: Duration) -> StoreResult<PgPool> {
    // The parser's message names the part it refused, never the password.
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Internal(format!("bad PostgreSQL URL: {e}")))?
        .options([("lock_timeout", LOCK_TIMEOUT)]);
    let pool = super::server_pool(acquire_timeout)
        .connect_with(opts)
        .await
        .map_err(Pg::classify)?;
    // sqlx takes an advisory lock around the migrations: instances starting together apply
    // them once.
    let migrated = sqlx::migrate!("migrations/postgres").run(&pool).await;
    migrated.map_err(super::migration_failed::<Pg>)?;
    Ok(pool)
}
