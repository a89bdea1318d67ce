//! A username, checked once (STYLE §2) against SPEC §3 "Accounts": 2 to 32 characters, letters
//! of any script, digits, `_`, `.` and `-`.
//!
//! The name is kept as typed, for display; uniqueness ignores case, through [`Username::key`],
//! which is what stores must index. This module does not decide whether a name is taken, and does
//! not police look-alike characters across scripts.
//!
//! "Letters" means `char::is_alphabetic`. Combining marks that are not alphabetic (the Indic
//! virama, a decomposed accent such as `e` + U+0301) are refused, so a name must be typed in
//! composed form and some Indic spellings cannot be used; widening that needs a Unicode
//! category table, which the standard library does not have.
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUsername {
    #[error("the username is empty")]
    Empty,
    #[error("the username must be at least 2 characters long")]
    TooShort,
    #[error("the username must be at most 32 characters long")]
    TooLong,
    #[error("the username may only contain letters, digits, '_', '.' and '-'")]
    InvalidCharacter,
}

impl Username {
    /// SPEC §3 Accounts: 2 to 32 characters (Unicode scalar values, not bytes).
    pub const MIN_CHARS: usize = 2;
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Username, InvalidUsername> {
        if raw.is_empty() {
            return Err(InvalidUsername::Empty);
        }
        // A char is at most 4 bytes: anything longer than this is too long without counting.
        if raw.len() > 4 * Self::MAX_CHARS {
            return Err(InvalidUsername::TooLong);
        }
        if !raw.chars().all(is_allowed) {
            return Err(InvalidUsername::InvalidCharacter);
        }
        match raw.chars().count() {
            n if n < Self::MIN_CHARS => Err(InvalidUsername::TooShort),
            n if n > Self::MAX_CHARS => Err(InvalidUsername::TooLong),
            _ => Ok(Username(raw.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key used for uniqueness, ignoring case (Unicode lowercase).
    ///
    /// Lower-cased one character at a time, so the result does not depend on where a letter
    /// stands (`str::to_lowercase` turns a final `Σ` into `ς`), and with `ς` folded into `σ`, so
    /// `ΑΣ`, `ας` and `ασ` are one name. Stores index this value: changing it needs a migration.
    pub fn key(&self) -> String {
        self.0
            .chars()
            .flat_map(char::to_lowercase)
            .map(|c| if c == 'ς' { 'σ' } else { c })
            .collect()
    }
}

fn is_allowed(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric() || matches!(c, '_' | '.' | '-')
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Username {
    type Err = InvalidUsername;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Username::parse(s)
    }
}

/// Serialised as typed. No `Deserialize`: input goes through `parse`.
impl serde::Serialize for Username {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> String {
        match Username::parse(raw) {
            Ok(name) => name.key(),
            Err(e) => panic!("{raw:?} was refused: {e}"),
        }
    }

    #[test]
    fn letters_of_any_script_digits_and_three_symbols() {
        for raw in [
            "al",
            "alice",
            "Alice_Smith-2.0",
            "张伟",
            "Ñandú",
            "Дмитрий",
            "محمد",
            "नमन",
            "ゆき",
            "user٣",
            "__",
            "a.b",
        ] {
            let name = Username::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(name.as_str(), raw, "kept as typed");
        }
    }

    #[test]
    fn other_characters_are_refused() {
        for raw in [
            "al ice",
            " alice",
            "alice ",
            "alice@example",
            "al/ice",
            "al'ice",
            "alice!",
            "a\u{0}b",
            "a\nb",
            "a\u{200b}b",
            "😀😀",
            "a+b",
        ] {
            assert_eq!(
                Username::parse(raw),
                Err(InvalidUsername::InvalidCharacter),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert_eq!(Username::parse(""), Err(InvalidUsername::Empty));
        assert_eq!(Username::parse("a"), Err(InvalidUsername::TooShort));
        assert_eq!(Username::parse("张"), Err(InvalidUsername::TooShort));
        assert!(Username::parse("张伟").is_ok());
        assert!(Username::parse(&"a".repeat(32)).is_ok());
        assert!(
            Username::parse(&"伟".repeat(32)).is_ok(),
            "96 bytes, 32 chars"
        );
        assert_eq!(
            Username::parse(&"a".repeat(33)),
            Err(InvalidUsername::TooLong)
        );
        assert_eq!(
            Username::parse(&"伟".repeat(33)),
            Err(InvalidUsername::TooLong)
        );
        assert_eq!(
            Username::parse(&"a".repeat(100_000)),
            Err(InvalidUsername::TooLong)
        );
    }

    #[test]
    fn key_ignores_case() {
        assert_eq!(key("Alice"), key("aLICE"));
        assert_eq!(key("Alice"), "alice");
        assert_eq!(key("ДМИТРИЙ"), key("дмитрий"));
        assert_eq!(key("ÑANDÚ"), "ñandú");
        assert_ne!(key("alice"), key("alice1"));
    }

    #[test]
    fn key_folds_greek_final_sigma() {
        assert_eq!(key("ΑΣ"), key("ας"));
        assert_eq!(key("ΑΣ"), key("ασ"));
        assert_eq!(key("ΟΔΟΣ"), key("οδος"));
    }

    #[test]
    fn display_and_as_ref_are_as_typed() {
        let name = Username::parse("Bob.Jones").expect("valid");
        assert_eq!(name.to_string(), "Bob.Jones");
        assert_eq!(name.as_ref(), "Bob.Jones");
        assert_eq!("Bob.Jones".parse::<Username>(), Ok(name));
    }

    #[test]
    fn every_error_says_what_is_wrong() {
        for e in [
            InvalidUsername::Empty,
            InvalidUsername::TooShort,
            InvalidUsername::TooLong,
            InvalidUsername::InvalidCharacter,
        ] {
            assert!(e.to_string().starts_with("the username"), "{e:?}: {e}");
        }
    }
}
