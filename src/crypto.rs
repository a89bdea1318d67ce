//! The server secret and the few primitives built on it: random session ids, their store keys,
//! one-time codes and the keyed hash codes are stored as (SPEC §3 Codes and Sessions).
//!
//! Nothing here logs or prints a secret value.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use ring::aead;
use sha2::{Digest, Sha256};
use std::path::Path;

use crate::domain::{CodePurpose, Email, OneTimeCode, SessionId, SessionKey};

/// 32 random bytes, generated on first run and kept in a 0600 file.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the secret file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the secret file {path} does not hold 64 hexadecimal characters: copy the secret file of the deployment's other instances here; or delete it to generate a new one, then run `mailcode secret rotate` (codes not yet entered and mail still queued stop working)")]
    Malformed { path: String },
}

impl Secret {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Secret(bytes)
    }

    pub fn random() -> Self {
        let mut b = [0u8; 32];
        OsRng.fill_bytes(&mut b);
        Secret(b)
    }

    /// Loads the secret, or creates it (mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|_| SecretError::Malformed {
                    path: path.display().to_string(),
                })?;
                let arr: [u8; 32] = bytes.try_into().map_err(|_| SecretError::Malformed {
                    path: path.display().to_string(),
                })?;
                Ok(Secret(arr))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(io)?;
                    }
                }
                let secret = Secret::random();
                write_private(path, hex::encode(secret.0).as_bytes()).map_err(io)?;
                Ok(secret)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// HMAC-SHA256 of a code together with everything it is bound to (SPEC §3 Codes: stored
    /// only as a keyed hash; bound to session, email and purpose).
    pub fn code_mac(
        &self,
        session: &SessionKey,
        purpose: CodePurpose,
        email: &Email,
        code: &OneTimeCode,
    ) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        for part in [
            session.as_str(),
            purpose.as_str(),
            email.as_str(),
            code.as_str(),
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\x1f");
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

impl Secret {
    /// What instances compare to learn whether they hold the same secret, without showing it
    /// (`crate::deployment`): HMAC-SHA256 of a fixed label keyed with the secret, its first 8
    /// bytes as 16 hex digits. An HMAC output tells nothing about its key, and 64 bits make two
    /// different secrets with the same fingerprint a one-in-2^64 accident.
    pub fn fingerprint(&self) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(b"mailcode deployment secret fingerprint v1");
        to_hex(&mac.finalize().into_bytes()[..8])
    }

    /// 32 bytes derived from the secret for one purpose named by `label` (HMAC-SHA256 as a PRF):
    /// the access tokens' signing keys (`crate::tokens`). Another label, an unrelated key.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// The key that seals queued mail, derived from the secret (see [`MailSeal`]).
    pub fn mail_seal(&self) -> MailSeal {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(b"mailcode mail seal v1");
        let key = mac.finalize().into_bytes();
        MailSeal(std::sync::Arc::new(aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &key)
                .expect("a 32-byte key fits ChaCha20-Poly1305"),
        )))
    }
}

/// Seals a queued mail's order (`mail::templates::MailOrder`), which carries the code in clear, while it waits in a store
/// (SPEC §3 Codes: stored only as a keyed hash; a dump of the database or of Redis must not
/// hand out live codes). ChaCha20-Poly1305 with a key derived from the server secret and a
/// random 96-bit nonce per seal; a sealed text is base64url of nonce, ciphertext and tag.
#[derive(Clone)]
pub struct MailSeal(std::sync::Arc<aead::LessSafeKey>);

#[derive(Debug, thiserror::Error)]
#[error("a queued mail cannot be opened: it was sealed with another secret or altered")]
pub struct Unsealable;

impl MailSeal {
    pub fn seal(&self, clear: &str) -> String {
        let mut nonce = [0u8; aead::NONCE_LEN];
        csprng().fill_bytes(&mut nonce);
        let mut buf = clear.as_bytes().to_vec();
        // Fails only for a message over 256 GiB.
        if self
            .0
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::empty(),
                &mut buf,
            )
            .is_err()
        {
            buf.clear();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<String, Unsealable> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| Unsealable)?;
        if raw.len() < aead::NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
            return Err(Unsealable);
        }
        let (nonce, body) = raw.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut body = body.to_vec();
        let clear = self
            .0
            .open_in_place(nonce, aead::Aad::empty(), &mut body)
            .map_err(|_| Unsealable)?;
        String::from_utf8(clear.to_vec()).map_err(|_| Unsealable)
    }
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The CSPRNG of session ids, codes and nonces: `rand`'s thread-local ChaCha12 generator, seeded
/// from the operating system's CSPRNG and reseeded from it every 64 KiB of output. Not
/// `OsRng` itself: that is one `getrandom` system call per draw, three per code request
/// (docs/benchmarks.md, workload 2), where this draws from memory. The server secret still comes from
/// `OsRng` directly.
fn csprng() -> rand::rngs::ThreadRng {
    rand::thread_rng()
}

/// A new session id: 256 bits from the CSPRNG (SPEC §3: at least 128).
pub fn new_session_id() -> SessionId {
    let mut b = [0u8; 32];
    csprng().fill_bytes(&mut b);
    SessionId::from_random(&b)
}

/// The store key of a session: SHA-256 of its id, so a dump of the store hands out no session.
pub fn session_key(id: &SessionId) -> SessionKey {
    SessionKey::from_hex(to_hex(&Sha256::digest(id.as_str().as_bytes())))
}

/// Six decimal digits, uniform, from the CSPRNG.
pub fn new_code() -> OneTimeCode {
    let n: u32 = csprng().gen_range(0..1_000_000);
    OneTimeCode::from_number(n)
}

/// Lower-case hex by table lookup: on every request (session keys, request ids), where the
/// `hex` crate's char iterator showed up in profiles.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    put_hex(bytes, &mut out);
    // Only ASCII digits and letters were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the lower-case hex of `bytes` into the first `2 * bytes.len()` bytes of `out`.
pub fn put_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// A short, non-reversible tag for logs, to correlate without logging a credential.
pub fn log_tag(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sealed_mail_opens_only_with_the_same_secret_and_unaltered() {
        let seal = super::Secret::random().mail_seal();
        let sealed = seal.seal("123456 is your code");
        assert!(!sealed.contains("123456"));
        assert_eq!(seal.open(&sealed).unwrap(), "123456 is your code");
        assert_ne!(
            seal.seal("123456 is your code"),
            sealed,
            "a fresh nonce each time"
        );
        assert!(super::Secret::random().mail_seal().open(&sealed).is_err());
        // The empty order of a mail queued before orders existed (migration 0002).
        assert!(seal.open("").is_err());
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(seal.open(&String::from_utf8(altered).unwrap()).is_err());
        assert!(seal.open("not sealed").is_err());
    }

    #[test]
    fn the_fingerprint_is_stable_short_and_tells_secrets_apart() {
        let secret = super::Secret::from_bytes([7; 32]);
        let fp = secret.fingerprint();
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(fp, super::Secret::from_bytes([7; 32]).fingerprint());
        assert_ne!(fp, super::Secret::from_bytes([8; 32]).fingerprint());
        // Not a piece of the secret itself.
        assert!(!hex::encode([7u8; 32]).contains(&fp));
    }

    #[test]
    fn hex_matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::to_hex(&bytes), hex::encode(&bytes));
    }
}
