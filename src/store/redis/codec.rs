//! The stored formats of the Redis backend: key names, session and code records, index
//! members, and the packing of numbers, IP addresses and user agents. They are what Redis holds
//! between releases, so once deployed they change only compatibly (the layout is described in
//! the module doc of `redis`). Must not: talk to Redis.
use super::corrupt;
use crate::domain::{CodePurpose, SessionKey, SessionKind, SessionRecord, SessionUser};
use crate::store::{
    delivery_of, CodeRecord, Delivery, OutgoingMail, QueuedMail, StoreError, StoreResult,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Field separator of every stored record.
pub(super) const SEP: char = '\u{1f}';
/// Starts a pending session record: `~<old session's tag>␟<record>`.
pub(super) const PENDING: char = '~';
/// Starts each code kept in a session's record, after the session's own fields:
/// `\n<purpose>␟<code record>`. No field of a session or a code holds it (see [`no_sep`] and
/// [`ua_pack`]), so the first one ends the session's part.
pub(super) const CODE_MARK: char = '\n';
/// How many bytes of a hash of a session key name its Redis keys (see [`tag`]).
const TAG_BYTES: usize = 24;
/// Its length in base64url.
const TAG_CHARS: usize = TAG_BYTES / 3 * 4;

/// The names of the Redis keys the store writes under a prefix (layout in the module doc of
/// `redis`). Public so that tests and tools can find what the store wrote.
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
    /// names its code by. Not a key since 2026-11-29: the code lives in its session's record
    /// (module doc of `redis`); [`Keys::home_of_code`] finds it from this name.
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
    pub(super) fn home_of_code(&self, name: &str) -> Option<(String, CodePurpose)> {
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
    pub(super) fn marker_of_tag(&self, tag: &str) -> String {
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
    /// The mails claimed or waiting for a retry: a sorted set of queue entries (`mail.rs`)
    /// scored by when each is due or its lease ends. Under the hash tag `{mail}`, as the list.
    pub fn mail_queue(&self) -> String {
        [self.0.as_str(), "{mail}q"].concat()
    }
    /// The mails queued and never claimed yet, due at once: a list of entries, oldest first.
    pub fn mail_new(&self) -> String {
        [self.0.as_str(), "{mail}n"].concat()
    }
    /// The fingerprint of the deployment's secret (`store::SecretRecord`): `Pdeployment:secret`,
    /// a string without TTL.
    pub fn deployment_secret(&self) -> String {
        [self.0.as_str(), "deployment:secret"].concat()
    }
}

/// The 32 bytes of a session key (64 hex digits by construction).
pub(super) fn key_bytes(k: &SessionKey) -> [u8; 32] {
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
pub(super) fn index_member(k: &SessionKey) -> Vec<u8> {
    key_bytes(k).to_vec()
}

/// The session key an index member stands for.
pub(super) fn from_index_member(member: &[u8]) -> StoreResult<SessionKey> {
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

/// Refuses a field that holds a separator of the stored formats: [`SEP`], or [`CODE_MARK`]
/// (no address, name, IP, mac or reference holds either).
fn no_sep(fields: &[&str]) -> StoreResult<()> {
    if fields.iter().any(|f| f.contains([SEP, CODE_MARK])) {
        return Err(StoreError::Internal(
            "a field holds U+001F or a line feed, which cannot be stored".into(),
        ));
    }
    Ok(())
}

/// The digits of stored numbers (base 62, most significant first, `-` before a negative one),
/// as the Lua of `scripts.rs` reads and writes them.
const B62: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn b62_u128(mut n: u128) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(B62[(n % 62) as usize]);
        n /= 62;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().map(|&d| char::from(d)).collect()
}

fn b62(n: i64) -> String {
    let digits = b62_u128(u128::from(n.unsigned_abs()));
    if n < 0 {
        format!("-{digits}")
    } else {
        digits
    }
}

fn from_b62_u128(s: &str) -> Option<u128> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u128, |n, c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            b'A'..=b'Z' => c - b'A' + 36,
            _ => return None,
        };
        n.checked_mul(62)?.checked_add(u128::from(d))
    })
}

fn from_b62(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(digits) => {
            let n = i128::try_from(from_b62_u128(digits)?).ok()?;
            i64::try_from(-n).ok()
        }
        None => i64::try_from(from_b62_u128(s)?).ok(),
    }
}

/// An IP address as stored: an IPv4 address in its usual form as the base-62 number of its 32
/// bits; an IPv6 address in its usual form as `!` and the base-62 number of its 128 bits when
/// that is shorter; anything else as it is, behind `=` when it holds neither `.` nor `:` (so
/// that it cannot read as a number).
fn ip_pack(ip: &str) -> String {
    if let Ok(v4) = ip.parse::<Ipv4Addr>() {
        if v4.to_string() == ip {
            return b62_u128(u128::from(u32::from(v4)));
        }
    }
    if let Ok(v6) = ip.parse::<Ipv6Addr>() {
        let packed = format!("!{}", b62_u128(u128::from(v6)));
        if v6.to_string() == ip && packed.len() < ip.len() {
            return packed;
        }
    }
    if ip.contains(['.', ':']) {
        ip.to_owned()
    } else {
        format!("={ip}")
    }
}

fn ip_unpack(packed: &str) -> Option<String> {
    if packed.contains(['.', ':']) {
        return Some(packed.to_owned());
    }
    if let Some(raw) = packed.strip_prefix('=') {
        return Some(raw.to_owned());
    }
    if let Some(v6) = packed.strip_prefix('!') {
        return Some(Ipv6Addr::from(from_b62_u128(v6)?).to_string());
    }
    let v4 = u32::try_from(from_b62_u128(packed)?).ok()?;
    Some(ipv4_text(Ipv4Addr::from(v4)))
}

/// `a.to_string()` without the formatting machinery, which cost more than the rest of decoding
/// a session together (it runs on every authenticated request).
fn ipv4_text(a: Ipv4Addr) -> String {
    let mut s = String::with_capacity(15);
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            s.push(char::from(b'0' + o / 10 % 10));
        }
        s.push(char::from(b'0' + o % 10));
    }
    s
}

/// The email of a user whose username is its local part, which is then not stored again.
fn name_is_local_part(u: &SessionUser) -> bool {
    !u.username.is_empty()
        && !u.username.contains('@')
        && u.email
            .strip_prefix(u.username.as_str())
            .is_some_and(|rest| rest.starts_with('@'))
}

/// See the module doc of `redis` for the format.
pub(super) fn encode_session(s: &SessionRecord) -> StoreResult<String> {
    no_sep(&[&s.ip])?;
    let kind = match s.kind {
        SessionKind::Cookie => 'c',
        SessionKind::Token => 't',
    };
    let c = s.created_at;
    let mut out = [
        b62(c),
        b62(s.last_seen_at - c),
        b62(s.idle_expires_at - s.last_seen_at),
        b62(s.absolute_expires_at - c),
    ]
    .join("\u{1f}");
    out.push(SEP);
    // The kind, then the user id and the fields of the user.
    let mut names = String::new();
    match &s.user {
        None => out.push(kind),
        Some(u) => {
            no_sep(&[&u.username, &u.email])?;
            if name_is_local_part(u) {
                out.push(kind.to_ascii_uppercase());
            } else {
                out.push(kind);
                names.push_str(&u.username);
                names.push(SEP);
            }
            out.push_str(&b62(u.id));
            names.push_str(&u.email);
            names.push(SEP);
        }
    }
    out.push(SEP);
    out.push_str(&ip_pack(&s.ip));
    out.push(SEP);
    out.push_str(&names);
    out.push_str(&ua_pack(&s.user_agent));
    Ok(out)
}

/// Reads a session record; the codes kept after it, if any, are left for [`codes_in`].
pub(super) fn decode_session(key: &SessionKey, raw: &str) -> StoreResult<SessionRecord> {
    let bad = || corrupt("session");
    let raw = raw
        .split_once(CODE_MARK)
        .map_or(raw, |(session, _)| session);
    let mut fields = raw.splitn(7, SEP);
    let mut field = || fields.next().ok_or_else(bad);
    let (created, seen, idle, absolute, who, ip, rest) = (
        field()?,
        field()?,
        field()?,
        field()?,
        field()?,
        field()?,
        field()?,
    );
    let num = |s: &str| from_b62(s).ok_or_else(bad);
    let created = num(created)?;
    let after = |base: i64, d: &str| base.checked_add(num(d)?).ok_or_else(bad);
    let last_seen_at = after(created, seen)?;
    let mut who = who.chars();
    let (kind, local_part) = match who.next() {
        Some('c') => (SessionKind::Cookie, false),
        Some('t') => (SessionKind::Token, false),
        Some('C') => (SessionKind::Cookie, true),
        Some('T') => (SessionKind::Token, true),
        _ => return Err(bad()),
    };
    let id = who.as_str();
    let (user, ua) = if id.is_empty() {
        if local_part {
            return Err(bad());
        }
        (None, rest)
    } else {
        let id = num(id)?;
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
        idle_expires_at: after(last_seen_at, idle)?,
        absolute_expires_at: after(created, absolute)?,
        user_agent: ua_unpack(ua),
        ip: ip_unpack(ip).ok_or_else(bad)?,
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

/// Attempts first: the scripts rewrite that number and keep the rest as it is. The last field
/// is the delivery state of the code's mail ([`MailState`]): queued when the code is issued, as
/// its mail is queued with it; the mail worker rewrites it (`MAIL_STATE`).
pub(super) fn encode_code(c: &CodeRecord) -> StoreResult<String> {
    let mut out = String::with_capacity(CODE_RECORD_LEN);
    push_code(&mut out, c)?;
    Ok(out)
}

/// About the length of a code record (a 254-byte address takes more).
const CODE_RECORD_LEN: usize = 160;

fn push_code(out: &mut String, c: &CodeRecord) -> StoreResult<()> {
    no_sep(&[&c.email, &c.mac])?;
    push_fields(
        out,
        &[
            Field::Num(i64::from(c.attempts)),
            Field::Num(c.expires_at),
            Field::Num(c.created_at),
            Field::Num(c.resend_available_at),
            Field::Text(&c.email),
            Field::Text(&c.mac),
            Field::Text(&c.mail_ref),
            Field::Text(MailState::Queued.as_str()),
        ],
    );
    Ok(())
}

/// A field of a stored record, for [`push_fields`].
enum Field<'a> {
    Text(&'a str),
    Num(i64),
}

/// Appends `fields` joined by [`SEP`], numbers in decimal: written without `fmt`, since a code
/// request builds two such records (docs/benchmarks.md, workload 2).
fn push_fields(out: &mut String, fields: &[Field]) {
    let mut digits = itoa::Buffer::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        match f {
            Field::Text(t) => out.push_str(t),
            Field::Num(n) => out.push_str(digits.format(*n)),
        }
    }
}

/// A code as its session's record keeps it: `\n<purpose>␟<code record>` (`CODE_MARK`).
fn push_code_entry(out: &mut String, c: &CodeRecord) -> StoreResult<()> {
    out.push(CODE_MARK);
    out.push_str(c.purpose.as_str());
    out.push(SEP);
    push_code(out, c)
}

/// A new session's record with its first code in it: what a new visitor's code request writes,
/// one key.
pub(super) fn encode_session_with_code(s: &SessionRecord, c: &CodeRecord) -> StoreResult<String> {
    let mut out = encode_session(s)?;
    out.reserve(CODE_RECORD_LEN + 8);
    push_code_entry(&mut out, c)?;
    Ok(out)
}

/// The codes kept in a stored session record (active or pending), each as its purpose and
/// its code record, in stored order.
pub(super) fn codes_in(raw: &str) -> StoreResult<Vec<(CodePurpose, &str)>> {
    let mut parts = raw.split(CODE_MARK);
    parts.next();
    parts
        .map(|entry| {
            let (purpose, record) = entry.split_once(SEP).ok_or_else(|| corrupt("code"))?;
            let purpose = CodePurpose::parse(purpose).ok_or_else(|| corrupt("code"))?;
            Ok((purpose, record))
        })
        .collect()
}

/// A code record, with how its mail stands (kept with the code: `outbox.rs`).
pub(super) fn decode_code(
    session: &SessionKey,
    purpose: CodePurpose,
    raw: &str,
) -> StoreResult<(CodeRecord, Delivery)> {
    let bad = || corrupt("code");
    let fields: Vec<&str> = raw.split(SEP).collect();
    // Seven fields: written before the mail's state moved here, its mail queued then.
    let (fields, state) = match fields.as_slice() {
        [head @ .., last] if head.len() == 7 => (head, MailState::parse(last).ok_or_else(bad)?),
        all => (all, MailState::Queued),
    };
    let &[attempts, expires, created, resend, email, mac, mail_ref] = fields else {
        return Err(bad());
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let code = CodeRecord {
        session: session.clone(),
        purpose,
        email: email.to_owned(),
        mac: mac.to_owned(),
        created_at: num(created)?,
        expires_at: num(expires)?,
        resend_available_at: num(resend)?,
        attempts: attempts.parse().map_err(|_| bad())?,
        mail_ref: mail_ref.to_owned(),
    };
    Ok((code, state.delivery()))
}

/// Where a code's mail stands, kept in the code record (`MAIL_STATE` writes these letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MailState {
    Queued,
    /// Queued again after a failed attempt.
    Retrying,
    Sent,
    Failed,
}

impl MailState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            MailState::Queued => "q",
            MailState::Retrying => "qf",
            MailState::Sent => "s",
            MailState::Failed => "f",
        }
    }
    fn parse(s: &str) -> Option<MailState> {
        Some(match s {
            "q" => MailState::Queued,
            "qf" => MailState::Retrying,
            "s" => MailState::Sent,
            "f" => MailState::Failed,
            _ => return None,
        })
    }
    pub(super) fn delivery(self) -> Delivery {
        match self {
            MailState::Queued => delivery_of("queued", false),
            MailState::Retrying => delivery_of("queued", true),
            MailState::Sent => delivery_of("sent", false),
            MailState::Failed => delivery_of("failed", false),
        }
    }
}

/// A queued mail as its queue entry, which is the whole mail (`mail.rs`):
/// `ref␟attempts␟expires␟created␟code key␟to␟order`, the code key being the Redis key of the
/// code the mail carries (where its delivery state goes).
pub(super) fn encode_mail_entry(
    code_key: &str,
    m: &OutgoingMail,
    attempts: u32,
) -> StoreResult<String> {
    no_sep(&[&m.mail_ref, code_key, &m.to, &m.order])?;
    let mut out =
        String::with_capacity(64 + m.mail_ref.len() + code_key.len() + m.to.len() + m.order.len());
    push_fields(
        &mut out,
        &[
            Field::Text(&m.mail_ref),
            Field::Num(i64::from(attempts)),
            Field::Num(m.expires_at),
            Field::Num(m.created_at),
            Field::Text(code_key),
            Field::Text(&m.to),
            Field::Text(&m.order),
        ],
    );
    Ok(out)
}

/// The mail of a queue entry (its receipt is the entry itself) and the key of its code.
pub(super) fn decode_mail_entry(raw: String) -> StoreResult<(QueuedMail, String)> {
    let bad = || corrupt("queued mail");
    let fields: Vec<&str> = raw.split(SEP).collect();
    let &[mail_ref, attempts, expires, created, code_key, to, order] = fields.as_slice() else {
        return Err(bad());
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let mail = OutgoingMail {
        mail_ref: mail_ref.to_owned(),
        // The entry names its code as a key; the receipt keeps that name for the worker.
        code: None,
        to: to.to_owned(),
        order: order.to_owned(),
        expires_at: num(expires)?,
        created_at: num(created)?,
    };
    let attempts = attempts.parse().map_err(|_| bad())?;
    let code_key = code_key.to_owned();
    Ok((
        QueuedMail {
            mail,
            attempts,
            receipt: raw,
        },
        code_key,
    ))
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
    // A line feed would start a code (`CODE_MARK`); no header holds one, a caller's text might.
    let spaced;
    let ua = if ua.contains(CODE_MARK) {
        spaced = ua.replace(CODE_MARK, " ");
        spaced.as_str()
    } else {
        ua
    };
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
    // Every code is an ASCII control character: copy the text between them as it is.
    let mut rest = packed;
    while let Some(at) = rest.bytes().position(|b| b < b' ') {
        ua.push_str(&rest[..at]);
        let c = char::from(rest.as_bytes()[at]);
        match UA_CODES.iter().position(|&code| code == c) {
            Some(i) => ua.push_str(UA_TOKENS[i]),
            None => ua.push(c),
        }
        rest = &rest[at + 1..];
    }
    ua.push_str(rest);
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
    fn codes_keep_their_mail_state_and_entries_hold_the_whole_mail() {
        let key = SessionKey::parse(&"cd".repeat(32)).expect("key");
        let c = CodeRecord {
            session: key.clone(),
            purpose: CodePurpose::Login,
            email: "a@example.com".into(),
            mac: "m4c".into(),
            created_at: 1,
            expires_at: 2,
            resend_available_at: 3,
            attempts: 4,
            mail_ref: "r".into(),
        };
        let raw = encode_code(&c).expect("encodes");
        let back = decode_code(&key, CodePurpose::Login, &raw).expect("decodes");
        assert_eq!(
            (back.0.mail_ref.as_str(), back.0.attempts, back.1),
            ("r", 4, Delivery::Queued)
        );
        // As the worker rewrites it, and as builds before the state was kept here wrote it.
        let sent = format!("{}\u{1f}s", raw.rsplit_once(SEP).expect("fields").0);
        let sent = decode_code(&key, CodePurpose::Login, &sent).expect("decodes");
        assert_eq!(sent.1, Delivery::Sent);
        let retrying = format!("{}\u{1f}qf", raw.rsplit_once(SEP).expect("fields").0);
        let retrying = decode_code(&key, CodePurpose::Login, &retrying).expect("decodes");
        assert_eq!(retrying.1, Delivery::Failed, "failed while it waits");
        let old = raw.rsplit_once(SEP).expect("fields").0;
        let old = decode_code(&key, CodePurpose::Login, old).expect("decodes");
        assert_eq!(old.1, Delivery::Queued);
        assert!(decode_code(&key, CodePurpose::Login, &format!("{raw}x")).is_err());

        let m = OutgoingMail {
            mail_ref: "ref".into(),
            code: None,
            to: "a@example.com".into(),
            order: "sealed".into(),
            expires_at: 10,
            created_at: 5,
        };
        let entry = encode_mail_entry("P{t}c:login", &m, 2).expect("encodes");
        let (q, code_key) = decode_mail_entry(entry.clone()).expect("decodes");
        assert_eq!(code_key, "P{t}c:login");
        assert_eq!((q.attempts, q.receipt.as_str()), (2, entry.as_str()));
        assert_eq!(
            (q.mail.to, q.mail.order, q.mail.expires_at),
            (m.to.clone(), m.order.clone(), 10)
        );
        let bad = OutgoingMail {
            to: "a\u{1f}b".into(),
            ..m
        };
        assert!(encode_mail_entry("k", &bad, 0).is_err());
        assert!(decode_mail_entry("ref".into()).is_err());
    }

    /// A session's record keeps its codes after its own fields; a mail's name of its code
    /// leads back to that record.
    #[test]
    fn codes_live_in_their_session_record() {
        let key = SessionKey::parse(&"ab".repeat(32)).expect("key");
        let s = SessionRecord {
            key: key.clone(),
            kind: SessionKind::Cookie,
            user: None,
            created_at: 1_800_000_000_000,
            last_seen_at: 1_800_000_000_000,
            idle_expires_at: 1_800_001_800_000,
            absolute_expires_at: 1_800_604_800_000,
            user_agent: "ua\nwith a line feed".into(),
            ip: "127.0.0.1".into(),
        };
        let c = CodeRecord {
            session: key.clone(),
            purpose: CodePurpose::Reset,
            email: "a@example.com".into(),
            mac: "m4c".into(),
            created_at: 1,
            expires_at: 2,
            resend_available_at: 3,
            attempts: 0,
            mail_ref: "r".into(),
        };
        let raw = encode_session_with_code(&s, &c).expect("encodes");
        assert_eq!(
            raw.matches(CODE_MARK).count(),
            1,
            "the user agent holds none"
        );
        let back = decode_session(&key, &raw).expect("decodes");
        assert_eq!(back.user_agent, "ua with a line feed");
        let codes = codes_in(&raw).expect("reads");
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].0, CodePurpose::Reset);
        let (code, _) = decode_code(&key, CodePurpose::Reset, codes[0].1).expect("decodes");
        assert_eq!((code.mac.as_str(), code.expires_at), ("m4c", 2));
        assert!(codes_in(&encode_session(&s).expect("encodes"))
            .expect("reads")
            .is_empty());
        assert!(codes_in(&format!("{raw}\nnothing")).is_err());
        let bad = CodeRecord {
            email: "a\n@example.com".into(),
            ..c
        };
        assert!(encode_session_with_code(&s, &bad).is_err());

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

    #[test]
    fn ipv4_text_is_the_usual_form() {
        for n in (0..=u32::MAX)
            .step_by(65_521)
            .chain([0, 1, 9, 10, 99, 100, 255, u32::MAX])
        {
            let a = Ipv4Addr::from(n.rotate_left(n % 32));
            assert_eq!(ipv4_text(a), a.to_string());
        }
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

    #[test]
    fn numbers_keys_and_index_members() {
        for n in [0, 1, 61, 62, -1, -62, 1_800_000_000_000, i64::MAX, i64::MIN] {
            assert_eq!(from_b62(&b62(n)), Some(n), "{n}");
        }
        assert_eq!(b62(1_800_000_000_000).len(), 7);
        for junk in ["", "-", "--1", "+1", "1 ", "ZZZZZZZZZZZZ"] {
            assert_eq!(from_b62(junk), None, "{junk:?}");
        }
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
}
