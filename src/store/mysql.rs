//! The MySQL/MariaDB backend: users and the mail queue, and sessions, codes and limits when there
//! is no Redis. It exists so that several mailcode instances can share one database; it must
//! behave exactly like the SQLite reference, which the shared store suite checks. It is the one
//! SQL store ([`SqlStore`]) on the MySQL dialect ([`My`]); this file opens its pool.
//!
//! What it must not do: read the server's clock (`NOW()`, `CURRENT_TIMESTAMP`), split an atomic
//! operation across transactions (each locks the rows it decides on, `SELECT … FOR UPDATE`, and
//! mail is leased with `FOR UPDATE SKIP LOCKED`), hang when the server is gone: see
//! [`SqlStore`].
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Executor, MySqlPool};
use std::str::FromStr;
use std::time::Duration;

use super::sql::{mysql::My, store::SqlStore, Dialect};
use super::{StoreError, StoreResult};

pub type MySqlStore = SqlStore<My>;

/// Seconds a statement waits for a row lock; our transactions hold locks for milliseconds.
const LOCK_WAIT_SECS: u32 = 1;

/// Connects to `url` (`mysql://` or `mariadb://USER:PASS@HOST:PORT/DB`) and applies the
/// migrations. `acquire_timeout` bounds getting a connection, connecting included: a server
/// that is down or hung costs at most that long.
pub(crate) async fn connect(url: &str, acquire_timeout: Duration) -> StoreResult<MySqlPool> {
    let opts = MySqlConnectOptions::from_str(url)
        .map_err(|e| StoreError::Internal(format!("bad MySQL URL: {e}")))?;
    let pool = super::sql::server_pool(acquire_timeout)
        .after_connect(|conn, _| Box::pin(async move { prepare_session(conn).await }))
        .connect_with(opts)
        .await
        .map_err(My::classify)?;
    let migrated = sqlx::migrate!("migrations/mysql").run(&pool).await;
    migrated.map_err(super::sql::migration_failed::<My>)?;
    Ok(pool)
}

/// Per-connection settings: strict mode (too long a value is an error, never silently cut) and
/// short lock waits (a stuck lock becomes a retry, then a 503, not a hung request).
async fn prepare_session(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    conn.execute(
        format!(
            "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_TRANS_TABLES'), \
             SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECS}"
        )
        .as_str(),
    )
    .await?;
    Ok(())
}
