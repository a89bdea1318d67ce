//! The signing keys of access tokens (SPEC §6), derived from the server secret.
//!
//! A key is never stored: generation `g`'s P-256 private key is an HMAC of the server secret and
//! `g` ([`Secret::derive`]), so every instance with the deployment's secret makes the same key
//! from the generation number the store hands it (`store::SigningKeyRecord`), and a dump of the
//! store holds nothing to sign with. Rotating the server secret rotates every key with it.
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::pkcs8::EncodePrivateKey;

use crate::crypto::Secret;

/// One generation's key: what signs, and what is published.
pub struct SigningKey {
    pub generation: i64,
    /// The JWK thumbprint (RFC 7638) of the public key: the `kid` of the tokens it signs.
    pub kid: String,
    pub encoding: EncodingKey,
    /// The public key, with `kid`, `alg` and `use`, as `/.well-known/jwks.json` lists it.
    pub public: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("generation", &self.generation)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot make signing key {generation}: {problem}")]
pub struct KeyError {
    generation: i64,
    problem: String,
}

impl SigningKey {
    /// Generation `generation`'s key under `secret`: the same on every instance.
    pub fn derive(secret: &Secret, generation: i64) -> Result<SigningKey, KeyError> {
        let problem = |problem: String| KeyError {
            generation,
            problem,
        };
        // An HMAC output is a valid P-256 scalar but for a chance of about 2^-32 (zero or at
        // least the group order); the counter then picks the next candidate, the same on every
        // instance.
        let private = (0u8..=255)
            .find_map(|attempt| {
                let mut label = b"mailcode access-token signing key v1 ".to_vec();
                label.extend_from_slice(&generation.to_be_bytes());
                label.push(attempt);
                p256::SecretKey::from_slice(&secret.derive(&label)).ok()
            })
            .ok_or_else(|| problem("no valid scalar".into()))?;
        let der = private.to_pkcs8_der().map_err(|e| problem(e.to_string()))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let mut public = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|e| problem(e.to_string()))?;
        let kid = public
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| problem(e.to_string()))?;
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(SigningKey {
            generation,
            kid,
            encoding,
            public,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_makes_the_same_key_from_the_same_secret_only() {
        let secret = Secret::from_bytes([7; 32]);
        let a = SigningKey::derive(&secret, 1).expect("key");
        let again = SigningKey::derive(&secret, 1).expect("key");
        let next = SigningKey::derive(&secret, 2).expect("key");
        let other = SigningKey::derive(&Secret::from_bytes([8; 32]), 1).expect("key");
        assert_eq!(a.kid, again.kid);
        assert_eq!(a.public, again.public);
        assert_ne!(a.kid, next.kid);
        assert_ne!(a.kid, other.kid);
        assert_eq!(a.kid.len(), 43, "a SHA-256 thumbprint in base64url");
        let json = serde_json::to_value(&a.public).expect("JSON");
        assert_eq!(json["kty"], "EC");
        assert_eq!(json["crv"], "P-256");
        assert_eq!(json["alg"], "ES256");
        assert_eq!(json["use"], "sig");
        assert!(json.get("d").is_none(), "no private part is published");
        assert!(!format!("{a:?}").contains("encoding"));
    }
}
