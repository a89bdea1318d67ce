//! The stored formats of the Redis backend: key names, session and code records, and the
//! packing of user agents. They are what Redis holds between releases, so they change only
//! compatibly (the layout is described in the module doc of `redis`). Must not: talk to Redis.
use super::corrupt;
use crate::domain::{CodePurpose, SessionKey, SessionKind, SessionRecord, SessionUser};
use crate::store::{CodeRecord, StoreError, StoreResult};

/// Field separator of every stored record.
pub(super) const SEP: char = '\u{1f}';
/// Starts a pending session record: `~<old key>␟<record>`.
pub(super) const PENDING: char = '~';

pub(super) struct Keys(pub(super) String);

impl Keys {
    pub(super) fn session(&self, k: &SessionKey) -> String {
        format!("{}{{{}}}s", self.0, k.as_str())
    }
    pub(super) fn code(&self, k: &SessionKey, purpose: CodePurpose) -> String {
        format!("{}{{{}}}c:{}", self.0, k.as_str(), purpose.as_str())
    }
    /// The three code keys, in the order of [`CodePurpose::ALL`].
    pub(super) fn codes(&self, k: &SessionKey) -> Vec<String> {
        CodePurpose::ALL.map(|p| self.code(k, p)).to_vec()
    }
    pub(super) fn marker(&self, k: &SessionKey) -> String {
        format!("{}{{{}}}w", self.0, k.as_str())
    }
    pub(super) fn index(&self, user_id: i64) -> String {
        format!("{}u:{{{user_id}}}", self.0)
    }
    pub(super) fn limit(&self, name: &str) -> String {
        format!("{}l:{name}", self.0)
    }
}

fn no_sep(fields: &[&str]) -> StoreResult<()> {
    if fields.iter().any(|f| f.contains(SEP)) {
        return Err(StoreError::Internal(
            "a field holds U+001F, which cannot be stored".into(),
        ));
    }
    Ok(())
}

pub(super) fn encode_session(s: &SessionRecord) -> StoreResult<String> {
    let (id, name, email) = match &s.user {
        Some(u) => (u.id.to_string(), u.username.as_str(), u.email.as_str()),
        None => (String::new(), "", ""),
    };
    no_sep(&[name, email, &s.ip])?;
    let kind = match s.kind {
        SessionKind::Cookie => "c",
        SessionKind::Token => "t",
    };
    let c = s.created_at;
    Ok([
        c.to_string(),
        (s.last_seen_at - c).to_string(),
        (s.idle_expires_at - c).to_string(),
        (s.absolute_expires_at - c).to_string(),
        kind.to_owned(),
        id,
        s.ip.clone(),
        name.to_owned(),
        email.to_owned(),
        ua_pack(&s.user_agent),
    ]
    .join("\u{1f}"))
}

pub(super) fn decode_session(key: &SessionKey, raw: &str) -> StoreResult<SessionRecord> {
    let bad = || corrupt("session");
    let fields: Vec<&str> = raw.splitn(10, SEP).collect();
    let &[created, seen, idle, absolute, kind, id, ip, name, email, ua] = fields.as_slice() else {
        return Err(bad());
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let created = num(created)?;
    let after = |d: &str| created.checked_add(num(d)?).ok_or_else(bad);
    let kind = match kind {
        "c" => SessionKind::Cookie,
        "t" => SessionKind::Token,
        _ => return Err(bad()),
    };
    let user = match id {
        "" => None,
        id => Some(SessionUser {
            id: num(id)?,
            username: name.to_owned(),
            email: email.to_owned(),
        }),
    };
    Ok(SessionRecord {
        key: key.clone(),
        kind,
        user,
        created_at: created,
        last_seen_at: after(seen)?,
        idle_expires_at: after(idle)?,
        absolute_expires_at: after(absolute)?,
        user_agent: ua_unpack(ua),
        ip: ip.to_owned(),
    })
}

/// The user id of a stored record (active or pending), if it reads.
pub(super) fn stored_user(key: &SessionKey, raw: &str) -> Option<i64> {
    let record = match raw.strip_prefix(PENDING) {
        Some(rest) => rest.split_once(SEP)?.1,
        None => raw,
    };
    decode_session(key, record).ok()?.user.map(|u| u.id)
}

/// Attempts first: the scripts rewrite that number and keep the rest as it is.
pub(super) fn encode_code(c: &CodeRecord) -> StoreResult<String> {
    no_sep(&[&c.email, &c.mac])?;
    Ok(format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        c.attempts, c.expires_at, c.created_at, c.resend_available_at, c.email, c.mac, c.mail_ref
    ))
}

pub(super) fn decode_code(
    session: &SessionKey,
    purpose: CodePurpose,
    raw: &str,
) -> StoreResult<CodeRecord> {
    let bad = || corrupt("code");
    let fields: Vec<&str> = raw.splitn(7, SEP).collect();
    let &[attempts, expires, created, resend, email, mac, mail_ref] = fields.as_slice() else {
        return Err(bad());
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    Ok(CodeRecord {
        session: session.clone(),
        purpose,
        email: email.to_owned(),
        mac: mac.to_owned(),
        created_at: num(created)?,
        expires_at: num(expires)?,
        resend_available_at: num(resend)?,
        attempts: attempts.parse().map_err(|_| bad())?,
        mail_ref: mail_ref.to_owned(),
    })
}

/// Fragments of the user agents of common browsers, each stored as one control character
/// ([`UA_CODES`], same position). A header value holds no control character (RFC 9110 §5.5),
/// so the packing is reversible; one that does anyway is stored raw behind [`UA_RAW`]. Part of
/// the stored format: append only, never reorder.
pub(super) const UA_TOKENS: [&str; 26] = [
    "Mozilla/5.0 (",
    ") AppleWebKit/537.36 (KHTML, like Gecko) Chrome/",
    ") AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "AppleWebKit/537.36 (KHTML, like Gecko)",
    ".0.0.0 Safari/537.36",
    ".0.0.0 Mobile Safari/537.36",
    "Windows NT 10.0; Win64; x64",
    "Macintosh; Intel Mac OS X 10_15_7",
    "Macintosh; Intel Mac OS X ",
    "X11; Linux x86_64",
    "Linux; Android ",
    "iPhone; CPU iPhone OS ",
    "iPad; CPU OS ",
    " like Mac OS X",
    ") Gecko/20100101 Firefox/",
    "; rv:",
    " Version/",
    " Mobile/15E148",
    " Safari/604.1",
    " Safari/605.1.15",
    " Safari/537.36",
    " Edg/",
    " OPR/",
    " CriOS/",
    ".0.0.0",
    "; K",
];
/// U+0001 to U+001D without tab, line feed and carriage return.
const UA_CODES: [char; 26] = [
    '\u{01}', '\u{02}', '\u{03}', '\u{04}', '\u{05}', '\u{06}', '\u{07}', '\u{08}', '\u{0b}',
    '\u{0c}', '\u{0e}', '\u{0f}', '\u{10}', '\u{11}', '\u{12}', '\u{13}', '\u{14}', '\u{15}',
    '\u{16}', '\u{17}', '\u{18}', '\u{19}', '\u{1a}', '\u{1b}', '\u{1c}', '\u{1d}',
];
const UA_RAW: char = '\u{1e}';

fn ua_pack(ua: &str) -> String {
    if ua.contains(|c: char| c == UA_RAW || UA_CODES.contains(&c)) {
        return format!("{UA_RAW}{ua}");
    }
    let mut packed = ua.to_owned();
    for (token, code) in UA_TOKENS.iter().zip(UA_CODES) {
        if packed.contains(token) {
            packed = packed.replace(token, code.encode_utf8(&mut [0; 4]));
        }
    }
    packed
}

fn ua_unpack(packed: &str) -> String {
    if let Some(raw) = packed.strip_prefix(UA_RAW) {
        return raw.to_owned();
    }
    let mut ua = String::with_capacity(packed.len() * 4);
    for c in packed.chars() {
        match UA_CODES.iter().position(|&code| code == c) {
            Some(i) => ua.push_str(UA_TOKENS[i]),
            None => ua.push(c),
        }
    }
    ua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_pack_and_unpack() {
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "curl/8.5.0",
            "",
            "tab\there",
            "odd \u{1}\u{1e} bytes \u{1f}",
            "ünïcode ☃ Mozilla/5.0 (",
        ] {
            assert_eq!(ua_unpack(&ua_pack(ua)), ua, "{ua:?}");
        }
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
        assert!(ua_pack(chrome).len() < 12, "{:?}", ua_pack(chrome));
    }

    #[test]
    fn records_round_trip_and_corruption_is_internal() {
        let key = SessionKey::parse(&"ab".repeat(32)).expect("key");
        let s = SessionRecord {
            key: key.clone(),
            kind: SessionKind::Token,
            user: Some(SessionUser {
                id: -3,
                username: "Zoë".into(),
                email: "z@example.com".into(),
            }),
            created_at: 1_800_000_000_000,
            last_seen_at: 1_800_000_000_005,
            idle_expires_at: 1_799_000_000_000,
            absolute_expires_at: 1_800_604_800_000,
            user_agent: "agent".into(),
            ip: "::1".into(),
        };
        let raw = encode_session(&s).expect("encodes");
        assert_eq!(decode_session(&key, &raw).expect("decodes"), s);
        assert_eq!(stored_user(&key, &raw), Some(-3));
        for junk in [
            "",
            "1\u{1f}2",
            "x\u{1f}0\u{1f}0\u{1f}0\u{1f}c\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}",
        ] {
            assert!(matches!(
                decode_session(&key, junk),
                Err(StoreError::Internal(_))
            ));
        }
        let mut bad = s.clone();
        bad.ip = "a\u{1f}b".into();
        assert!(encode_session(&bad).is_err());
    }
}
