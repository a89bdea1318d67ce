//! Which access-token signing keys a deployment has (SPEC §6): generations, never a key.
use async_trait::async_trait;

use super::StoreResult;
use crate::clock::Millis;

/// One signing key's generation. The key itself is derived from the server secret and the
/// generation number (`crate::tokens::keys`), so the store holds nothing secret and every
/// instance with the deployment's secret signs with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGeneration {
    pub generation: i64,
    pub created_at: Millis,
    /// When the last token this key signed has expired: from then on it is no longer
    /// published. `None` while it is the newest (the one that signs).
    pub retires_at: Option<Millis>,
}

/// The deployment's signing-key generations, in the users' SQL database (shared by every
/// instance, kept across restarts).
#[async_trait]
pub trait SigningKeyRecord: Send + Sync {
    /// Every generation, oldest first; the first one is made (at `now`) when there is none, so
    /// the list is never empty.
    async fn key_generations(&self, now: Millis) -> StoreResult<Vec<KeyGeneration>>;
    /// Starts the next generation at `now` and retires the ones before it at `retire_at`
    /// (`mailcode keys rotate`); answers the new one.
    async fn rotate_keys(&self, now: Millis, retire_at: Millis) -> StoreResult<KeyGeneration>;
}
