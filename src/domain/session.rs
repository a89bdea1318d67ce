//! Sessions: the id a client holds, the key the store knows it by, and the record kept.
//!
//! A [`SessionId`] is a credential and never reaches a store or a log; stores see only the
//! [`SessionKey`] (a SHA-256 of the id, SPEC §3 Sessions).
use crate::clock::Millis;
use crate::domain::UserId;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(***)")
    }
}

impl SessionId {
    /// 43 characters of URL-safe base64 for 32 random bytes.
    pub(crate) fn from_random(bytes: &[u8; 32]) -> Self {
        use base64::Engine;
        SessionId(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts only what `SessionId::from_random` can produce, so junk in a cookie or header is
    /// dropped before it costs a store round trip.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| SessionId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The store key of a session (hex SHA-256 of the id). Also the public id of a session in
/// `GET /api/sessions`: it names a session but cannot be used as one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey(String);

impl SessionKey {
    pub(crate) fn from_hex(hex: String) -> Self {
        SessionKey(hex)
    }

    /// Parses a public session id from a URL; 64 lowercase hex digits.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| SessionKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the client carries the session: a cookie (browsers) or a bearer token (SPEC §2, clients
/// without cookies). A session keeps its kind across sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Cookie,
    Token,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Cookie => "cookie",
            SessionKind::Token => "token",
        }
    }
    pub fn parse(s: &str) -> Self {
        if s == "token" {
            SessionKind::Token
        } else {
            SessionKind::Cookie
        }
    }
}

/// The signed-in user, copied into the session so that `GET /api/me` and `/api/auth/check`
/// need one store read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// The store's row number of the account (sessions and users are joined on it); never shown.
    pub id: i64,
    /// The account's public id (SPEC §6). `None` only in a session written before accounts had
    /// ids: [`crate::flows::Core::load_session`] fills it from the account.
    pub public_id: Option<UserId>,
    pub username: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub key: SessionKey,
    pub kind: SessionKind,
    pub user: Option<SessionUser>,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub idle_expires_at: Millis,
    pub absolute_expires_at: Millis,
    pub user_agent: String,
    pub ip: String,
}

impl SessionRecord {
    /// When the session ends if nothing else happens.
    pub fn expires_at(&self) -> Millis {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    pub fn is_live(&self, now: Millis) -> bool {
        now < self.expires_at()
    }
}
