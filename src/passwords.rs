//! Password hashing with argon2id (SPEC §3 Accounts: 19 MiB, 2 iterations, 1 lane), run on the
//! blocking pool behind a semaphore so that a burst of sign-ins cannot starve the async threads
//! or exhaust memory. An unknown user is verified against a dummy hash so that it costs the same.
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::domain::Password;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// What an unknown user's password is verified against: a hash of a random password nobody
/// knows, with the production parameters, so it costs what a real verification costs. A constant
/// rather than computed at start: that would allocate 19 MiB before the first request.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$joQPToSD7F0oavR4sMHCOQ$EGdRs5o3eOWkr1gmhwqhxxfDmGXRH8Ln7/C00KJqPYE";

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
}

/// Gives the memory of the hash that just ran on this thread back to the OS. With mimalloc as
/// the binary's allocator, the freed 19 MiB block would otherwise stay with the blocking thread
/// that used it (docs/benchmarks.md, finding 4); elsewhere this touches only mimalloc's own,
/// unused heap.
fn release_hash_memory() {
    // SAFETY: mi_collect has no preconditions; it only frees memory that is free already.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

impl Hasher {
    /// `concurrency` bounds how many hashes run at once (each holds 19 MiB).
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        let params =
            Params::new(19 * 1024, 2, 1, None).map_err(|e| HashError::Failed(e.to_string()))?;
        Ok(Hasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        })
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let argon = self.argon();
        let pw = password.expose().to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            let hashed = argon
                .hash_password(pw.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Failed(e.to_string()));
            release_hash_memory();
            hashed
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no user, so
    /// that both cost one full argon2id computation.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<bool, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let known = stored.is_some();
        let hash = stored.unwrap_or(DUMMY_HASH).to_owned();
        let pw = password.expose().to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            // Verify with the parameters stored in the hash itself (they may be stronger).
            let ok = Argon2::default()
                .verify_password(pw.as_bytes(), &parsed)
                .is_ok();
            release_hash_memory();
            ok
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?;
        Ok(known && ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_uses_the_production_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("a PHC string");
        let params = Params::try_from(&parsed).expect("argon2 parameters");
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (19 * 1024, 2, 1)
        );
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
