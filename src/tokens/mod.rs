//! Access tokens for the application's services that verify locally (SPEC §6): short-lived ES256
//! JWTs, and the key set (`/.well-known/jwks.json`) they are verified with.
//!
//! Every instance of a deployment signs with the same key: generation numbers come from the
//! store, keys from the server secret ([`keys`]). Each instance reads the generations again at
//! most every [`REFRESH_MS`], so a rotation made anywhere (`mailcode keys rotate`) signs
//! everywhere within that time; the generation after the newest is published ahead, so a
//! verifier that cached the key set before a rotation already knows the new key.
pub mod keys;
mod signer;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Header};
use rand::RngCore;
use serde::Serialize;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::clock::Millis;
use crate::crypto::Secret;
use crate::domain::{SessionRecord, SessionUser, UserId};
use crate::store::{SigningKeyRecord, StoreError};
use keys::{KeyError, SigningKey};

/// How long an instance signs with the key generations it read before reading them again.
pub const REFRESH_MS: Millis = 10_000;

/// How long a rotated-out key stays published beyond the lifetime of the tokens it signed: the
/// other instances' [`REFRESH_MS`] (they may sign with it that long after the rotation) and a
/// minute for clocks that disagree.
const RETIRE_MARGIN_MS: Millis = REFRESH_MS + 60_000;

/// What the settings say about access tokens (SPEC §6, `--public-url`, `--token-audience`,
/// `--access-token-ttl`).
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The `iss` of every token; `None` until the listening address is known (the default).
    pub issuer: Option<String>,
    /// The `aud`; `None`: the issuer.
    pub audience: Option<String>,
    pub ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot sign an access token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The keys an instance signs and publishes with, as read at `loaded_at`.
pub struct KeyRing {
    loaded_at: Millis,
    signing: Arc<SigningKey>,
    keys: Vec<Arc<SigningKey>>,
    /// `/.well-known/jwks.json`, written once per reading.
    jwks: String,
}

impl KeyRing {
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }
}

/// A minted access token and how many seconds it lives.
pub struct Minted {
    pub access_token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("access_token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The claims of SPEC §6.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: UserId,
    sid: &'a str,
    email: &'a str,
    preferred_username: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

pub struct AccessTokens {
    settings: TokenSettings,
    /// The issuer when the settings name none: this instance's own address, once listening.
    default_issuer: OnceLock<String>,
    secret: Secret,
    store: Arc<dyn SigningKeyRecord>,
    ring: RwLock<Option<Arc<KeyRing>>>,
    /// One reading of the generations at a time; the others use the ring they have.
    reading: tokio::sync::Mutex<()>,
}

impl AccessTokens {
    pub fn new(settings: TokenSettings, secret: Secret, store: Arc<dyn SigningKeyRecord>) -> Self {
        // Before any key is made: jsonwebtoken fixes its provider at first use.
        signer::install();
        AccessTokens {
            settings,
            default_issuer: OnceLock::new(),
            secret,
            store,
            ring: RwLock::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// Names this instance's address as the issuer, unless the settings name one.
    pub fn listening_at(&self, origin: String) {
        let _ = self.default_issuer.set(origin);
    }

    /// The `iss` of the tokens, the base of `jwks_uri`.
    pub fn issuer(&self) -> &str {
        self.settings
            .issuer
            .as_deref()
            .or_else(|| self.default_issuer.get().map(String::as_str))
            .unwrap_or("http://127.0.0.1:3000")
    }

    pub fn audience(&self) -> &str {
        self.settings
            .audience
            .as_deref()
            .unwrap_or_else(|| self.issuer())
    }

    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    fn current(&self) -> Option<Arc<KeyRing>> {
        self.ring.read().ok().and_then(|r| r.clone())
    }

    /// The keys to sign and publish with, read again when older than [`REFRESH_MS`]. A store
    /// that fails then leaves the ring as it was (its keys are still the deployment's): only
    /// an instance that never read one fails.
    pub async fn ring(&self, now: Millis) -> Result<Arc<KeyRing>, TokenError> {
        let fresh = |r: &Arc<KeyRing>| now - r.loaded_at < REFRESH_MS;
        let current = self.current();
        if let Some(r) = current.as_ref().filter(|r| fresh(r)) {
            return Ok(r.clone());
        }
        let _reading = match (self.reading.try_lock(), &current) {
            (Ok(guard), _) => guard,
            // Another request is reading them: the ring at hand will do meanwhile.
            (Err(_), Some(r)) => return Ok(r.clone()),
            (Err(_), None) => self.reading.lock().await,
        };
        if let Some(r) = self.current().filter(fresh) {
            return Ok(r);
        }
        match self.read(now, current.as_deref()).await {
            Ok(ring) => {
                let ring = Arc::new(ring);
                if let Ok(mut slot) = self.ring.write() {
                    *slot = Some(ring.clone());
                }
                Ok(ring)
            }
            Err(e) => match current {
                Some(r) => {
                    tracing::warn!(error = %e, "cannot read the signing keys; signing with the ones read before");
                    Ok(r)
                }
                None => Err(e),
            },
        }
    }

    async fn read(&self, now: Millis, before: Option<&KeyRing>) -> Result<KeyRing, TokenError> {
        let generations = self.store.key_generations(now).await?;
        let newest = generations.iter().map(|g| g.generation).max().unwrap_or(1);
        let mut wanted: Vec<i64> = generations
            .iter()
            .filter(|g| g.retires_at.is_none_or(|t| t > now))
            .map(|g| g.generation)
            .collect();
        wanted.push(newest + 1);
        let mut keys = Vec::with_capacity(wanted.len());
        for g in wanted {
            let known = before.and_then(|r| r.keys.iter().find(|k| k.generation == g).cloned());
            keys.push(match known {
                Some(k) => k,
                None => Arc::new(SigningKey::derive(&self.secret, g)?),
            });
        }
        let signing = keys
            .iter()
            .find(|k| k.generation == newest)
            .cloned()
            .ok_or_else(|| {
                StoreError::Internal(format!("signing key generation {newest} is not live"))
            })?;
        let set = JwkSet {
            keys: keys.iter().map(|k| k.public.clone()).collect(),
        };
        let jwks = serde_json::to_string(&set)
            .map_err(|e| StoreError::Internal(format!("key set: {e}")))?;
        Ok(KeyRing {
            loaded_at: now,
            signing,
            keys,
            jwks,
        })
    }

    /// An access token for the signed-in `user` of `session` (SPEC §6 claims).
    pub async fn mint(
        &self,
        session: &SessionRecord,
        user: &SessionUser,
        user_id: UserId,
        now: Millis,
    ) -> Result<Minted, TokenError> {
        let ring = self.ring(now).await?;
        let iat = now.div_euclid(1000);
        let ttl = self.settings.ttl.as_secs();
        let mut jti = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut jti);
        let claims = Claims {
            iss: self.issuer(),
            aud: self.audience(),
            sub: user_id,
            sid: session.key.as_str(),
            email: &user.email,
            preferred_username: &user.username,
            iat,
            exp: iat + i64::try_from(ttl).unwrap_or(3600),
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(ring.signing.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &ring.signing.encoding)?;
        Ok(Minted {
            access_token,
            expires_in: ttl,
        })
    }

    /// Starts a new signing key (`mailcode keys rotate`); the one before stays published until
    /// the last token it signed has expired. Answers the new generation and when the old one
    /// retires.
    pub async fn rotate(&self, now: Millis) -> Result<(i64, Millis), TokenError> {
        let ttl = Millis::try_from(self.settings.ttl.as_millis()).unwrap_or(3_600_000);
        let retire_at = now + ttl + RETIRE_MARGIN_MS;
        let new = self.store.rotate_keys(now, retire_at).await?;
        Ok((new.generation, retire_at))
    }
}
