//! One-time codes and what they are for. A code is six ASCII digits; anything else a client sends
//! in the `code` field is refused before any store is asked.
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl std::fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneTimeCode(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a code is exactly 6 digits")]
pub struct InvalidCode;

impl OneTimeCode {
    pub const DIGITS: usize = 6;

    pub fn parse(raw: &str) -> Result<Self, InvalidCode> {
        if raw.len() == Self::DIGITS && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(OneTimeCode(raw.to_owned()))
        } else {
            Err(InvalidCode)
        }
    }

    pub(crate) fn from_number(n: u32) -> Self {
        OneTimeCode(format!("{:06}", n % 1_000_000))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a code may be used for; a code for one purpose never works for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    Login,
    Register,
    Reset,
}

impl CodePurpose {
    pub const ALL: [CodePurpose; 3] = [
        CodePurpose::Login,
        CodePurpose::Register,
        CodePurpose::Reset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Login => "login",
            CodePurpose::Register => "register",
            CodePurpose::Reset => "reset",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_only() {
        assert!(OneTimeCode::parse("012345").is_ok());
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "١٢٣٤٥٦",
            " 12345",
            "12 345",
        ] {
            assert!(OneTimeCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_are_zero_padded() {
        assert_eq!(OneTimeCode::from_number(42).as_str(), "000042");
    }
}
