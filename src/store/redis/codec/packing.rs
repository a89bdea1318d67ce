//! How the Redis backend packs a session's IP address and user agent into few bytes (a session
//! record is read on every authenticated request and held for weeks: docs/benchmarks.md has the
//! memory budget). Both packings are reversible and part of the stored format: once deployed
//! they change only compatibly. Must not: talk to Redis.
use super::format::{b62_u128, from_b62_u128, CODE_MARK};
use std::net::{Ipv4Addr, Ipv6Addr};

/// An IP address as stored: an IPv4 address in its usual form as the base-62 number of its 32
/// bits; an IPv6 address in its usual form as `!` and the base-62 number of its 128 bits when
/// that is shorter; anything else as it is, behind `=` when it holds neither `.` nor `:` (so
/// that it cannot read as a number).
pub(crate) fn ip_pack(ip: &str) -> String {
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

pub(crate) fn ip_unpack(packed: &str) -> Option<String> {
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

/// Fragments of the user agents of common browsers, each stored as one control character
/// ([`UA_CODES`], same position). A header value holds no control character (RFC 9110 §5.5),
/// so the packing is reversible; one that does anyway is stored raw behind [`UA_RAW`]. Part of
/// the stored format: append only, never reorder.
const UA_TOKENS: [&str; 26] = [
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

pub(crate) fn ua_pack(ua: &str) -> String {
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

pub(crate) fn ua_unpack(packed: &str) -> String {
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
    fn ipv4_text_is_the_usual_form() {
        for n in (0..=u32::MAX)
            .step_by(65_521)
            .chain([0, 1, 9, 10, 99, 100, 255, u32::MAX])
        {
            let a = Ipv4Addr::from(n.rotate_left(n % 32));
            assert_eq!(ipv4_text(a), a.to_string());
        }
    }
}
