//! The deployment's record of its secret's fingerprint (docs/operations.md, "One secret per
//! deployment").
use async_trait::async_trait;

use super::StoreResult;

/// The deployment's record of its server secret: a fingerprint, never the secret
/// ([`crate::deployment`]; docs/operations.md, "One secret per deployment"). It lives where the
/// state bound to the secret lives (codes and queued mail, keyed and sealed with it): Redis when
/// it holds them, else the SQL database. One record per deployment (per Redis key prefix).
#[async_trait]
pub trait SecretRecord: Send + Sync {
    /// Records `fingerprint` unless one is recorded already, in one atomic step, so that of
    /// instances starting at once with different secrets exactly one records its own. Answers
    /// what was recorded before: `None` when nothing was, and `fingerprint` is now.
    async fn record_if_absent(&self, fingerprint: &str) -> StoreResult<Option<String>>;
    /// Records `fingerprint` whatever was recorded (`mailcode secret rotate`); answers the one
    /// it replaced.
    async fn replace(&self, fingerprint: &str) -> StoreResult<Option<String>>;
    /// The recorded fingerprint, without recording anything.
    async fn recorded(&self) -> StoreResult<Option<String>>;
}
