//! The Lua scripts of the Redis backend, each one atomic step of a named operation (STYLE §4).
//! Every script touches keys of one hash tag only, so each runs on Redis Cluster (the sign-in
//! protocol: docs/operations.md, "Redis: keys and records"), except [`HITS`] given several
//! limits and [`CODE_REQUEST`]: they take the limit keys of a request, which share no tag, so on
//! a Cluster the store runs `HITS` once per limit instead ("Limits across slots" there), and a
//! code request's writes as separate steps; and [`MAIL_STATE`] given the codes of several
//! sessions, which on a Cluster runs once per code (`outbox.rs`). Every script starts with the
//! prelude generated from the record format (`codec/format.rs`).
use super::codec::format::lua_prelude;
use super::Resend;
use ::redis::{Script, ScriptInvocation};
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

/// A script and whether it may run a second time when its connection dropped before its answer
/// came ([`Resend`]): each one says why where it is defined.
pub(super) struct Lua {
    script: Script,
    resend: Resend,
    /// Its own code, after the prelude (what the tests read).
    #[cfg_attr(not(test), allow(dead_code))]
    body: &'static str,
}

impl Lua {
    /// Running it twice leaves what running it once leaves (its answer may differ).
    fn idempotent(body: &'static str) -> Lua {
        Lua::new(body, Resend::Safe)
    }

    /// It counts, consumes or appends: sent again only when it surely never left.
    fn once(body: &'static str) -> Lua {
        Lua::new(body, Resend::IfUnsent)
    }

    /// Every script starts with the prelude generated from the record format (`format.rs`),
    /// which names each field it reads or writes.
    fn new(body: &'static str, resend: Resend) -> Lua {
        Lua {
            script: Script::new(&[lua_prelude().as_str(), body].concat()),
            resend,
            body,
        }
    }

    pub(super) fn prepare(&self) -> Call<'_> {
        Call {
            invocation: self.script.prepare_invoke(),
            resend: self.resend,
        }
    }
}

/// An invocation being built (`key`, `arg`), which remembers whether its script may be resent.
pub(super) struct Call<'a> {
    invocation: ScriptInvocation<'a>,
    pub(super) resend: Resend,
}

impl<'a> Deref for Call<'a> {
    type Target = ScriptInvocation<'a>;
    fn deref(&self) -> &Self::Target {
        &self.invocation
    }
}

impl DerefMut for Call<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.invocation
    }
}

// The Lua scripts. Numbers arrive as decimal strings; Lua's doubles hold every millisecond
// instant exactly, and `%.0f` writes them back without an exponent. Fields, separators and
// base-62 numbers come from the prelude (`format::lua_prelude`), never from a literal here.

/// `put` replaces or adds the code of a purpose in a session's list of codes (`codes_of` in the
/// prelude) and drops the codes whose expiry passed more than `grace` ms before `now` (a code
/// read after its expiry reads as expired for that long, then as missing, as SQL's sweep has
/// it).
macro_rules! codes_lua {
    () => {
        r#"
local function put(list, p, c, now, grace)
  local out = {}
  for _, pc in ipairs(list) do
    local x = tonumber(field(pc[2], CODE_EXPIRES) or '')
    if pc[1] ~= p and x and x + grace > now then table.insert(out, pc) end
  end
  table.insert(out, {p, c})
  return out
end
"#
    };
}

// After the fragments their scripts use (`codes_lua` above, `limits_lua` in `limits.rs`).
#[macro_use]
mod limits;
mod code_request;
mod codes;
mod outbox;
mod sessions;

pub(super) use code_request::CODE_REQUEST;
pub(super) use codes::{CHECK, CODE_PUT, REDEEM};
pub(super) use limits::HITS;
pub(super) use outbox::{HOOK_RETRY, MAIL_CLAIM, MAIL_NEXT_DUE, MAIL_REQUEUE, MAIL_STATE};
pub(super) use sessions::{ACTIVATE, DELETE, INDEX_ADD, TOUCH};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::codec::format::RECORDS;
    use std::collections::BTreeSet;

    fn all() -> [(&'static str, &'static Lua); 14] {
        [
            ("TOUCH", &TOUCH),
            ("CHECK", &CHECK),
            ("REDEEM", &REDEEM),
            ("CODE_PUT", &CODE_PUT),
            ("ACTIVATE", &ACTIVATE),
            ("DELETE", &DELETE),
            ("INDEX_ADD", &INDEX_ADD),
            ("HITS", &HITS),
            ("CODE_REQUEST", &CODE_REQUEST),
            ("MAIL_CLAIM", &MAIL_CLAIM),
            ("MAIL_NEXT_DUE", &MAIL_NEXT_DUE),
            ("MAIL_STATE", &MAIL_STATE),
            ("MAIL_REQUEUE", &MAIL_REQUEUE),
            ("HOOK_RETRY", &HOOK_RETRY),
        ]
    }

    /// A script's code without its comments and string literals (none of ours holds a quote).
    fn code_only(body: &str) -> String {
        let mut out = String::new();
        for line in body.lines() {
            let line = line.split("--").next().unwrap_or("");
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '\'' | '"' => quoted = !quoted,
                    _ if quoted => {}
                    _ => out.push(c),
                }
            }
            out.push('\n');
        }
        out
    }

    /// The arguments of a call whose text starts after its `(`, split at its own commas.
    fn top_level_args(text: &str) -> Vec<&str> {
        let (mut depth, mut start, mut args) = (0, 0, Vec::new());
        for (i, c) in text.char_indices() {
            match c {
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' if depth > 0 => depth -= 1,
                ')' => {
                    args.push(&text[start..i]);
                    break;
                }
                ',' if depth == 0 => {
                    args.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        args
    }

    /// The upper-case names a text uses (`CODE_MAC`, `KEYS`).
    fn names(code: &str) -> BTreeSet<String> {
        code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .map(str::to_owned)
            .collect()
    }

    /// The record format has one definition (`format.rs`): every field a script names is one
    /// the table defines, at the position the prelude gives it, and no script reads or writes
    /// a record by a position or a separator of its own. A field renamed or moved in the table
    /// alone, or in a script alone, fails here (or fails to build, in the codec).
    #[test]
    fn the_scripts_name_every_field_by_the_record_format() {
        let prelude = lua_prelude();
        let defined: BTreeSet<String> = prelude
            .lines()
            .filter_map(|l| l.strip_prefix("local "))
            .filter_map(|l| l.split_once(" = ").map(|(names, _)| names))
            .flat_map(|names| names.split(", ").map(str::to_owned))
            .collect();
        for r in RECORDS {
            for (i, (name, _)) in r.fields.iter().enumerate() {
                let constant = format!("{}_{}", r.lua, name.to_ascii_uppercase());
                assert!(defined.contains(&constant), "{constant} not in the prelude");
                // Its position, as the prelude assigns it.
                let line = prelude
                    .lines()
                    .find(|l| l.contains(&constant))
                    .expect("declared");
                let (names, values) = line
                    .strip_prefix("local ")
                    .and_then(|l| l.split_once(" = "))
                    .expect("a declaration");
                let at = names
                    .split(", ")
                    .position(|n| n == constant)
                    .expect("named");
                let value: usize = values
                    .split(", ")
                    .nth(at)
                    .expect("a value")
                    .parse()
                    .expect("a number");
                assert_eq!(value, i + 1, "{constant} is field {}", i + 1);
            }
        }
        for (script, lua) in all() {
            let code = code_only(lua.body);
            let allowed = ["KEYS", "ARGV", "NLIM"];
            for name in names(&code) {
                assert!(
                    allowed.contains(&name.as_str()) || defined.contains(&name),
                    "{script} names {name}, which the record format does not define"
                );
            }
            // Fields only through `field`/`set_field` and a name from the table.
            for call in ["field(", "set_field("] {
                for (at, _) in code.match_indices(call) {
                    let before = code[..at].chars().last();
                    if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        continue;
                    }
                    let args = top_level_args(&code[at + call.len()..]);
                    let index = args.get(1).map_or("", |a| a.trim());
                    let is_field = RECORDS.iter().any(|r| {
                        index
                            .strip_prefix(r.lua)
                            .and_then(|n| n.strip_prefix('_'))
                            .is_some_and(|n| {
                                r.fields.iter().any(|(f, _)| f.to_ascii_uppercase() == n)
                            })
                    });
                    assert!(
                        is_field,
                        "{script}: {call}…, {index}: not a field of the table"
                    );
                }
            }
            // No separator of the format written out, and no pattern built on one.
            for literal in ["\\0", "\\1", "\\n", "'~'", "':'", "','", "'='"] {
                assert!(!lua.body.contains(literal), "{script} spells out {literal}");
            }
            for matcher in ["string.match(", "string.gmatch(", "string.gsub("] {
                for (at, _) in code.match_indices(matcher) {
                    let call = code[at..].split(')').next().unwrap_or("");
                    assert!(!call.contains("SEP"), "{script} matches on SEP: {call}");
                }
            }
        }
    }
}
