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

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy: Arc<String>,
}

impl Hasher {
    /// `concurrency` bounds how many hashes run at once (each holds 19 MiB).
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        let params =
            Params::new(19 * 1024, 2, 1, None).map_err(|e| HashError::Failed(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut OsRng);
        let dummy = argon
            .hash_password(b"mailcode dummy password for unknown users", &salt)
            .map_err(|e| HashError::Failed(e.to_string()))?
            .to_string();
        Ok(Hasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::new(dummy),
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
            argon
                .hash_password(pw.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError::Failed(e.to_string()))
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
        let hash = stored
            .map(str::to_owned)
            .unwrap_or_else(|| self.dummy.as_ref().clone());
        let pw = password.expose().to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            // Verify with the parameters stored in the hash itself (they may be stronger).
            Argon2::default()
                .verify_password(pw.as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?;
        Ok(known && ok)
    }
}
