//! A code record ([`CODE`], kept in its session's record after `\n<purpose>␟`) with the state
//! of its mail, and a queued mail's entry ([`ENTRY`]), which is the whole mail.
use super::format::{CODE, CODE_MARK, ENTRY, SEP};
use super::session::encode_session;
use super::{no_sep, push_record, Field};
use crate::domain::{CodePurpose, SessionKey, SessionRecord};
use crate::store::redis::corrupt;
use crate::store::{delivery_of, CodeRecord, Delivery, OutgoingMail, QueuedMail, StoreResult};

const C_ATTEMPTS: usize = CODE.at("attempts");
const C_EXPIRES: usize = CODE.at("expires");
const C_CREATED: usize = CODE.at("created");
const C_RESEND: usize = CODE.at("resend");
const C_EMAIL: usize = CODE.at("email");
const C_MAC: usize = CODE.at("mac");
const C_MAIL_REF: usize = CODE.at("mail_ref");
const C_MAIL_STATE: usize = CODE.at("mail_state");
const E_MAIL_REF: usize = ENTRY.at("mail_ref");
const E_ATTEMPTS: usize = ENTRY.at("attempts");
const E_EXPIRES: usize = ENTRY.at("expires");
const E_CREATED: usize = ENTRY.at("created");
const E_CODE_KEY: usize = ENTRY.at("code_key");
const E_TO: usize = ENTRY.at("to");
const E_ORDER: usize = ENTRY.at("order");

/// A code record ([`CODE`]); the scripts rewrite its attempts and its mail state and keep the
/// rest as it is. The mail state ([`MailState`]) is queued when the code is issued, as its mail
/// is queued with it; the mail worker rewrites it (`MAIL_STATE`).
pub(crate) fn encode_code(c: &CodeRecord) -> StoreResult<String> {
    let mut out = String::with_capacity(CODE_RECORD_LEN);
    push_code(&mut out, c)?;
    Ok(out)
}

/// About the length of a code record (a 254-byte address takes more).
const CODE_RECORD_LEN: usize = 160;

fn push_code(out: &mut String, c: &CodeRecord) -> StoreResult<()> {
    no_sep(&[&c.email, &c.mac])?;
    let mut f = [Field::Num(0); CODE.len()];
    f[C_ATTEMPTS] = Field::Num(i64::from(c.attempts));
    f[C_EXPIRES] = Field::Num(c.expires_at);
    f[C_CREATED] = Field::Num(c.created_at);
    f[C_RESEND] = Field::Num(c.resend_available_at);
    f[C_EMAIL] = Field::Text(&c.email);
    f[C_MAC] = Field::Text(&c.mac);
    f[C_MAIL_REF] = Field::Text(&c.mail_ref);
    f[C_MAIL_STATE] = Field::Text(MailState::Queued.as_str());
    push_record(out, &CODE, &f);
    Ok(())
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
pub(crate) fn encode_session_with_code(s: &SessionRecord, c: &CodeRecord) -> StoreResult<String> {
    let mut out = encode_session(s)?;
    out.reserve(CODE_RECORD_LEN + 8);
    push_code_entry(&mut out, c)?;
    Ok(out)
}

/// The codes kept in a stored session record (active or pending), each as its purpose and
/// its code record, in stored order.
pub(crate) fn codes_in(raw: &str) -> StoreResult<Vec<(CodePurpose, &str)>> {
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
pub(crate) fn decode_code(
    session: &SessionKey,
    purpose: CodePurpose,
    raw: &str,
) -> StoreResult<(CodeRecord, Delivery)> {
    let bad = || corrupt("code");
    let f: Vec<&str> = raw.split(SEP).collect();
    // One field less: written before the mail's state was kept here, its mail queued then.
    let state = match f.len() {
        n if n == CODE.len() => MailState::parse(f[C_MAIL_STATE]).ok_or_else(bad)?,
        n if n == CODE.len() - 1 => MailState::Queued,
        _ => return Err(bad()),
    };
    let num = |i: usize| CODE.number(i, f[i]).ok_or_else(bad);
    let code = CodeRecord {
        session: session.clone(),
        purpose,
        email: f[C_EMAIL].to_owned(),
        mac: f[C_MAC].to_owned(),
        created_at: num(C_CREATED)?,
        expires_at: num(C_EXPIRES)?,
        resend_available_at: num(C_RESEND)?,
        attempts: f[C_ATTEMPTS].parse().map_err(|_| bad())?,
        mail_ref: f[C_MAIL_REF].to_owned(),
    };
    Ok((code, state.delivery()))
}

/// Where a code's mail stands, kept in the code record (`MAIL_STATE` writes these letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MailState {
    Queued,
    /// Queued again after a failed attempt.
    Retrying,
    Sent,
    Failed,
}

impl MailState {
    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn delivery(self) -> Delivery {
        match self {
            MailState::Queued => delivery_of("queued", false),
            MailState::Retrying => delivery_of("queued", true),
            MailState::Sent => delivery_of("sent", false),
            MailState::Failed => delivery_of("failed", false),
        }
    }
}

/// A queued mail as its queue entry ([`ENTRY`]), which is the whole mail, the code key being
/// the name of the code the mail carries (where its delivery state goes).
pub(crate) fn encode_mail_entry(
    code_key: &str,
    m: &OutgoingMail,
    attempts: u32,
) -> StoreResult<String> {
    no_sep(&[&m.mail_ref, code_key, &m.to, &m.order])?;
    let mut out =
        String::with_capacity(64 + m.mail_ref.len() + code_key.len() + m.to.len() + m.order.len());
    let mut f = [Field::Num(0); ENTRY.len()];
    f[E_MAIL_REF] = Field::Text(&m.mail_ref);
    f[E_ATTEMPTS] = Field::Num(i64::from(attempts));
    f[E_EXPIRES] = Field::Num(m.expires_at);
    f[E_CREATED] = Field::Num(m.created_at);
    f[E_CODE_KEY] = Field::Text(code_key);
    f[E_TO] = Field::Text(&m.to);
    f[E_ORDER] = Field::Text(&m.order);
    push_record(&mut out, &ENTRY, &f);
    Ok(out)
}

/// The mail of a queue entry (its receipt is the entry itself) and the key of its code.
pub(crate) fn decode_mail_entry(raw: String) -> StoreResult<(QueuedMail, String)> {
    let bad = || corrupt("queued mail");
    let f: Vec<&str> = raw.split(SEP).collect();
    if f.len() != ENTRY.len() {
        return Err(bad());
    }
    let num = |i: usize| ENTRY.number(i, f[i]).ok_or_else(bad);
    let mail = OutgoingMail {
        mail_ref: f[E_MAIL_REF].to_owned(),
        // The entry names its code as a key; the receipt keeps that name for the worker.
        code: None,
        to: f[E_TO].to_owned(),
        order: f[E_ORDER].to_owned(),
        expires_at: num(E_EXPIRES)?,
        created_at: num(E_CREATED)?,
    };
    let attempts = f[E_ATTEMPTS].parse().map_err(|_| bad())?;
    let code_key = f[E_CODE_KEY].to_owned();
    Ok((
        QueuedMail {
            mail,
            attempts,
            receipt: raw,
        },
        code_key,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionKind;
    use crate::store::redis::codec::decode_session;
    use crate::store::redis::codec::format::Record;

    /// Each field of a record as the table places it, by name.
    fn by_name<'a>(record: &Record, raw: &'a str) -> Vec<(&'static str, &'a str)> {
        let fields: Vec<&str> = raw.split(SEP).collect();
        assert_eq!(fields.len(), record.len(), "{raw:?}");
        record
            .fields
            .iter()
            .map(|(name, _)| *name)
            .zip(fields)
            .collect()
    }

    /// The codec writes every field where the record format puts it (`format.rs`, which the
    /// scripts follow too): a field moved in the codec alone fails here.
    /// A mail naming no code, as both entry tests queue it.
    fn mail() -> OutgoingMail {
        OutgoingMail {
            mail_ref: "ref".into(),
            code: None,
            to: "a@example.com".into(),
            order: "sealed".into(),
            expires_at: 10,
            created_at: 5,
        }
    }

    #[test]
    fn codes_and_entries_are_written_as_the_format_places_their_fields() {
        let key = SessionKey::parse(&"cd".repeat(32)).expect("key");
        let c = CodeRecord {
            session: key,
            purpose: CodePurpose::Login,
            email: "a@example.com".into(),
            mac: "m4c".into(),
            created_at: 11,
            expires_at: 22,
            resend_available_at: 33,
            attempts: 4,
            mail_ref: "r".into(),
        };
        let raw = encode_code(&c).expect("encodes");
        let expected = [
            ("attempts", "4"),
            ("expires", "22"),
            ("created", "11"),
            ("resend", "33"),
            ("email", "a@example.com"),
            ("mac", "m4c"),
            ("mail_ref", "r"),
            ("mail_state", "q"),
        ];
        let mut got = by_name(&CODE, &raw);
        got.sort();
        let mut expected = expected.to_vec();
        expected.sort();
        assert_eq!(got, expected);

        let m = mail();
        let raw = encode_mail_entry("P{t}c:login", &m, 2).expect("encodes");
        let mut got = by_name(&ENTRY, &raw);
        got.sort();
        let mut expected = [
            ("mail_ref", "ref"),
            ("attempts", "2"),
            ("expires", "10"),
            ("created", "5"),
            ("code_key", "P{t}c:login"),
            ("to", "a@example.com"),
            ("order", "sealed"),
        ];
        expected.sort();
        assert_eq!(got, expected);
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

        let m = mail();
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

    /// A session's record keeps its codes after its own fields.
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
    }
}
