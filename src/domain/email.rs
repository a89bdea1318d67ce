//! An email address, checked once and kept in its one canonical form (STYLE §2).
//!
//! SPEC §3 "Accounts" says one canonical form is used for lookup, rate limits and storage, so two
//! spellings of one address (`Bob@Bücher.example`, `bob@xn--bcher-kva.example`) can never become
//! two accounts or two rate-limit buckets. The ban on whitespace and control characters keeps
//! CR/LF out of the mail headers the address ends up in. `Email::parse` is the only way to get an
//! `Email`, so an unchecked address cannot reach a store or SMTP.
//!
//! This module must not look anything up (no DNS, no MX) and does not apply the optional domain
//! blocklist: that is configuration, applied by the flows through [`Email::domain`].
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmail {
    #[error("the email address is empty")]
    Empty,
    #[error("the email address is longer than 254 characters")]
    TooLong,
    #[error("the email address contains a space, a line break, a control character or an invisible character")]
    ForbiddenCharacter,
    #[error("the email address has no @")]
    MissingAt,
    #[error("the email address has more than one @")]
    MultipleAt,
    #[error("the email address has nothing before the @")]
    EmptyLocalPart,
    #[error("the part of the email address before the @ is longer than 64 characters")]
    LocalPartTooLong,
    #[error("the part of the email address before the @ may only contain ASCII letters, digits and ! # $ % & ' * + - . / = ? ^ _ ` {{ | }} ~")]
    InvalidLocalPart,
    #[error("the part of the email address before the @ starts or ends with a dot, or has two dots in a row")]
    MisplacedDot,
    #[error("the email address has nothing after the @")]
    EmptyDomain,
    #[error("the domain of the email address needs at least two parts, like example.com")]
    DomainNotQualified,
    #[error("the domain of the email address is not a valid domain name")]
    InvalidDomain,
}

impl Email {
    /// Longest address, raw or canonical: RFC 5321 §4.5.3.1.3 (a 256-octet path minus `<>`).
    pub const MAX_LEN: usize = 254;
    /// Longest local part: RFC 5321 §4.5.3.1.1.
    pub const MAX_LOCAL_LEN: usize = 64;
    /// Longest DNS label: RFC 1035 §2.3.4.
    const MAX_LABEL_LEN: usize = 63;

    /// Checks `raw` and returns its canonical form: the local part lower-cased, `@`, and the
    /// domain in ASCII (IDNA, UTS #46) and lower case. Nothing is trimmed: a stray space is an
    /// error, not something to guess about.
    pub fn parse(raw: &str) -> Result<Email, InvalidEmail> {
        if raw.is_empty() {
            return Err(InvalidEmail::Empty);
        }
        // Only an input of more than 254 bytes can have more than 254 characters.
        if raw.len() > Self::MAX_LEN && raw.chars().count() > Self::MAX_LEN {
            return Err(InvalidEmail::TooLong);
        }
        if raw.chars().any(is_forbidden) {
            return Err(InvalidEmail::ForbiddenCharacter);
        }

        let mut parts = raw.split('@');
        let local = parts.next().unwrap_or_default();
        let domain = parts.next().ok_or(InvalidEmail::MissingAt)?;
        if parts.next().is_some() {
            return Err(InvalidEmail::MultipleAt);
        }

        check_local_part(local)?;
        let domain = canonical_domain(domain)?;

        let canonical = format!("{}@{}", local.to_ascii_lowercase(), domain);
        // Punycode can make a short Unicode domain longer than the limit.
        if canonical.len() > Self::MAX_LEN {
            return Err(InvalidEmail::TooLong);
        }
        Ok(Email(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part (ASCII, lowercase).
    pub fn domain(&self) -> &str {
        // `parse` guarantees exactly one `@`.
        let at = self.0.rfind('@').map_or(0, |i| i + 1);
        &self.0[at..]
    }
}

/// Whitespace of any script, control characters (CR, LF, NUL, tab, …) and the invisible
/// formatting characters that make an address look like something it is not (zero-width
/// characters, bidirectional overrides, soft hyphen, BOM).
fn is_forbidden(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// RFC 5322 dot-atom, ASCII only (no quoted strings, no SMTPUTF8 local parts).
fn check_local_part(local: &str) -> Result<(), InvalidEmail> {
    if local.is_empty() {
        return Err(InvalidEmail::EmptyLocalPart);
    }
    let allowed = |b: u8| {
        b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'(' | b')' | b',' | b':' | b';' | b'<' | b'>' | b'[' | b'\\' | b']'
            )
    };
    if !local.bytes().all(allowed) {
        return Err(InvalidEmail::InvalidLocalPart);
    }
    if local.len() > Email::MAX_LOCAL_LEN {
        return Err(InvalidEmail::LocalPartTooLong);
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(InvalidEmail::MisplacedDot);
    }
    Ok(())
}

/// The domain in ASCII and lower case, as a host name of at least two labels.
fn canonical_domain(domain: &str) -> Result<String, InvalidEmail> {
    if domain.is_empty() {
        return Err(InvalidEmail::EmptyDomain);
    }
    let ascii = idna::domain_to_ascii(domain)
        .map_err(|_| InvalidEmail::InvalidDomain)?
        .to_ascii_lowercase();

    let labels: Vec<&str> = ascii.split('.').collect();
    if !labels.iter().all(|label| is_host_label(label)) {
        return Err(InvalidEmail::InvalidDomain);
    }
    if labels.len() < 2 {
        return Err(InvalidEmail::DomainNotQualified);
    }
    // `user@127.0.0.1` is an address literal, not a domain.
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(InvalidEmail::InvalidDomain);
    }
    Ok(ascii)
}

/// RFC 1123 host name label: 1 to 63 of `[a-z0-9-]`, no hyphen at either end.
fn is_host_label(label: &str) -> bool {
    (1..=Email::MAX_LABEL_LEN).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Email {
    type Err = InvalidEmail;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Email::parse(s)
    }
}

/// Serialised as its canonical string. There is deliberately no `Deserialize`: input goes
/// through `parse`, so a bad address gets `INVALID_EMAIL`, not a JSON error.
impl serde::Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match Email::parse(raw) {
            Ok(email) => email.as_str().to_owned(),
            Err(e) => panic!("{raw:?} was refused: {e}"),
        }
    }

    fn err(raw: &str) -> InvalidEmail {
        match Email::parse(raw) {
            Ok(email) => panic!("{raw:?} was accepted as {email}"),
            Err(e) => e,
        }
    }

    #[test]
    fn ordinary_addresses_are_accepted() {
        assert_eq!(ok("alice@example.com"), "alice@example.com");
        assert_eq!(
            ok("a.b-c_d+tag@mail.example.co.uk"),
            "a.b-c_d+tag@mail.example.co.uk"
        );
        assert_eq!(ok("o'brien@example.ie"), "o'brien@example.ie");
        assert_eq!(
            ok("x!#$%&'*+/=?^_`{|}~-@example.com"),
            "x!#$%&'*+/=?^_`{|}~-@example.com"
        );
        assert_eq!(ok("1@2.example"), "1@2.example");
        assert_eq!(ok("user@xn--80ak6aa92e.com"), "user@xn--80ak6aa92e.com");
    }

    #[test]
    fn canonical_form_is_lower_case() {
        assert_eq!(ok("Alice.Smith@Example.COM"), "alice.smith@example.com");
        assert_eq!(
            Email::parse("BOB@EXAMPLE.ORG"),
            Email::parse("bob@example.org")
        );
    }

    #[test]
    fn internationalised_domains_share_one_canonical_form() {
        let unicode = Email::parse("bob@bücher.example");
        let punycode = Email::parse("bob@xn--bcher-kva.example");
        let upper = Email::parse("Bob@BÜCHER.Example");
        assert_eq!(unicode, punycode);
        assert_eq!(upper, punycode);
        let email = punycode.expect("valid");
        assert_eq!(email.as_str(), "bob@xn--bcher-kva.example");
        assert_eq!(email.domain(), "xn--bcher-kva.example");
        assert_eq!(ok("user@例え.jp"), "user@xn--r8jz45g.jp");
        // An ideographic full stop is a dot under IDNA.
        assert_eq!(ok("user@example。com"), "user@example.com");
    }

    #[test]
    fn line_breaks_and_control_characters_are_refused() {
        for raw in [
            "a@example.com\r\nBcc: victim@example.org",
            "a@example.com\n",
            "a\r@example.com",
            "a@exa\0mple.com",
            "a\t@example.com",
            "a@example.com\u{7f}",
            "a@example.com\u{85}",
        ] {
            assert_eq!(err(raw), InvalidEmail::ForbiddenCharacter, "{raw:?}");
        }
    }

    #[test]
    fn whitespace_is_refused_not_trimmed() {
        for raw in [
            " alice@example.com",
            "alice@example.com ",
            "ali ce@example.com",
            "alice@example.com\u{a0}",
            "alice@exa\u{3000}mple.com",
            "alice@example.com\u{2028}",
            "alice@\u{2003}example.com",
        ] {
            assert_eq!(err(raw), InvalidEmail::ForbiddenCharacter, "{raw:?}");
        }
    }

    #[test]
    fn invisible_characters_are_refused() {
        for raw in [
            "alice@exam\u{200b}ple.com",
            "alice@example.com\u{feff}",
            "alice@\u{202e}moc.elpmaxe",
            "alice@ex\u{ad}ample.com",
        ] {
            assert_eq!(err(raw), InvalidEmail::ForbiddenCharacter, "{raw:?}");
        }
    }

    #[test]
    fn exactly_one_at_sign() {
        assert_eq!(err(""), InvalidEmail::Empty);
        assert_eq!(err("alice.example.com"), InvalidEmail::MissingAt);
        assert_eq!(err("alice＠example.com"), InvalidEmail::MissingAt);
        assert_eq!(err("a@b@example.com"), InvalidEmail::MultipleAt);
        assert_eq!(err("\"a@b\"@example.com"), InvalidEmail::MultipleAt);
        assert_eq!(err("@example.com"), InvalidEmail::EmptyLocalPart);
        assert_eq!(err("alice@"), InvalidEmail::EmptyDomain);
        assert_eq!(err("@"), InvalidEmail::EmptyLocalPart);
    }

    #[test]
    fn local_part_is_ascii_without_specials() {
        for raw in [
            "jörg@example.de",
            "\"quoted\"@example.com",
            "a(comment)@example.com",
            "a,b@example.com",
            "a:b@example.com",
            "a;b@example.com",
            "<a>@example.com",
            "a[b]@example.com",
            "a\\b@example.com",
        ] {
            assert_eq!(err(raw), InvalidEmail::InvalidLocalPart, "{raw:?}");
        }
    }

    #[test]
    fn local_part_dots() {
        assert_eq!(err(".alice@example.com"), InvalidEmail::MisplacedDot);
        assert_eq!(err("alice.@example.com"), InvalidEmail::MisplacedDot);
        assert_eq!(err("ali..ce@example.com"), InvalidEmail::MisplacedDot);
        assert_eq!(err(".@example.com"), InvalidEmail::MisplacedDot);
    }

    #[test]
    fn local_part_is_at_most_64_characters() {
        let local = "a".repeat(64);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        assert_eq!(
            err(&format!("{local}b@example.com")),
            InvalidEmail::LocalPartTooLong
        );
    }

    #[test]
    fn address_is_at_most_254_characters() {
        // 64 + 1 + (63 + 1 + 63 + 1 + n + 1 + 3)
        let address = |n: usize| {
            format!(
                "{}@{}.{}.{}.com",
                "l".repeat(64),
                "a".repeat(63),
                "b".repeat(63),
                "c".repeat(n)
            )
        };
        assert_eq!(address(57).len(), 254);
        assert_eq!(ok(&address(57)).len(), 254);
        assert_eq!(err(&address(58)), InvalidEmail::TooLong);
        assert_eq!(err(&"a".repeat(100_000)), InvalidEmail::TooLong);
    }

    #[test]
    fn canonical_form_is_also_at_most_254_characters() {
        // Each label is 14 characters as typed and 45 once in punycode.
        let label = "中文域名测试例子网站邮件地址";
        let domain = [label; 5].join(".") + ".jp";
        let raw = format!("{}@{}", "a".repeat(64), domain);
        assert!(raw.chars().count() <= Email::MAX_LEN);
        let ascii = idna::domain_to_ascii(&domain).expect("valid IDN");
        assert!(64 + 1 + ascii.len() > Email::MAX_LEN);
        assert_eq!(err(&raw), InvalidEmail::TooLong);
    }

    #[test]
    fn domain_needs_two_labels() {
        assert_eq!(err("root@localhost"), InvalidEmail::DomainNotQualified);
        assert_eq!(err("root@com"), InvalidEmail::DomainNotQualified);
    }

    #[test]
    fn domain_labels_are_host_names() {
        for raw in [
            "a@example..com",
            "a@.example.com",
            "a@example.com.",
            "a@-example.com",
            "a@example-.com",
            "a@exa_mple.com",
            "a@exa%mple.com",
            "a@exa!mple.com",
            "a@[127.0.0.1]",
            "a@127.0.0.1",
            "a@example.123",
            "a@xn--a.example",
        ] {
            assert_eq!(err(raw), InvalidEmail::InvalidDomain, "{raw:?}");
        }
        let long_label = "a".repeat(63);
        assert!(Email::parse(&format!("a@{long_label}.com")).is_ok());
        assert_eq!(
            err(&format!("a@{long_label}b.com")),
            InvalidEmail::InvalidDomain
        );
        assert!(Email::parse("a@123.example").is_ok());
        assert!(Email::parse("a@ex-am-ple.com").is_ok());
    }

    #[test]
    fn accessors_agree() {
        let email = Email::parse("Carol@Sub.Example.NET").expect("valid");
        assert_eq!(email.as_str(), "carol@sub.example.net");
        assert_eq!(email.as_ref(), "carol@sub.example.net");
        assert_eq!(email.to_string(), "carol@sub.example.net");
        assert_eq!(email.domain(), "sub.example.net");
        assert_eq!("carol@sub.example.net".parse::<Email>(), Ok(email));
    }

    #[test]
    fn serialises_as_the_canonical_string() {
        let email = Email::parse("Dave@Example.com").expect("valid");
        assert_eq!(
            serde_json::to_string(&email).expect("serialises"),
            "\"dave@example.com\""
        );
    }

    #[test]
    fn every_error_says_what_is_wrong() {
        for e in [
            InvalidEmail::Empty,
            InvalidEmail::TooLong,
            InvalidEmail::ForbiddenCharacter,
            InvalidEmail::MissingAt,
            InvalidEmail::MultipleAt,
            InvalidEmail::EmptyLocalPart,
            InvalidEmail::LocalPartTooLong,
            InvalidEmail::InvalidLocalPart,
            InvalidEmail::MisplacedDot,
            InvalidEmail::EmptyDomain,
            InvalidEmail::DomainNotQualified,
            InvalidEmail::InvalidDomain,
        ] {
            assert!(e.to_string().starts_with("the "), "{e:?}: {e}");
        }
    }
}
