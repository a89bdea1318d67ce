//! The Redis backend for sessions, codes, rate limits and the mail queue: the data read on
//! every request lives in memory, with a TTL on every key; users stay in SQL. Same semantics
//! as the SQL stores (`store/sql/`), checked by the same suite (`tests/store_suite`). The keys,
//! their records and TTLs, the sign-in protocol that spans Cluster slots and how limits run on a Cluster are
//! described for operators in docs/operations.md, "Redis: keys and records"; the record format
//! itself is defined once, in `codec/format.rs`, for the Rust codec and the Lua scripts alike.
//!
//! Restarts: every connection speaks RESP3, so one that Redis closes is replaced as soon as its
//! reader sees the end of the stream; a read or an idempotent write that meets it anyway is sent
//! once more, a counting or consuming one is not ([`Resend`]; docs/operations.md, "Failure
//! behaviour").
//!
//! Must not: store a raw session id or a code (only [`SessionKey`]s and HMACs reach here);
//! decide expiry by Redis' clock (every decision compares stored instants with the caller's
//! `now`, TTLs only collect garbage, never shorter than 1 s); take more than `op_timeout` per
//! operation (then `Unavailable`: 503, and the connection manager reconnects by itself, or the
//! next operation asks the sentinels again); `unwrap` anything read from Redis (corrupt data is
//! `Internal`).

mod code_request;
mod codec;
mod codes;
mod limits;
mod outbox;
mod per_thread;
mod scripts;
mod secret;
mod sentinel;
mod sessions;
mod topology;

use per_thread::PerThread;
pub use sentinel::{parse_sentinel_url, SentinelUrl};
use topology::{Conn, Resend};

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use super::*;
pub use codec::{format, tag as session_tag, Keys};

/// The shortest TTL ever set, so that a key logically dead already still vanishes soon.
const MIN_TTL_MS: i64 = 1_000;
/// Codes outlive their expiry by an hour, so that a late submission reads `Expired`, not
/// `Missing` (as SQLite's sweep keeps them).
const CODE_GRACE_MS: i64 = 3_600_000;

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// Plain Redis only: HTTP threads' own connections (`per_thread.rs`).
    per_thread: Option<Arc<PerThread>>,
    keys: Arc<Keys>,
    op_timeout: Duration,
    /// This handle's outbox serves webhook deliveries ([`RedisStore::webhook_outbox`]), not
    /// mail.
    webhooks: bool,
}

#[async_trait]
impl Health for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        bounded(
            self.op_timeout,
            self.query::<String>(&::redis::cmd("PING"), Resend::Safe),
        )
        .await
        .map(drop)
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt {what} record in Redis"))
}

/// Never a TTL that is negative or so short that a key dies while still being written.
fn ttl(ms: i64) -> i64 {
    ms.max(MIN_TTL_MS)
}
