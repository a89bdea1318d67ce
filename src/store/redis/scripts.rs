//! The Lua scripts of the Redis backend, each one atomic step of a named operation (STYLE §4).
//! Every script touches keys of one hash tag only, so each runs on Redis Cluster (see the
//! commit protocol in the module doc of `redis`), except [`HITS`] given several limits and
//! [`CODE_REQUEST`]: they take the limit keys of a request, which share no tag, so on a Cluster
//! the store runs `HITS` once per limit instead (see "Limits" there), and a code request's
//! writes as separate steps; and [`MAIL_STATE`] given the codes of several sessions, which on a
//! Cluster runs once per code (`mail.rs`).
use super::Resend;
use ::redis::{Script, ScriptInvocation};
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

/// A script and whether it may run a second time when its connection dropped before its answer
/// came ([`Resend`]): each one says why where it is defined.
pub(super) struct Lua {
    script: Script,
    resend: Resend,
}

impl Lua {
    /// Running it twice leaves what running it once leaves (its answer may differ).
    fn idempotent(code: &str) -> Lua {
        Lua {
            script: Script::new(code),
            resend: Resend::Safe,
        }
    }

    /// It counts, consumes or appends: sent again only when it surely never left.
    fn once(code: &str) -> Lua {
        Lua {
            script: Script::new(code),
            resend: Resend::IfUnsent,
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
// instant exactly, and `%.0f` writes them back without an exponent.

/// KEYS: session. ARGV: now, idle expiry. 0 = no such session (nothing written), 1 = touched,
/// 2 = pending (left to its sign-in). Rewrites the record's second and third numbers (last seen
/// after creation, idle expiry after last seen), base 62 as `codec` writes them.
/// Idempotent: it writes the instants it is given, so a second run writes the same record.
pub(super) static TOUCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local A = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
local function dec(s)
  local sign = 1
  if string.sub(s, 1, 1) == '-' then sign, s = -1, string.sub(s, 2) end
  local n = 0
  for i = 1, #s do
    local d = string.find(A, string.sub(s, i, i), 1, true)
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
    s = string.sub(A, d + 1, d + 1) .. s
    n = (n - d) / 62
  until n == 0
  return s
end
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 1, 1) == '~' then return 2 end
local c, ab, rest = string.match(v, '^(%-?%w+)\031%-?%w+\031%-?%w+\031(%-?%w+)(\031.*)$')
local created, absolute = nil, nil
if c then created, absolute = dec(c), dec(ab) end
if not created or not absolute then return redis.error_reply('corrupt session record') end
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
local nv = c .. '\031' .. enc(now - created) .. '\031' .. enc(idle - now) .. '\031' .. ab .. rest
local ttl = math.min(idle, created + absolute) - now
if ttl < 1000 then ttl = 1000 end
redis.call('SET', KEYS[1], nv, 'PX', string.format('%.0f', ttl), 'XX')
return 1
"#,
    )
});

/// The codes kept in a session's record (`codec::push_code_entry`: `\n<purpose>␟<code
/// record>` each, after the session's own fields, which hold no line feed). `codes_of` splits a
/// stored value into the session's part and the list of its codes, `{purpose, record}` in
/// stored order; `with_codes` joins them back; `put` replaces or adds the code of a purpose and
/// drops the codes whose expiry passed more than `grace` ms before `now` (a code read after its
/// expiry reads as expired for that long, then as missing, as SQL's sweep has it).
macro_rules! codes_lua {
    () => {
        r#"
local function codes_of(v)
  local i = string.find(v, '\n', 1, true)
  if not i then return v, {} end
  local list = {}
  for p, c in string.gmatch(string.sub(v, i), '\n([^\031\n]*)\031([^\n]*)') do
    table.insert(list, {p, c})
  end
  return string.sub(v, 1, i - 1), list
end
local function with_codes(head, list)
  local parts = {head}
  for _, pc in ipairs(list) do table.insert(parts, pc[1] .. '\031' .. pc[2]) end
  return table.concat(parts, '\n')
end
local function put(list, p, c, now, grace)
  local out = {}
  for _, pc in ipairs(list) do
    local x = tonumber(string.match(pc[2], '^%d+\031(%-?%d+)\031') or '')
    if pc[1] ~= p and x and x + grace > now then table.insert(out, pc) end
  end
  table.insert(out, {p, c})
  return out
end
"#
    };
}

/// The judgement shared by CHECK and REDEEM, as `sqlite.rs`'s `judge`, of the code a session's
/// record keeps for a purpose (`codes_lua`). KEYS: the session, its marker. ARGV: purpose,
/// email, mac, now, max attempts, action, the new session's tag (the marker's value), marker
/// TTL. Verdict: 0 missing, 1 expired, 2 dead, 3 right, 4 wrong.
macro_rules! judge_lua {
    () => {
        r#"
local v = redis.call('GET', KEYS[1])
local verdict, a = 0, 0
local head, list, at, c = nil, {}, nil, nil
if v then
  head, list = codes_of(v)
  for i, pc in ipairs(list) do
    if pc[1] == ARGV[1] then at, c = i, pc[2] end
  end
end
if c then
  local n, x, e, m = string.match(c, '^(%d+)\031(%-?%d+)\031%-?%d+\031%-?%d+\031([^\031]*)\031([^\031]*)\031')
  if not n then return redis.error_reply('corrupt code record') end
  a = tonumber(n)
  if e ~= ARGV[2] then verdict = 0
  elseif tonumber(x) <= tonumber(ARGV[4]) then verdict = 1
  elseif a >= tonumber(ARGV[5]) then verdict = 2
  elseif m == ARGV[3] then verdict = 3
  else verdict = 4 end
end
local function spend()
  a = a + 1
  list[at][2] = string.format('%d', a) .. string.sub(c, #string.match(c, '^%d+') + 1)
  redis.call('SET', KEYS[1], with_codes(head, list), 'KEEPTTL')
end
"#
    };
}

/// A wrong code spends an attempt. Returns {verdict, attempts}.
/// Sent once: a wrong code spends an attempt.
pub(super) static CHECK: LazyLock<Lua> = LazyLock::new(|| {
    Lua::once(concat!(
        codes_lua!(),
        judge_lua!(),
        r#"
if verdict == 4 then spend() end
return {verdict, a}
"#
    ))
});

/// Only a right code does anything: 'attempt' spends one ({1, attempts}); 'signin' consumes
/// the code and ends the old session with its codes (one key) and marks the sign-in ({2,
/// attempts}); {0, _} otherwise.
/// Sent once: it spends an attempt or consumes the code.
pub(super) static REDEEM: LazyLock<Lua> = LazyLock::new(|| {
    Lua::once(concat!(
        codes_lua!(),
        judge_lua!(),
        r#"
if verdict ~= 3 then return {0, a} end
if ARGV[6] == 'attempt' then
  spend()
  return {1, a}
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[7], 'PX', ARGV[8])
return {2, a}
"#
    ))
});

/// KEYS: a session. ARGV: purpose, code record, now, grace. Keeps the code in the session's
/// record (`put`), keeping its TTL. 1 = kept, 0 = no such session (nothing written).
/// Idempotent: a second run replaces the purpose's code with the same record.
pub(super) static CODE_PUT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(concat!(
        codes_lua!(),
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local head, list = codes_of(v)
list = put(list, ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('SET', KEYS[1], with_codes(head, list), 'KEEPTTL')
return 1
"#
    ))
});

/// KEYS: a session. Rewrites a pending record (`~<tag>␟<record>`) as active, its codes and TTL
/// kept. 1 = active now (or already), 0 = no such session.
/// Idempotent: a record already active stays as it is.
pub(super) static ACTIVATE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 1, 1) ~= '~' then return 1 end
local i = string.find(v, '\031', 1, true)
if not i then return redis.error_reply('corrupt session record') end
redis.call('SET', KEYS[1], string.sub(v, i + 1), 'KEEPTTL')
return 1
"#,
    )
});

/// KEYS: a session (its codes are in its record). Returns the record that was there.
/// Idempotent: a second run finds nothing and answers nil, as for a session already gone.
pub(super) static DELETE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
return v
"#,
    )
});

/// KEYS: a user's index. ARGV: the session's score (absolute expiry in seconds, rounded up),
/// its member, now (ms). Drops what expired and keeps the index until its latest session's
/// absolute expiry.
/// Idempotent: the same member with the same score, the same pruning and TTL.
pub(super) static INDEX_ADD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', math.floor(now / 1000)))
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #top < 2 then return 0 end
local ttl = tonumber(top[2]) * 1000 - now
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
return 1
"#,
    )
});

/// The limits of one request, as `hit_limit` (or a read without counting, `peek_limit`) for
/// each in order, stopping at the first refusal with `return {position of the refusing limit
/// (from 1), its window end}`. Needs `NLIM` (how many of the first KEYS are limits). ARGV: now,
/// then four per limit: its ceiling; the end of a window starting now, or '' to read only; the
/// name of its spacing, or ''; the end of a gap starting now (`store::Spacing`).
///
/// A limit record is `<hits>:<window end>`, then `,<name>=<gap end>` for each spacing whose gap
/// still runs (a record without any is what builds before spacings wrote). A spacing refuses
/// with its gap's end and counts nothing; the record lives until its window and its gaps end.
///
/// A counted hit first tries to write the record a missing key gets, `1:<window end>` with its
/// gap, by `SET … NX GET` (Redis 7.0), which writes only when the key is missing and answers
/// what was there: one command instead of a `GET` and a `SET` for the first hit of a client or
/// an address in a window, the usual case for a code request (docs/benchmarks.md, workload 2). When the
/// key was there, nothing was written and its record is counted as before.
macro_rules! limits_lua {
    () => {
        r#"
local now = tonumber(ARGV[1])
for i = 1, NLIM do
  local key, j = KEYS[i], 4 * i - 2
  local limit, fresh, sname = tonumber(ARGV[j]), ARGV[j + 1], ARGV[j + 2]
  local v, first = nil, false
  if fresh ~= '' then
    local rec, ttl = '1:' .. fresh, tonumber(fresh) - now
    if sname ~= '' then
      rec = rec .. ',' .. sname .. '=' .. ARGV[j + 3]
      ttl = math.max(ttl, tonumber(ARGV[j + 3]) - now)
    end
    if ttl < 1000 then ttl = 1000 end
    v = redis.call('SET', key, rec, 'NX', 'GET', 'PX', string.format('%.0f', ttl))
    first = not v
    if first and 1 > limit then return {i, tonumber(fresh)} end
  else
    v = redis.call('GET', key)
  end
  if not first then
    local n, reset, gaps = 0, nil, ''
    if v then
      local c, r, g = string.match(v, '^(%d+):(%-?%d+)(.*)$')
      if not c or (string.gsub(g, ',[%w_]+=%-?%d+', '')) ~= '' then
        return redis.error_reply('corrupt limit record')
      end
      if tonumber(r) > now then n, reset = tonumber(c), r end
      gaps = g
    end
    if fresh ~= '' then
      local keep, last = '', 0
      for name, e in string.gmatch(gaps, ',([%w_]+)=(%-?%d+)') do
        local t = tonumber(e)
        if t > now then
          if name == sname then return {i, t} end
          keep = keep .. ',' .. name .. '=' .. e
          if t > last then last = t end
        end
      end
      if sname ~= '' then
        keep = keep .. ',' .. sname .. '=' .. ARGV[j + 3]
        local t = tonumber(ARGV[j + 3])
        if t > last then last = t end
      end
      reset = reset or fresh
      n = n + 1
      local ttl = math.max(tonumber(reset), last) - now
      if ttl < 1000 then ttl = 1000 end
      redis.call('SET', key, string.format('%d', n) .. ':' .. reset .. keep, 'PX', string.format('%.0f', ttl))
      if n > limit then return {i, tonumber(reset)} end
    elseif reset and n + 1 > limit then
      return {i, tonumber(reset)}
    end
  end
end
"#
    };
}

/// Several limits in one step (`limits_lua`), every KEY a limit. Returns {0, 0} when every
/// limit allows, else {position of the refusing limit (from 1), the end of its window, or of
/// the gap of its spacing that refused}. With one KEY, it is `hit_limit` on any deployment.
/// Sent once: it counts.
pub(super) static HITS: LazyLock<Lua> = LazyLock::new(|| {
    Lua::once(concat!(
        "local NLIM = #KEYS\n",
        limits_lua!(),
        "return {0, 0}\n"
    ))
});

/// A code request's writes in one step, on one Redis (`CodeRequestWrites`): its limits as HITS; when
/// they allow, the code (in a new session's record written whole, or put into the record of the
/// visitor's session, `codes_lua`) and the queued mail (its entry in the list of new mails, as
/// `mail.rs` queues it). KEYS: the limits, then the session, the list. ARGV: as HITS, then
/// from `b = 4 * limits + 2`: the new session's record with its code, or '' for an existing
/// session; its TTL; for an existing session the code's purpose, its record and grace (`put`),
/// else three ''; the mail's queue entry.
/// Returns as HITS; an existing session gone meanwhile gets neither code nor mail ({0, 0}: the
/// code could never be entered).
/// Sent once: it counts and queues a mail.
pub(super) static CODE_REQUEST: LazyLock<Lua> = LazyLock::new(|| {
    Lua::once(concat!(
        "local NLIM = #KEYS - 2\n",
        codes_lua!(),
        limits_lua!(),
        r#"
local b = 4 * NLIM + 2
local k = NLIM
if ARGV[b] ~= '' then
  redis.call('SET', KEYS[k + 1], ARGV[b], 'PX', ARGV[b + 1])
else
  local v = redis.call('GET', KEYS[k + 1])
  if not v then return {0, 0} end
  local head, list = codes_of(v)
  list = put(list, ARGV[b + 2], ARGV[b + 3], now, tonumber(ARGV[b + 4]))
  redis.call('SET', KEYS[k + 1], with_codes(head, list), 'KEEPTTL')
end
redis.call('RPUSH', KEYS[k + 2], ARGV[b + 5])
return {0, 0}
"#
    ))
});

// The mail queue's worker side (`mail.rs`). A queue entry is the whole mail (`codec`'s
// `encode_mail_entry`: `ref␟attempts␟expires␟created␟code key␟to␟order`); the queue's two keys
// are under the hash tag `{mail}`, so each of these scripts touches one slot of a Cluster,
// except `MAIL_STATE`, which touches codes only.

/// KEYS: queue, new mails. ARGV: now, lease end, how many. Leases the due mails, those of the
/// queue first (retries, ended leases), then new ones (they enter the queue, scored by the
/// lease's end), and returns their entries. An entry without a separator is a bare reference
/// queued by an older build, whose mail this one cannot read: dropped.
/// Sent once: a second run would lease the next mails, and the first run's would wait for
/// their lease to end.
pub(super) static MAIL_CLAIM: LazyLock<Lua> = LazyLock::new(|| {
    Lua::once(
        r#"
local max = tonumber(ARGV[3])
local got = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, max)
if #got < max then
  local new = redis.call('LPOP', KEYS[2], max - #got)
  if new then
    for _, m in ipairs(new) do table.insert(got, m) end
  end
end
local out, lease = {}, {}
for _, m in ipairs(got) do
  if string.find(m, '\031', 1, true) then
    table.insert(out, m)
    table.insert(lease, ARGV[2])
    table.insert(lease, m)
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
if #lease > 0 then redis.call('ZADD', KEYS[1], unpack(lease)) end
return out
"#,
    )
});

/// KEYS: queue, new mails. The earliest instant a mail becomes due: the score at the head of
/// the queue, or the creation of the oldest new mail; nil when both are empty.
/// Idempotent: it only reads.
pub(super) static MAIL_NEXT_DUE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local due = nil
local z = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if z[2] then due = tonumber(z[2]) end
local m = redis.call('LINDEX', KEYS[2], 0)
if m then
  local c = tonumber(string.match(m, '^[^\031]*\031[^\031]*\031[^\031]*\031(%-?%d+)\031') or 0) or 0
  if not due or c < due then due = c end
end
return due
"#,
    )
});

/// KEYS: the sessions whose records keep the codes. ARGV: the state (`codec::MailState`),
/// then for each code its purpose and the reference of its mail. Writes the state into each
/// code that still names that mail (a code sent again names a newer one), keeping the record's
/// TTL. Returns how many it wrote.
/// Idempotent: a second run writes the same state.
pub(super) static MAIL_STATE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(concat!(
        codes_lua!(),
        r#"
local n = 0
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v then
    local head, list = codes_of(v)
    local p, ref, hit = ARGV[2 * i], ARGV[2 * i + 1], false
    for _, pc in ipairs(list) do
      if pc[1] == p then
        local f = {}
        for x in string.gmatch(pc[2] .. '\031', '([^\031]*)\031') do table.insert(f, x) end
        if (#f == 7 or #f == 8) and f[7] == ref then
          f[8] = ARGV[1]
          pc[2] = table.concat(f, '\031')
          hit = true
        end
      end
    end
    if hit then
      redis.call('SET', key, with_codes(head, list), 'KEEPTTL')
      n = n + 1
    end
  end
end
return n
"#
    ))
});

/// KEYS: queue. ARGV: the entry as leased, the same with one more attempt, when it is due.
/// Puts a mail whose attempt failed back for its retry; 0 when it was no longer in the queue.
/// Idempotent: a second run finds the leased entry gone and changes nothing (answering 0).
pub(super) static MAIL_REQUEUE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"#,
    )
});
