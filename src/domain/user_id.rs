//! The stable id of an account (SPEC §6): what applications key their own rows on, never the
//! username or email, which may change.
use crate::clock::Millis;

/// A UUID, version 7 (RFC 9562): its first 48 bits are the account's creation time in
/// milliseconds, the rest random, so ids sort by creation and index well. Made once, with the
/// account (or, for an account older than ids, from its creation time), and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(uuid::Uuid);

impl UserId {
    /// A new id for an account created at `created_at`.
    pub fn new(created_at: Millis) -> Self {
        let ms = u64::try_from(created_at).unwrap_or(0);
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        );
        UserId(uuid::Uuid::new_v7(ts))
    }

    /// Reads an id as stored or sent: hyphenated (any case, PostgreSQL's `uuid` text) or the
    /// 32 hex digits without hyphens. Anything else is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        uuid::Uuid::try_parse(raw).ok().map(UserId)
    }

    /// The 128 bits, for compact encodings (a Redis session record holds them in base 62).
    pub fn as_u128(self) -> u128 {
        self.0.as_u128()
    }

    /// An id from its 128 bits, as [`UserId::as_u128`] gave them; `None` for bits that are not
    /// an RFC 9562 UUID (a corrupt record).
    pub fn from_u128(bits: u128) -> Option<Self> {
        let id = uuid::Uuid::from_u128(bits);
        (id.get_variant() == uuid::Variant::RFC4122).then_some(UserId(id))
    }

    /// The lowercase hyphenated form, 36 characters: how it is stored and shown.
    pub fn to_text(self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl serde::Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        UserId::parse(&raw).ok_or_else(|| serde::de::Error::custom("not a UUID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_version_7_carries_its_time_and_reads_back() {
        let at: Millis = 1_764_000_000_123;
        let a = UserId::new(at);
        let b = UserId::new(at);
        assert_ne!(a, b, "two accounts created in the same millisecond differ");
        assert_eq!(a.0.get_version_num(), 7);
        let (secs, nanos) = a.0.get_timestamp().map(|t| t.to_unix()).unwrap_or_default();
        assert_eq!(secs as i64 * 1000 + i64::from(nanos / 1_000_000), at);
        let text = a.to_text();
        assert_eq!(text.len(), 36);
        assert_eq!(UserId::parse(&text), Some(a));
        assert_eq!(UserId::parse(&text.to_uppercase()), Some(a));
        assert_eq!(UserId::parse("not-a-uuid"), None);
    }

    #[test]
    fn later_accounts_sort_after_earlier_ones() {
        let early = UserId::new(1_000_000).to_text();
        let late = UserId::new(2_000_000).to_text();
        assert!(early < late);
    }
}
