//! The names of the Redis keys the store writes (the layout: docs/operations.md, "Redis: keys
//! and records"), the hash tag of a session's keys and the members of a user's session index.
//! Redis holds these names between releases: a change signs everyone out. Must not: talk to
//! Redis.
use crate::domain::{CodePurpose, SessionKey};
use crate::store::redis::corrupt;
use crate::store::StoreResult;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// How many bytes of a hash of a session key name its Redis keys (see [`tag`]).
const TAG_BYTES: usize = 24;
/// Its length in base64url.
const TAG_CHARS: usize = TAG_BYTES / 3 * 4;

/// The names of the Redis keys the store writes under a prefix. Public so that tests and tools
/// can find what the store wrote.
pub struct Keys(String);

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys(prefix.to_owned())
    }
    /// A session's record: `P{tag}s`.
    pub fn session(&self, k: &SessionKey) -> String {
        // Pushed, not `format!`ted: built on every authenticated request (docs/benchmarks.md).
        let mut key = String::with_capacity(self.0.len() + TAG_CHARS + 3);
        key.push_str(&self.0);
        key.push('{');
        push_tag(k, &mut key);
        key.push_str("}s");
        key
    }
    /// The name of a session's code for one purpose, `P{tag}c:<purpose>`: what a queued mail
    /// names its code by. Not a key: the code lives in its session's record, which
    /// [`Keys::home_of_code`] finds from this name.
    pub fn code(&self, k: &SessionKey, purpose: CodePurpose) -> String {
        let purpose = purpose.as_str();
        let mut key = String::with_capacity(self.0.len() + TAG_CHARS + 4 + purpose.len());
        key.push_str(&self.0);
        key.push('{');
        push_tag(k, &mut key);
        key.push_str("}c:");
        key.push_str(purpose);
        key
    }
    /// The key of the session record that holds the code of this name ([`Keys::code`]), and
    /// the code's purpose; `None` for a name this store did not make.
    pub(crate) fn home_of_code(&self, name: &str) -> Option<(String, CodePurpose)> {
        let (head, purpose) = name.strip_prefix(self.0.as_str())?.rsplit_once("}c:")?;
        let purpose = CodePurpose::parse(purpose)?;
        let tag = head.strip_prefix('{')?;
        if tag.len() != TAG_CHARS || tag.contains(['{', '}']) {
            return None;
        }
        Some(([self.0.as_str(), head, "}s"].concat(), purpose))
    }
    /// The marker of a sign-in out of the session with this tag: `P{tag}w`.
    pub fn marker(&self, k: &SessionKey) -> String {
        self.marker_of_tag(&tag(k))
    }
    pub(crate) fn marker_of_tag(&self, tag: &str) -> String {
        format!("{}{{{tag}}}w", self.0)
    }
    /// A user's session index: `Pu:{<user id>}`.
    pub fn index(&self, user_id: i64) -> String {
        format!("{}u:{{{user_id}}}", self.0)
    }
    /// A rate limit counter: `Pl:<name>`.
    pub fn limit(&self, name: &str) -> String {
        [self.0.as_str(), "l:", name].concat()
    }
    /// The mails claimed or waiting for a retry: a sorted set of queue entries (`outbox.rs`)
    /// scored by when each is due or its lease ends. Under the hash tag `{mail}`, as the list.
    pub fn mail_queue(&self) -> String {
        [self.0.as_str(), "{mail}q"].concat()
    }
    /// The mails queued and never claimed yet, due at once: a list of entries, oldest first.
    pub fn mail_new(&self) -> String {
        [self.0.as_str(), "{mail}n"].concat()
    }
    /// The webhook deliveries claimed or waiting for a retry (SPEC §7), as `mail_queue` is
    /// for mail: the same outbox, its own keys, so that each kind has its own worker.
    pub fn hook_queue(&self) -> String {
        [self.0.as_str(), "{mail}hq"].concat()
    }
    /// The webhook deliveries never claimed yet, as `mail_new`.
    pub fn hook_new(&self) -> String {
        [self.0.as_str(), "{mail}hn"].concat()
    }
    /// The given-up webhook deliveries, newest first, capped (`mailcode webhooks failed`).
    pub fn hook_failed(&self) -> String {
        [self.0.as_str(), "{mail}hf"].concat()
    }
    /// The fingerprint of the deployment's secret (`store::SecretRecord`): `Pdeployment:secret`,
    /// a string without TTL.
    pub fn deployment_secret(&self) -> String {
        [self.0.as_str(), "deployment:secret"].concat()
    }
}

/// The 32 bytes of a session key (64 hex digits by construction).
pub(crate) fn key_bytes(k: &SessionKey) -> [u8; 32] {
    let hex = k.as_str().as_bytes();
    debug_assert_eq!(hex.len(), 64, "a session key is 64 hex digits");
    let nibble = |i: usize| match hex.get(i) {
        Some(&c @ b'0'..=b'9') => c - b'0',
        Some(&c @ b'a'..=b'f') => c - b'a' + 10,
        Some(&c @ b'A'..=b'F') => c - b'A' + 10,
        _ => 0,
    };
    std::array::from_fn(|i| nibble(2 * i) << 4 | nibble(2 * i + 1))
}

/// A session's member in its user's index: the 32 bytes of its key, raw.
pub(crate) fn index_member(k: &SessionKey) -> Vec<u8> {
    key_bytes(k).to_vec()
}

/// The session key an index member stands for.
pub(crate) fn from_index_member(member: &[u8]) -> StoreResult<SessionKey> {
    if member.len() != 32 {
        return Err(corrupt("session index"));
    }
    Ok(SessionKey::from_hex(crate::crypto::to_hex(member)))
}

/// The hash tag of a session's keys: base64url of the first 192 bits of SHA-256 over its key,
/// 32 characters. Hashed, not cut: two keys differing only in their last bytes (nothing stops
/// a caller from making such) get tags as different as any two (a pair with one tag takes
/// about 2^96 tries to find). The 64 hex digits of the key would cost 16 bytes more per key in
/// Redis' allocator; the whole key is kept in the index member.
pub fn tag(k: &SessionKey) -> String {
    let mut tag = String::with_capacity(TAG_CHARS);
    push_tag(k, &mut tag);
    tag
}

/// [`tag`], appended to `out`.
fn push_tag(k: &SessionKey, out: &mut String) {
    let digest = Sha256::digest(key_bytes(k));
    URL_SAFE_NO_PAD.encode_string(&digest[..TAG_BYTES], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tags_and_index_members() {
        let key = SessionKey::parse(&format!("{}7d7b", "0f".repeat(30))).expect("key");
        assert_eq!(from_index_member(&index_member(&key)).expect("member"), key);
        assert_eq!(index_member(&key).len(), 32);
        assert!(from_index_member(b"short").is_err());
        let keys = Keys::new("mailcode:");
        let name = keys.session(&key);
        assert_eq!(
            name.len(),
            44,
            "44 bytes: a 48-byte allocation with the sds header"
        );
        let tag = tag(&key);
        // Pinned: Redis holds names made with it across releases (a change signs everyone out).
        assert_eq!(tag, "idGsXlIP9op9T55uABVqKA5SjYQNwo2v");
        assert_eq!(name, format!("mailcode:{{{tag}}}s"));
        assert!(!tag.contains(['{', '}']));
        let next = SessionKey::parse(&format!("{}7d7c", "0f".repeat(30))).expect("key");
        assert_ne!(super::tag(&next), tag, "the last bytes count too");
        assert_eq!(keys.marker(&key), keys.marker_of_tag(&tag));
    }

    /// A mail's name of its code leads back to the session record that keeps the code.
    #[test]
    fn a_code_name_leads_to_its_session_record() {
        let key = SessionKey::parse(&"ab".repeat(32)).expect("key");
        let keys = Keys::new("P:");
        let name = keys.code(&key, CodePurpose::Register);
        assert_eq!(
            keys.home_of_code(&name),
            Some((keys.session(&key), CodePurpose::Register))
        );
        for other in [
            "P:{x}c:login",
            "Q:{x}c:login",
            "P:{}c:nothing",
            "",
            "P:{{}}c:login",
        ] {
            assert_eq!(keys.home_of_code(other), None, "{other}");
        }
    }
}
