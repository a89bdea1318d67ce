//! ES256 signatures through `ring` rather than the pure-Rust P-256 of jsonwebtoken's RustCrypto
//! backend: minting a token was three quarters one P-256 signature, 156–206 µs there against
//! 18–45 µs with `ring`, already in the tree for TLS (docs/benchmarks.md, finding 7). Installed
//! as jsonwebtoken's process-wide crypto provider, which keeps the RustCrypto backend for
//! everything else (verifying, JWK components); encoding the token stays jsonwebtoken's.
use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtSigner};
use jsonwebtoken::{Algorithm, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

/// Key pairs parsed from their PKCS#8 document, per thread: parsing checks the public key
/// against the private one (a scalar multiplication), which would cost as much as a signature
/// if done for every token. An instance signs with one key, two around a rotation.
const CACHED: usize = 4;

thread_local! {
    static PAIRS: RefCell<Vec<(Vec<u8>, Arc<EcdsaKeyPair>)>> = const { RefCell::new(Vec::new()) };
}

fn rng() -> &'static SystemRandom {
    static RNG: OnceLock<SystemRandom> = OnceLock::new();
    RNG.get_or_init(SystemRandom::new)
}

fn pair_for(der: &[u8]) -> Option<Arc<EcdsaKeyPair>> {
    PAIRS.with(|pairs| {
        let mut pairs = pairs.borrow_mut();
        if let Some((_, p)) = pairs.iter().find(|(d, _)| d == der) {
            return Some(p.clone());
        }
        let pair =
            Arc::new(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, rng()).ok()?);
        if pairs.len() >= CACHED {
            pairs.remove(0);
        }
        pairs.push((der.to_vec(), pair.clone()));
        Some(pair)
    })
}

/// One signature: `r || s`, 64 bytes, as JWS wants it (RFC 7518 §3.4).
struct RingEs256(Arc<EcdsaKeyPair>);

impl signature::Signer<Vec<u8>> for RingEs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.0
            .sign(rng(), msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for RingEs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *alg == Algorithm::ES256 {
        if let Some(pair) = pair_for(key.as_bytes()) {
            return Ok(Box::new(RingEs256(pair)));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key)
}

/// Installs the provider, before jsonwebtoken is first used; later calls change nothing. In a
/// process where jsonwebtoken was used first, the RustCrypto default stays: slower, the same
/// tokens.
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        signer_factory: signer,
        ..rust_crypto::DEFAULT_PROVIDER.clone()
    });
    let _ = provider.install_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey;

    #[test]
    fn a_ring_signature_verifies_with_the_rustcrypto_verifier() {
        let private = p256::SecretKey::from_slice(&[7u8; 32]).expect("scalar");
        let der = private.to_pkcs8_der().expect("der");
        let key = EncodingKey::from_ec_der(der.as_bytes());
        let s = signer(&Algorithm::ES256, &key).expect("signer");
        let sig = signature::Signer::try_sign(&*s, b"header.claims").expect("sign");
        assert_eq!(sig.len(), 64);
        assert!(
            pair_for(der.as_bytes()).is_some(),
            "ring reads the PKCS#8 document"
        );
        let public = private.public_key();
        let verifying = p256::ecdsa::VerifyingKey::from(&public);
        let sig = p256::ecdsa::Signature::from_slice(&sig).expect("r||s");
        assert!(signature::Verifier::verify(&verifying, b"header.claims", &sig).is_ok());
    }
}
