//! The record format of the Redis backend, defined once: the separators, and for each record
//! the position and form of its fields. The codec (`codec.rs`) writes and reads every field at
//! the position this table gives it; the Lua scripts (`scripts.rs`) are built on a prelude
//! generated from the same table ([`lua_prelude`]) and name every field they touch by it
//! (`CODE_ATTEMPTS`, `ENTRY_CREATED`), never by a number or a pattern of their own. The tests
//! below and in `scripts.rs` hold the three together. What each key holds, and why:
//! docs/operations.md, "Redis: keys and records".
//!
//! Stored records outlive releases: a field moved or removed here signs everyone out (or drops
//! queued mail), so once deployed the format changes only compatibly (append fields, accept the
//! older form when reading). Must not: talk to Redis.

/// Field separator of every stored record (U+001F: no header, address or username holds it).
pub const SEP: char = '\u{1f}';
/// Starts a pending session record: `~<old session's tag>␟<record>`.
pub const PENDING: char = '~';
/// Starts each code kept in a session's record, after the session's own fields:
/// `\n<purpose>␟<code record>`. No field of a session or a code holds it, so the first one
/// ends the session's part.
pub const CODE_MARK: char = '\n';
/// A limit record: `<hits>:<window end>`, then `,<spacing>=<gap end>` for each running gap
/// (`store::Spacing`). Written by the scripts only; the store reads its head (`peek_limit`).
pub const LIMIT_WINDOW: char = ':';
pub const LIMIT_GAP: char = ',';
pub const LIMIT_GAP_END: char = '=';

/// How a field is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Decimal digits, `-` before a negative number.
    Decimal,
    /// Base 62 ([`B62`]), most significant digit first, `-` before a negative number.
    Base62,
    /// Text without [`SEP`] or [`CODE_MARK`].
    Text,
}

/// The fields of one kind of record, in stored order, joined by [`SEP`].
pub struct Record {
    /// What its fields are called in Lua: `<lua>_<FIELD NAME>`, the field's position from 1.
    pub lua: &'static str,
    pub fields: &'static [(&'static str, Form)],
}

impl Record {
    /// The position of a field, from 0; a name the record lacks fails the build where a
    /// constant is made of it.
    pub const fn at(&self, name: &str) -> usize {
        let mut i = 0;
        while i < self.fields.len() {
            if str_eq(self.fields[i].0, name) {
                return i;
            }
            i += 1;
        }
        panic!("no such field in this record")
    }

    /// How many fields it has (every record has some, hence no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> usize {
        self.fields.len()
    }

    /// The number in field `i`, read in its form.
    pub(crate) fn number(&self, i: usize, text: &str) -> Option<i64> {
        match self.fields[i].1 {
            Form::Decimal => text.parse().ok(),
            Form::Base62 => from_b62(text),
            Form::Text => None,
        }
    }

    /// `n` in the form of field `i`, appended to `out`.
    pub(crate) fn push_number(&self, i: usize, n: i64, out: &mut String) {
        match self.fields[i].1 {
            Form::Decimal => out.push_str(itoa::Buffer::new().format(n)),
            Form::Base62 => push_b62(n, out),
            Form::Text => debug_assert!(false, "a text field holds no number"),
        }
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A session record's fixed head; after it come the user's names and the user agent (last: it
/// may hold anything but a line feed, [`SEP`] included). Instants: creation in ms, last seen
/// after creation, idle expiry after last seen, absolute expiry after creation. `who` is the
/// kind (`c` cookie, `t` token; upper case when the username is the email's local part and
/// left out) and the user id; `ip` is packed (`packing.rs`). docs/operations.md has the whole
/// shape.
pub const SESSION: Record = Record {
    lua: "SESSION",
    fields: &[
        ("created", Form::Base62),
        ("seen", Form::Base62),
        ("idle", Form::Base62),
        ("absolute", Form::Base62),
        ("who", Form::Text),
        ("ip", Form::Text),
    ],
};

/// A code record, kept in its session's record after `\n<purpose>␟`. The mail state comes last
/// (`q` queued, `qf` queued after a failed attempt, `s` sent, `f` failed): records written
/// before it existed end at the mail reference and read as queued.
pub const CODE: Record = Record {
    lua: "CODE",
    fields: &[
        ("attempts", Form::Decimal),
        ("expires", Form::Decimal),
        ("created", Form::Decimal),
        ("resend", Form::Decimal),
        ("email", Form::Text),
        ("mac", Form::Text),
        ("mail_ref", Form::Text),
        ("mail_state", Form::Text),
    ],
};

/// A queued mail, the whole of it (the outbox's list and sorted set hold these): the code key
/// is the name of the code it carries (`Keys::code`), where its delivery state goes; the order
/// is sealed (`crypto::MailSeal`).
pub const ENTRY: Record = Record {
    lua: "ENTRY",
    fields: &[
        ("mail_ref", Form::Text),
        ("attempts", Form::Decimal),
        ("expires", Form::Decimal),
        ("created", Form::Decimal),
        ("code_key", Form::Text),
        ("to", Form::Text),
        ("order", Form::Text),
    ],
};

/// Every record the scripts may name.
pub const RECORDS: [&Record; 3] = [&SESSION, &CODE, &ENTRY];

// Both the codec and `MAIL_STATE` read a code record of one field less as one written before
// the mail state was kept.
const _: () = assert!(CODE.at("mail_state") == CODE.len() - 1);

/// The digits of base-62 numbers, as the codec and the Lua prelude write them.
pub const B62: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

pub(crate) fn b62_u128(mut n: u128) -> String {
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

pub(crate) fn push_b62(n: i64, out: &mut String) {
    if n < 0 {
        out.push('-');
    }
    out.push_str(&b62_u128(u128::from(n.unsigned_abs())));
}

pub(crate) fn from_b62_u128(s: &str) -> Option<u128> {
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

pub(crate) fn from_b62(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(digits) => {
            let n = i128::try_from(from_b62_u128(digits)?).ok()?;
            i64::try_from(-n).ok()
        }
        None => i64::try_from(from_b62_u128(s)?).ok(),
    }
}

/// The hits and the window end of a limit record; `None` when its head does not read.
pub(crate) fn limit_head(raw: &str) -> Option<(i64, i64)> {
    let (count, rest) = raw.split_once(LIMIT_WINDOW)?;
    let reset_at = rest.split_once(LIMIT_GAP).map_or(rest, |(r, _)| r);
    Some((count.parse().ok()?, reset_at.parse().ok()?))
}

/// A character as a Lua string literal.
fn lua_char(c: char) -> String {
    if c.is_ascii_alphanumeric() || "~:,=".contains(c) {
        format!("'{c}'")
    } else {
        format!("'\\{:03}'", u32::from(c))
    }
}

/// What every script starts with: the separators, each field's position as a constant
/// (`CODE_MAC = 6`, and `CODE_FIELDS = 8`, how many a record has), and the functions that read
/// and write fields by position, base-62 numbers, a session's codes and limit records.
pub fn lua_prelude() -> String {
    let mut lua = String::with_capacity(4096);
    let sep = lua_char(SEP);
    let mark = lua_char(CODE_MARK);
    lua.push_str(&format!(
        "local SEP, CODE_MARK, PENDING = {sep}, {mark}, {}\n",
        lua_char(PENDING)
    ));
    for r in RECORDS {
        let names: Vec<String> = r
            .fields
            .iter()
            .map(|(name, _)| format!("{}_{}", r.lua, name.to_ascii_uppercase()))
            .collect();
        let positions: Vec<String> = (1..=r.len()).map(|i| i.to_string()).collect();
        lua.push_str(&format!(
            "local {}, {}_FIELDS = {}, {}\n",
            names.join(", "),
            r.lua,
            positions.join(", "),
            r.len()
        ));
    }
    // `[^\031\n]*` and the like, in Lua's pattern syntax: neither separator is a magic character.
    let not = |chars: &[char]| {
        let inner: String = chars
            .iter()
            .map(|c| format!("\\{:03}", u32::from(*c)))
            .collect();
        format!("'[^{inner}]*'")
    };
    lua.push_str(&format!(
        "local CODE_ENTRY = {mark} .. '(' .. {} .. ')' .. {sep} .. '(' .. {} .. ')'\n",
        not(&[SEP, CODE_MARK]),
        not(&[CODE_MARK])
    ));
    let (w, g, e) = (
        lua_char(LIMIT_WINDOW),
        lua_char(LIMIT_GAP),
        lua_char(LIMIT_GAP_END),
    );
    lua.push_str(&format!(
        "local LIMIT_WINDOW, LIMIT_GAP, LIMIT_GAP_END = {w}, {g}, {e}\n\
         local LIMIT_HEAD = '^(%d+)' .. LIMIT_WINDOW .. '(%-?%d+)(.*)$'\n\
         local LIMIT_GAPS = LIMIT_GAP .. '([%w_]+)' .. LIMIT_GAP_END .. '(%-?%d+)'\n"
    ));
    lua.push_str(&format!(
        "local B62 = '{}'\n",
        std::str::from_utf8(B62).unwrap_or_default()
    ));
    lua.push_str(LUA_FUNCTIONS);
    lua
}

/// The prelude's functions (see [`lua_prelude`]). Numbers arrive as decimal strings; Lua's
/// doubles hold every millisecond instant exactly, and `%.0f` writes them back without an
/// exponent.
const LUA_FUNCTIONS: &str = r#"
local function span(s, i)
  local from = 1
  for _ = 2, i do
    local at = string.find(s, SEP, from, true)
    if not at then return nil end
    from = at + 1
  end
  local to = string.find(s, SEP, from, true)
  return from, (to or #s + 1) - 1
end
-- The i-th field of a record (from 1), nil when it has fewer.
local function field(s, i)
  local from, to = span(s, i)
  if from then return string.sub(s, from, to) end
  return nil
end
-- The record with its i-th field replaced by v, nil when it has fewer.
local function set_field(s, i, v)
  local from, to = span(s, i)
  if not from then return nil end
  return string.sub(s, 1, from - 1) .. v .. string.sub(s, to + 1)
end
local function count_fields(s)
  local _, n = string.gsub(s, SEP, '')
  return n + 1
end
local function dec(s)
  if not s or s == '' or s == '-' then return nil end
  local sign = 1
  if string.sub(s, 1, 1) == '-' then sign, s = -1, string.sub(s, 2) end
  local n = 0
  for i = 1, #s do
    local d = string.find(B62, string.sub(s, i, i), 1, true)
    if not d then return nil end
    n = n * 62 + d - 1
  end
  return sign * n
end
local function enc(n)
  if n < 0 then return '-' .. enc(-n) end
  local s = ''
  repeat
    local d = n % 62
    s = string.sub(B62, d + 1, d + 1) .. s
    n = (n - d) / 62
  until n == 0
  return s
end
-- A stored session as its own part and the list of its codes, {purpose, record} in stored order.
local function codes_of(v)
  local i = string.find(v, CODE_MARK, 1, true)
  if not i then return v, {} end
  local list = {}
  for p, c in string.gmatch(string.sub(v, i), CODE_ENTRY) do
    table.insert(list, {p, c})
  end
  return string.sub(v, 1, i - 1), list
end
local function with_codes(head, list)
  local parts = {head}
  for _, pc in ipairs(list) do table.insert(parts, pc[1] .. SEP .. pc[2]) end
  return table.concat(parts, CODE_MARK)
end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_base_62() {
        let b62 = |n: i64| {
            let mut s = String::new();
            push_b62(n, &mut s);
            s
        };
        for n in [0, 1, 61, 62, -1, -62, 1_800_000_000_000, i64::MAX, i64::MIN] {
            assert_eq!(from_b62(&b62(n)), Some(n), "{n}");
        }
        assert_eq!(b62(1_800_000_000_000).len(), 7);
        for junk in ["", "-", "--1", "+1", "1 ", "ZZZZZZZZZZZZ"] {
            assert_eq!(from_b62(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_prelude_names_every_field_at_its_position() {
        let lua = lua_prelude();
        assert!(lua.contains("local CODE_ATTEMPTS, CODE_EXPIRES, CODE_CREATED, CODE_RESEND, CODE_EMAIL, CODE_MAC, CODE_MAIL_REF, CODE_MAIL_STATE, CODE_FIELDS = 1, 2, 3, 4, 5, 6, 7, 8, 8\n"), "{lua}");
        // Pinned: Redis holds records in this order across releases.
        assert!(lua.contains("local SESSION_CREATED, SESSION_SEEN, SESSION_IDLE, SESSION_ABSOLUTE, SESSION_WHO, SESSION_IP, SESSION_FIELDS = 1, 2, 3, 4, 5, 6, 6\n"), "{lua}");
        assert!(lua.contains("local ENTRY_MAIL_REF, ENTRY_ATTEMPTS, ENTRY_EXPIRES, ENTRY_CREATED, ENTRY_CODE_KEY, ENTRY_TO, ENTRY_ORDER, ENTRY_FIELDS = 1, 2, 3, 4, 5, 6, 7, 7\n"), "{lua}");
        assert!(lua.contains("local SEP, CODE_MARK, PENDING = '\\031', '\\010', '~'\n"));
        assert!(lua.contains("local CODE_ENTRY = '\\010' .. '(' .. '[^\\031\\010]*' .. ')' .. '\\031' .. '(' .. '[^\\010]*' .. ')'\n"), "{lua}");
        for r in RECORDS {
            for (i, (name, _)) in r.fields.iter().enumerate() {
                assert_eq!(r.at(name), i);
            }
        }
    }

    #[test]
    fn limit_heads_read() {
        assert_eq!(limit_head("3:1800000000000"), Some((3, 1_800_000_000_000)));
        assert_eq!(limit_head("3:17,login=20,reset=21"), Some((3, 17)));
        for junk in ["", "3", "x:1", "1:x", "1:,login=2"] {
            assert_eq!(limit_head(junk), None, "{junk:?}");
        }
    }
}
