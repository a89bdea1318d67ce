//! A username, checked once (STYLE §2) against SPEC §3 "Accounts": 2 to 32 characters, letters
//! of any script, digits, `_`, `.` and `-`, unique ignoring case and look-alike forms, and never
//! a mix of scripts that can imitate another name.
//!
//! The name is kept as typed (in NFC, so a decomposed accent and a composed one are the same
//! text), for display. Uniqueness goes through [`Username::key`], the name's NFKC_Casefold form
//! (`alice`, `ALICE`, fullwidth `ａｌｉｃｅ` and `𝐚𝐥𝐢𝐜𝐞` are one key), which is what stores
//! index and sign-in matches. The Unicode work is done by kept crates: `unicode-normalization`
//! (NFC, NFKC), ICU4X's `icu_casemap` (full case folding, `ß` → `ss`), `unicode-security` (UTS
//! #39 identifier types and script sets).
//!
//! This module decides what a name may look like, not whether it is taken.
use std::fmt;
use std::str::FromStr;

use unicode_normalization::char::{canonical_combining_class, is_combining_mark};
use unicode_normalization::UnicodeNormalization;
use unicode_script::{Script, UnicodeScript};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::mixed_script::AugmentedScriptSet;
use unicode_security::GeneralSecurityProfile;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username {
    display: String,
    key: String,
}

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
    #[error("the username contains an invisible character ({0})")]
    Invisible(CodePoint),
    #[error("the username contains a character that is not used in names ({0})")]
    NotForNames(CodePoint),
    #[error(
        "the username starts with a combining mark, or repeats one or stacks more than 4 on one letter"
    )]
    Marks,
    #[error("the username mixes scripts ({0}) in a way that can imitate another name")]
    MixedScripts(String),
}

impl InvalidUsername {
    /// A stable name for the rule that refused the name, for clients (`data.rule`) and for the
    /// message in each language (`crate::i18n::username_rule`).
    pub fn rule(&self) -> &'static str {
        match self {
            InvalidUsername::Empty => "empty",
            InvalidUsername::TooShort => "too_short",
            InvalidUsername::TooLong => "too_long",
            InvalidUsername::InvalidCharacter => "invalid_character",
            InvalidUsername::Invisible(_) => "invisible_character",
            InvalidUsername::NotForNames(_) => "not_for_names",
            InvalidUsername::Marks => "combining_marks",
            InvalidUsername::MixedScripts(_) => "mixed_scripts",
        }
    }

    /// The variable part of the rule's message: a code point, or the scripts mixed.
    pub fn detail(&self) -> String {
        match self {
            InvalidUsername::Invisible(c) | InvalidUsername::NotForNames(c) => c.to_string(),
            InvalidUsername::MixedScripts(scripts) => scripts.clone(),
            _ => String::new(),
        }
    }
}

/// A character named the way Unicode names it, `U+3164`, since it may not show when printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodePoint(pub char);

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X}", self.0 as u32)
    }
}

impl Username {
    /// SPEC §3 Accounts: 2 to 32 characters (Unicode scalar values, not bytes), counted as typed.
    pub const MIN_CHARS: usize = 2;
    pub const MAX_CHARS: usize = 32;
    /// The longest key stores must hold. Compatibility forms expand (`ﬃ` is three letters, one
    /// Arabic ligature is 18 characters): a name whose key is longer than this is too long.
    pub const MAX_KEY_BYTES: usize = 1024;
    /// Which rule computed the keys a store holds; stores keep it with each key and recompute
    /// older keys when they open ([`crate::store::rekey`]). Version 1 lower-cased letter by
    /// letter; version 2 is this module's NFKC_Casefold.
    pub const KEY_VERSION: i64 = 2;

    /// A new name (registration, `mailcode user add`): every rule of SPEC §3.
    pub fn parse(raw: &str) -> Result<Username, InvalidUsername> {
        let name = Self::parse_for_login(raw)?;
        // The key is what must look like one name: a fullwidth or bold form only counts by the
        // letters it stands for.
        for c in name.key.chars() {
            if !is_allowed(c) {
                return Err(InvalidUsername::InvalidCharacter);
            }
            check_identifier_type(c)?;
        }
        check_marks(&name.display, &name.key)?;
        check_scripts(&name.key)?;
        Ok(name)
    }

    /// A name typed to sign in, or by an operator to find an account: the shape of a name and
    /// its key, without the rules added since accounts were first created (look-alike
    /// characters, mixed scripts), so an account made before them still signs in. Lookups only
    /// find what exists; nothing is created with a name parsed this way.
    pub fn parse_for_login(raw: &str) -> Result<Username, InvalidUsername> {
        if raw.is_empty() {
            return Err(InvalidUsername::Empty);
        }
        // A char is at most 4 bytes: anything longer than this is too long without counting.
        if raw.len() > 4 * Self::MAX_CHARS {
            return Err(InvalidUsername::TooLong);
        }
        let display: String = raw.nfc().collect();
        if !display.chars().all(is_allowed) {
            return Err(InvalidUsername::InvalidCharacter);
        }
        match display.chars().count() {
            n if n < Self::MIN_CHARS => return Err(InvalidUsername::TooShort),
            n if n > Self::MAX_CHARS => return Err(InvalidUsername::TooLong),
            _ => {}
        }
        let key = key_of(&display).ok_or(InvalidUsername::TooLong)?;
        Ok(Username { display, key })
    }

    /// The name as typed (NFC), for display.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The key used for uniqueness and sign-in: NFKC_Casefold, as Unicode defines it for
    /// caseless identifier matching (UAX #31 §5, Unicode §3.13 D146: NFKC(casefold(NFKC(x)))).
    /// Stores index this value: changing it needs a new [`Self::KEY_VERSION`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key of an account whose name only matched an older account's key once keys became
    /// NFKC_Casefold ([`crate::store::rekey`]): it signs in by its exact name (NFC). `=` is in no
    /// key (keys hold letters, digits, marks, `_`, `.` and `-`), so these never meet one.
    pub fn exact_key(&self) -> String {
        exact_key_of(&self.display)
    }

    /// The keys a sign-in by this name looks for, the one that wins first: an account that
    /// kept its exact name after a collision, then the account that holds the key.
    pub fn lookup_keys(&self) -> [String; 2] {
        [self.exact_key(), self.key.clone()]
    }
}

/// The current key of a name as a store holds it, which may not pass today's rules (made
/// before them): `None` when it is longer than [`Username::MAX_KEY_BYTES`].
pub fn key_of(name: &str) -> Option<String> {
    let nfkc: String = name.nfkc().collect();
    let folded = icu_casemap::CaseMapper::new().fold_string(&nfkc);
    let key: String = folded.nfkc().collect();
    (key.len() <= Username::MAX_KEY_BYTES).then_some(key)
}

/// See [`Username::exact_key`]; for a name as a store holds it.
pub fn exact_key_of(name: &str) -> String {
    let mut key = String::with_capacity(name.len() + 1);
    key.push('=');
    key.extend(name.nfc());
    key
}

/// Letters of any script, digits, combining marks (accents, the Indic virama and vowel signs)
/// and three symbols; everything else (spaces, punctuation, symbols, emoji, control and format
/// characters) is refused.
fn is_allowed(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric() || is_combining_mark(c) || matches!(c, '_' | '.' | '-')
}

/// UTS #39 §3.1 identifier types, tailored: the General Security Profile would also refuse
/// letters of historic and minority scripts (polytonic Greek `Ὀδυσσεύς`, Cherokee), which
/// SPEC §3 welcomes as "letters of any script"; what no name needs is refused: invisible
/// (default-ignorable) characters such as the Hangul fillers, which are letters to Unicode,
/// deprecated ones, and what is unassigned or not an identifier character at all.
fn check_identifier_type(c: char) -> Result<(), InvalidUsername> {
    match c.identifier_type() {
        Some(IdentifierType::Default_Ignorable) => Err(InvalidUsername::Invisible(CodePoint(c))),
        Some(
            IdentifierType::Not_Character
            | IdentifierType::Deprecated
            | IdentifierType::Not_XID
            | IdentifierType::Not_NFKC,
        )
        | None => Err(InvalidUsername::NotForNames(CodePoint(c))),
        Some(_) => Ok(()),
    }
}

/// UTS #39 §5.4 (optional detection), so that marks cannot hide or pile up: a name does not
/// start with a combining mark, and no letter carries the same mark twice or more than four
/// (counted in NFD, over marks that attach: a non-zero combining class).
fn check_marks(display: &str, key: &str) -> Result<(), InvalidUsername> {
    if display.chars().next().is_some_and(is_combining_mark) {
        return Err(InvalidUsername::Marks);
    }
    let mut run: Vec<char> = Vec::new();
    for c in key.nfd() {
        if canonical_combining_class(c) == 0 {
            run.clear();
            continue;
        }
        if run.contains(&c) || run.len() == 4 {
            return Err(InvalidUsername::Marks);
        }
        run.push(c);
    }
    Ok(())
}

/// UTS #39 §5.2 restriction level "Highly Restrictive" or stricter: the whole name is in one
/// script (digits, `_`, `.` and `-` belong to every script; so do the scripts' shared marks),
/// or it is Latin with Han, Hiragana and Katakana (Japanese), Han and Bopomofo, or Han and
/// Hangul (Korean). So `аlice` (a Cyrillic `а`) and `pаypal` are refused, `张伟`, `Müller`,
/// `Алиса` and `山田たろう` are not.
///
/// `unicode_security::RestrictionLevelDetection` decides the same from the same script sets,
/// but first requires the untailored identifier profile (see [`check_identifier_type`]), so
/// it is asked here through the crate's [`AugmentedScriptSet`] directly.
fn check_scripts(key: &str) -> Result<(), InvalidUsername> {
    let mut all = AugmentedScriptSet::default();
    let mut without_latin = AugmentedScriptSet::default();
    for c in key.chars() {
        let set = AugmentedScriptSet::for_char(c);
        all.intersect_with(set);
        if !set.base.contains_script(Script::Latin) {
            without_latin.intersect_with(set);
        }
    }
    if !all.is_empty() || without_latin.hanb || without_latin.jpan || without_latin.kore {
        return Ok(());
    }
    Err(InvalidUsername::MixedScripts(scripts_of(key)))
}

/// The scripts of a name's letters in the order they first appear: "Cyrillic and Latin".
fn scripts_of(key: &str) -> String {
    let mut seen: Vec<Script> = Vec::new();
    for c in key.chars() {
        let s = c.script();
        if !matches!(s, Script::Common | Script::Inherited | Script::Unknown) && !seen.contains(&s)
        {
            seen.push(s);
        }
    }
    let names: Vec<&str> = seen.iter().map(|s| s.full_name()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.display
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
        serializer.serialize_str(&self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> String {
        match Username::parse(raw) {
            Ok(name) => name.key().to_owned(),
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
            "Müller",
            "Алиса",
            "Ὀδυσσεύς",
            "Ñandú",
            "Дмитрий",
            "محمد",
            "محمد٣",
            "नमन",
            "क्षत्रिय",
            "ゆき",
            "山田たろう",
            "ᏣᎳᎩ",
            "__",
            "a.b",
            "İstanbul",
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
            "a\u{200d}b",
            "😀😀",
            "a+b",
            "a=b",
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
        // Thirty-two ligatures are 32 characters as typed, and 96 letters of key.
        assert_eq!(key(&"ﬃ".repeat(32)), "ffi".repeat(32));
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
        assert_eq!(key("ὈΔΥΣΣΕΎΣ"), key("Ὀδυσσεύς"));
    }

    #[test]
    fn compatibility_forms_are_the_name_they_stand_for() {
        for raw in ["ａｌｉｃｅ", "ＡＬＩＣＥ", "𝐚𝐥𝐢𝐜𝐞", "ALICE", "ａlice"]
        {
            assert_eq!(key(raw), "alice", "{raw:?}");
        }
        assert_eq!(key("ﬁsh"), "fish");
        assert_eq!(key("LouisⅫ"), "louisxii");
        assert_eq!(key("x²"), "x2");
        assert_eq!(key("ǅemal"), key("DŽEMAL"));
    }

    #[test]
    fn full_case_folding_goes_beyond_lower_case() {
        // `to_lowercase` keeps `ß`; folding spells it as it is matched.
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("Straße"), "strasse");
        // Georgian Mtavruli capitals (Unicode 11) fold to Mkhedruli.
        assert_eq!(key("ᲐᲚᲘᲡᲐ"), key("ალისა"));
        // Cherokee folds to its capitals: small letters are the later addition.
        assert_eq!(key("ꮳꮃꭹ"), key("ᏣᎳᎩ"));
    }

    #[test]
    fn canonically_equal_spellings_are_one_name() {
        let composed = Username::parse("Zoë").expect("composed");
        let decomposed = Username::parse("Zoe\u{308}").expect("decomposed");
        assert_eq!(decomposed.as_str(), "Zoë", "kept in NFC");
        assert_eq!(composed, decomposed);
    }

    #[test]
    fn mixed_scripts_that_can_imitate_are_refused_naming_the_scripts() {
        assert_eq!(
            Username::parse("аlice"),
            Err(InvalidUsername::MixedScripts("Cyrillic and Latin".into()))
        );
        assert_eq!(
            Username::parse("pаypal"),
            Err(InvalidUsername::MixedScripts("Latin and Cyrillic".into()))
        );
        assert_eq!(
            Username::parse("Ωmega"),
            Err(InvalidUsername::MixedScripts("Greek and Latin".into()))
        );
        // Latin with Arabic-Indic digits is Latin and Arabic.
        assert!(matches!(
            Username::parse("user٣"),
            Err(InvalidUsername::MixedScripts(_))
        ));
        assert_eq!(
            Username::parse("аlice").unwrap_err().to_string(),
            "the username mixes scripts (Cyrillic and Latin) in a way that can imitate another name"
        );
    }

    #[test]
    fn scripts_that_belong_together_may_mix() {
        for raw in [
            "Tanaka田中",
            "山田たろう",
            "ヤマダ山田",
            "김민준金",
            "abc张伟",
            "user_1.张",
        ] {
            assert!(Username::parse(raw).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn invisible_characters_are_refused_naming_them() {
        // The Hangul fillers are letters to Unicode, and show nothing.
        assert_eq!(
            Username::parse("a\u{3164}b"),
            Err(InvalidUsername::Invisible(CodePoint('\u{1160}')))
        );
        assert_eq!(
            Username::parse("\u{115f}\u{115f}"),
            Err(InvalidUsername::Invisible(CodePoint('\u{115f}')))
        );
        assert_eq!(
            Username::parse("a\u{3164}b").unwrap_err().to_string(),
            "the username contains an invisible character (U+1160)"
        );
        // A deprecated Khmer letter; a letter that Unicode keeps out of identifiers.
        assert_eq!(
            Username::parse("\u{1780}\u{17a3}"),
            Err(InvalidUsername::NotForNames(CodePoint('\u{17a3}')))
        );
        assert_eq!(
            Username::parse("a\u{2e2f}"),
            Err(InvalidUsername::NotForNames(CodePoint('\u{2e2f}')))
        );
    }

    #[test]
    fn marks_cannot_lead_repeat_or_pile_up() {
        assert_eq!(Username::parse("\u{301}ab"), Err(InvalidUsername::Marks));
        assert_eq!(
            Username::parse("ae\u{301}\u{301}"),
            Err(InvalidUsername::Marks)
        );
        assert_eq!(
            Username::parse("ae\u{300}\u{301}\u{302}\u{303}\u{304}"),
            Err(InvalidUsername::Marks)
        );
        // Vietnamese: two marks on one letter.
        assert!(Username::parse("Nguyễn").is_ok());
        assert!(Username::parse("ae\u{323}\u{302}").is_ok());
    }

    #[test]
    fn sign_in_accepts_names_made_before_the_new_rules() {
        // Made when mixing scripts was allowed: it still signs in, by its key.
        let old = Username::parse_for_login("аlice").expect("the shape of a name");
        assert_eq!(old.key(), "аlice");
        assert_eq!(
            Username::parse_for_login("ＡＬＩＣＥ").unwrap().key(),
            "alice"
        );
        assert_eq!(
            Username::parse_for_login("al ice"),
            Err(InvalidUsername::InvalidCharacter)
        );
        assert_eq!(
            Username::parse_for_login("a"),
            Err(InvalidUsername::TooShort)
        );
    }

    #[test]
    fn exact_keys_never_meet_a_key() {
        let name = Username::parse("ａｌｉｃｅ").expect("valid");
        assert_eq!(name.exact_key(), "=ａｌｉｃｅ");
        assert_eq!(
            name.lookup_keys(),
            ["=ａｌｉｃｅ".to_owned(), "alice".to_owned()]
        );
        assert_eq!(exact_key_of("Zoe\u{308}"), "=Zoë");
    }

    #[test]
    fn display_and_as_ref_are_as_typed() {
        let name = Username::parse("Bob.Jones").expect("valid");
        assert_eq!(name.to_string(), "Bob.Jones");
        assert_eq!(name.as_ref(), "Bob.Jones");
        assert_eq!("Bob.Jones".parse::<Username>(), Ok(name));
    }

    #[test]
    fn every_error_says_what_is_wrong_and_names_its_rule() {
        let mut rules = std::collections::HashSet::new();
        for e in [
            InvalidUsername::Empty,
            InvalidUsername::TooShort,
            InvalidUsername::TooLong,
            InvalidUsername::InvalidCharacter,
            InvalidUsername::Invisible(CodePoint('\u{3164}')),
            InvalidUsername::NotForNames(CodePoint('ŉ')),
            InvalidUsername::Marks,
            InvalidUsername::MixedScripts("Cyrillic and Latin".into()),
        ] {
            assert!(e.to_string().starts_with("the username"), "{e:?}: {e}");
            assert!(rules.insert(e.rule()), "{e:?}: one rule each");
        }
    }
}
