//! A session's record: its head ([`SESSION`]: instants, kind and user id, IP), then the user's
//! names and its user agent. Decoded on every authenticated request (docs/benchmarks.md).
use super::format::{
    b62_u128, from_b62, from_b62_u128, push_b62, CODE_MARK, PENDING, SEP, SESSION,
};
use super::packing::{ip_pack, ip_unpack, ua_pack, ua_unpack};
use super::{no_sep, push_record, Field};
use crate::domain::{SessionKey, SessionKind, SessionRecord, SessionUser, UserId};
use crate::store::redis::corrupt;
use crate::store::StoreResult;

// The positions of the fields, from the one table (a name it lacks fails the build).
const S_CREATED: usize = SESSION.at("created");
const S_SEEN: usize = SESSION.at("seen");
const S_IDLE: usize = SESSION.at("idle");
const S_ABSOLUTE: usize = SESSION.at("absolute");
const S_WHO: usize = SESSION.at("who");
const S_IP: usize = SESSION.at("ip");

/// Ends the row id in `who` when the account's public id follows (its 128 bits in base 62, at
/// most 22 digits: a signed-in session stays within SPEC §3's 300 bytes). A record
/// written before accounts had ids has none; the flows then read it from the account.
const PUBLIC_ID_MARK: char = '.';

/// The email of a user whose username is its local part, which is then not stored again.
fn name_is_local_part(u: &SessionUser) -> bool {
    !u.username.is_empty()
        && !u.username.contains('@')
        && u.email
            .strip_prefix(u.username.as_str())
            .is_some_and(|rest| rest.starts_with('@'))
}

/// A session's record: its head ([`SESSION`]), then `username␟` unless it is the email's local
/// part, `email␟` (both only with a user), and the packed user agent.
pub(crate) fn encode_session(s: &SessionRecord) -> StoreResult<String> {
    no_sep(&[&s.ip])?;
    let kind = match s.kind {
        SessionKind::Cookie => 'c',
        SessionKind::Token => 't',
    };
    let mut who = String::new();
    let mut names = String::new();
    match &s.user {
        None => who.push(kind),
        Some(u) => {
            no_sep(&[&u.username, &u.email])?;
            if name_is_local_part(u) {
                who.push(kind.to_ascii_uppercase());
            } else {
                who.push(kind);
                names.push_str(&u.username);
                names.push(SEP);
            }
            push_b62(u.id, &mut who);
            if let Some(public) = u.public_id {
                who.push(PUBLIC_ID_MARK);
                who.push_str(&b62_u128(public.as_u128()));
            }
            names.push_str(&u.email);
            names.push(SEP);
        }
    }
    let ip = ip_pack(&s.ip);
    let c = s.created_at;
    let mut head = [Field::Num(0); SESSION.len()];
    head[S_CREATED] = Field::Num(c);
    head[S_SEEN] = Field::Num(s.last_seen_at - c);
    head[S_IDLE] = Field::Num(s.idle_expires_at - s.last_seen_at);
    head[S_ABSOLUTE] = Field::Num(s.absolute_expires_at - c);
    head[S_WHO] = Field::Text(&who);
    head[S_IP] = Field::Text(&ip);
    let mut out = String::with_capacity(96);
    push_record(&mut out, &SESSION, &head);
    out.push(SEP);
    out.push_str(&names);
    out.push_str(&ua_pack(&s.user_agent));
    Ok(out)
}

/// Reads a session record; the codes kept after it, if any, are left for [`codes_in`].
pub(crate) fn decode_session(key: &SessionKey, raw: &str) -> StoreResult<SessionRecord> {
    let bad = || corrupt("session");
    let raw = raw
        .split_once(CODE_MARK)
        .map_or(raw, |(session, _)| session);
    // The head's fields, then the rest (names and user agent).
    let mut parts = raw.splitn(SESSION.len() + 1, SEP);
    let mut f = [""; SESSION.len() + 1];
    for slot in &mut f {
        *slot = parts.next().ok_or_else(bad)?;
    }
    let rest = f[SESSION.len()];
    let num = |i: usize| SESSION.number(i, f[i]).ok_or_else(bad);
    let created = num(S_CREATED)?;
    let after = |base: i64, i: usize| base.checked_add(num(i)?).ok_or_else(bad);
    let last_seen_at = after(created, S_SEEN)?;
    let mut who = f[S_WHO].chars();
    let (kind, local_part) = match who.next() {
        Some('c') => (SessionKind::Cookie, false),
        Some('t') => (SessionKind::Token, false),
        Some('C') => (SessionKind::Cookie, true),
        Some('T') => (SessionKind::Token, true),
        _ => return Err(bad()),
    };
    let (id, public_id) = match who.as_str().split_once(PUBLIC_ID_MARK) {
        Some((id, public)) => {
            let bits = from_b62_u128(public).ok_or_else(bad)?;
            (id, Some(UserId::from_u128(bits).ok_or_else(bad)?))
        }
        None => (who.as_str(), None),
    };
    let (user, ua) = if id.is_empty() {
        if local_part {
            return Err(bad());
        }
        (None, rest)
    } else {
        let id = from_b62(id).ok_or_else(bad)?;
        let (username, email, ua) = if local_part {
            let (email, ua) = rest.split_once(SEP).ok_or_else(bad)?;
            let (name, _) = email.split_once('@').ok_or_else(bad)?;
            (name, email, ua)
        } else {
            let mut parts = rest.splitn(3, SEP);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(name), Some(email), Some(ua)) => (name, email, ua),
                _ => return Err(bad()),
            }
        };
        let user = SessionUser {
            id,
            public_id,
            username: username.to_owned(),
            email: email.to_owned(),
        };
        (Some(user), ua)
    };
    Ok(SessionRecord {
        key: key.clone(),
        kind,
        user,
        created_at: created,
        last_seen_at,
        idle_expires_at: after(last_seen_at, S_IDLE)?,
        absolute_expires_at: after(created, S_ABSOLUTE)?,
        user_agent: ua_unpack(ua),
        ip: ip_unpack(f[S_IP]).ok_or_else(bad)?,
    })
}

/// The user id of a stored record (active or pending), if it reads.
pub(crate) fn stored_user(key: &SessionKey, raw: &str) -> Option<i64> {
    let record = match raw.strip_prefix(PENDING) {
        Some(rest) => rest.split_once(SEP)?.1,
        None => raw,
    };
    decode_session(key, record).ok()?.user.map(|u| u.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    /// The head of a session's record holds each field where the record format puts it.
    #[test]
    fn a_session_is_written_as_the_format_places_its_fields() {
        let key = SessionKey::parse(&"ab".repeat(32)).expect("key");
        let s = SessionRecord {
            key: key.clone(),
            kind: SessionKind::Token,
            user: Some(SessionUser {
                id: 62,
                public_id: None,
                username: "bob".into(),
                email: "b@example.com".into(),
            }),
            created_at: 1_000,
            last_seen_at: 1_062,
            idle_expires_at: 1_124,
            absolute_expires_at: 4_844,
            user_agent: "agent".into(),
            ip: "unknown".into(),
        };
        let raw = encode_session(&s).expect("encodes");
        let fields: Vec<&str> = raw.splitn(SESSION.len() + 1, SEP).collect();
        let mut got: Vec<(&str, &str)> = SESSION
            .fields
            .iter()
            .map(|(name, _)| *name)
            .zip(fields.iter().copied())
            .collect();
        got.sort();
        // 1000 = g8, 62 = 10, 3844 = 100 in base 62.
        let mut expected = [
            ("created", "g8"),
            ("seen", "10"),
            ("idle", "10"),
            ("absolute", "100"),
            ("who", "t10"),
            ("ip", "=unknown"),
        ];
        expected.sort();
        assert_eq!(got, expected);
        assert_eq!(fields[SESSION.len()], "bob\u{1f}b@example.com\u{1f}agent");
    }

    #[test]
    fn records_round_trip_and_corruption_is_internal() {
        let key = SessionKey::parse(&"ab".repeat(32)).expect("key");
        let s = SessionRecord {
            key: key.clone(),
            kind: SessionKind::Token,
            user: Some(SessionUser {
                id: -3,
                public_id: UserId::parse("0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"),
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
        // Every shape: anonymous, the username as the email's local part or not, odd IPs.
        let users = [
            None,
            Some(("alice", "alice@example.com")),
            Some(("Alice", "alice@example.com")),
            Some(("al", "alice@example.com")),
            Some(("a@b", "a@b@example.com")),
            Some(("", "@example.com")),
            Some(("x", "x@")),
        ];
        let ips = [
            "203.0.113.7",
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "::1",
            "1::",
            "2001:db8:85a3::8a2e:370:7334",
            "::ffff:192.0.2.1",
            "010.0.0.1",
            "unknown",
            "=x",
            "!1",
            "",
        ];
        for (i, (user, ip)) in users.iter().flat_map(|u| ips.map(|ip| (u, ip))).enumerate() {
            let rec = SessionRecord {
                kind: [SessionKind::Cookie, SessionKind::Token][i % 2],
                user: user.map(|(name, email)| SessionUser {
                    id: [0, 1, 1_234_567, i64::MAX, i64::MIN][i % 5],
                    public_id: (i % 3 != 0).then(|| UserId::new(i as i64)),
                    username: name.into(),
                    email: email.into(),
                }),
                ip: ip.into(),
                user_agent: ["", "\u{1f}x\u{1f}", "curl/8"][i % 3].into(),
                last_seen_at: s.created_at + i as i64,
                ..s.clone()
            };
            let raw = encode_session(&rec).expect("encodes");
            assert_eq!(decode_session(&key, &raw).expect("decodes"), rec, "{raw:?}");
        }
        for junk in [
            "",
            "1\u{1f}2",
            "x\u{1f}0\u{1f}0\u{1f}0\u{1f}c\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}",
            "!\u{1f}0\u{1f}0\u{1f}0\u{1f}c\u{1f}1\u{1f}",
            "0\u{1f}0\u{1f}0\u{1f}0\u{1f}x\u{1f}1\u{1f}",
            "0\u{1f}0\u{1f}0\u{1f}0\u{1f}C\u{1f}1\u{1f}",
            "0\u{1f}0\u{1f}0\u{1f}0\u{1f}C1\u{1f}1\u{1f}no-at\u{1f}",
            "0\u{1f}0\u{1f}0\u{1f}0\u{1f}c1\u{1f}1\u{1f}name-only",
            "0\u{1f}0\u{1f}0\u{1f}0\u{1f}c\u{1f}zzzzzz\u{1f}",
            "0\u{1f}0\u{1f}0\u{1f}ZZZZZZZZZZZZ\u{1f}c\u{1f}1\u{1f}",
            "0\u{1f}0\u{1f}0\u{1f}0\u{1f}c1.notauuid\u{1f}=unknown\u{1f}n\u{1f}e@x\u{1f}ua",
        ] {
            assert!(
                matches!(decode_session(&key, junk), Err(StoreError::Internal(_))),
                "{junk:?}"
            );
        }
        let mut bad = s.clone();
        bad.ip = "a\u{1f}b".into();
        assert!(encode_session(&bad).is_err());
    }
}
