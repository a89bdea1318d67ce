//! A password in memory, and the policy a new one must meet (SPEC §3 "Accounts": 8 to 128
//! characters, the most common passwords refused).
//!
//! The policy applies when a password is set (`parse`); signing in with an existing one only needs
//! a sane length (`parse_for_login`), so tightening the policy never locks anyone out. This
//! module must not hash (that is a separate, slow step off the async threads) and must never let
//! the value reach a log: `Debug` prints `Password(***)` and there is no `Display`.
use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

#[derive(Clone)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPassword {
    #[error("the password is too short: a new password needs at least 8 characters")]
    TooShort,
    #[error("the password is longer than 128 characters")]
    TooLong,
    #[error("the password is one of the most commonly used passwords; choose another")]
    TooCommon,
}

/// The most common passwords of 8 characters or more, lower case, one a line. Taken in rank
/// order from the "10 million passwords" list (SecLists, `10-million-password-list-top-10000`),
/// leaving out bot-generated strings, slurs and sexually explicit entries, plus a few common in newer
/// breach lists (`p@ssw0rd`, `admin123`, …).
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
});

impl Password {
    /// SPEC §3 Accounts: length 8 to 128, in characters (Unicode scalar values).
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    /// A new password (registration, reset, `mailcode user passwd`): the whole policy applies.
    pub fn parse(raw: &str) -> Result<Password, InvalidPassword> {
        let chars = char_count(raw)?;
        if chars < Self::MIN_CHARS {
            return Err(InvalidPassword::TooShort);
        }
        if COMMON.contains(raw.to_lowercase().as_str()) {
            return Err(InvalidPassword::TooCommon);
        }
        Ok(Password(raw.to_owned()))
    }

    /// For verifying an existing password at login: accepts any length 1..=128 without the
    /// common list check (policy applies only when setting a password).
    pub fn parse_for_login(raw: &str) -> Result<Password, InvalidPassword> {
        if char_count(raw)? == 0 {
            return Err(InvalidPassword::TooShort);
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The length in characters, refusing more than the maximum without walking a huge input.
fn char_count(raw: &str) -> Result<usize, InvalidPassword> {
    if raw.len() > 4 * Password::MAX_CHARS {
        return Err(InvalidPassword::TooLong);
    }
    match raw.chars().count() {
        n if n > Password::MAX_CHARS => Err(InvalidPassword::TooLong),
        n => Ok(n),
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_uncommon_password_is_accepted() {
        let password = Password::parse("correct horse battery staple").expect("valid");
        assert_eq!(password.expose(), "correct horse battery staple");
    }

    #[test]
    fn length_is_8_to_128_characters() {
        assert_eq!(
            Password::parse("").map(|_| ()),
            Err(InvalidPassword::TooShort)
        );
        assert_eq!(
            Password::parse("Xq7#pL2").map(|_| ()),
            Err(InvalidPassword::TooShort)
        );
        assert!(Password::parse("Xq7#pL2v").is_ok());
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert_eq!(
            Password::parse(&"x".repeat(129)).map(|_| ()),
            Err(InvalidPassword::TooLong)
        );
        assert_eq!(
            Password::parse(&"x".repeat(1_000_000)).map(|_| ()),
            Err(InvalidPassword::TooLong)
        );
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert_eq!(
            Password::parse("密码密码密码密").map(|_| ()),
            Err(InvalidPassword::TooShort),
            "7 characters, 21 bytes"
        );
        assert!(Password::parse("密码密码密码密码").is_ok());
        assert!(Password::parse(&"密".repeat(128)).is_ok(), "384 bytes");
        assert_eq!(
            Password::parse(&"密".repeat(129)).map(|_| ()),
            Err(InvalidPassword::TooLong)
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        for raw in [
            "password",
            "Password",
            "PASSWORD1",
            "12345678",
            "123456789",
            "qwertyuiop",
            "IloveYou",
            "1q2w3e4r",
            "P@ssw0rd",
        ] {
            assert_eq!(
                Password::parse(raw).map(|_| ()),
                Err(InvalidPassword::TooCommon),
                "{raw:?}"
            );
        }
        assert!(Password::parse("password but longer").is_ok());
    }

    #[test]
    fn every_listed_password_is_refused() {
        for common in COMMON.iter() {
            assert_eq!(
                Password::parse(common).map(|_| ()),
                Err(InvalidPassword::TooCommon),
                "{common:?}"
            );
            assert_eq!(
                Password::parse(&common.to_uppercase()).map(|_| ()),
                Err(InvalidPassword::TooCommon),
                "{common:?} in upper case"
            );
        }
    }

    #[test]
    fn the_list_is_well_formed() {
        let text = include_str!("common_passwords.txt");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 450, "only {} entries", lines.len());
        assert_eq!(COMMON.len(), lines.len(), "duplicates or blank lines");
        for line in lines {
            assert!(line.chars().count() >= Password::MIN_CHARS, "{line:?}");
            assert_eq!(line, line.to_lowercase(), "{line:?}");
            assert!(!line.chars().any(char::is_whitespace), "{line:?}");
        }
    }

    #[test]
    fn login_accepts_any_existing_password() {
        for raw in ["x", "password", "1234567", "12345678", &"x".repeat(128)] {
            let password = Password::parse_for_login(raw).expect("accepted at login");
            assert_eq!(password.expose(), raw);
        }
        assert_eq!(
            Password::parse_for_login("").map(|_| ()),
            Err(InvalidPassword::TooShort)
        );
        assert_eq!(
            Password::parse_for_login(&"x".repeat(129)).map(|_| ()),
            Err(InvalidPassword::TooLong)
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let password = Password::parse("s3cret-Value!").expect("valid");
        let printed = format!("{password:?} {:?}", Some(password.clone()));
        assert_eq!(printed, "Password(***) Some(Password(***))");
        assert!(!printed.contains("s3cret"));
    }

    #[test]
    fn every_error_says_what_is_wrong() {
        for e in [
            InvalidPassword::TooShort,
            InvalidPassword::TooLong,
            InvalidPassword::TooCommon,
        ] {
            assert!(e.to_string().starts_with("the password"), "{e:?}: {e}");
        }
    }
}
