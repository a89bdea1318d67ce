//! The scripts of codes, kept in their session's record: checking, redeeming, putting a code
//! in.
use super::{LazyLock, Lua};

/// The judgement shared by CHECK and REDEEM, as the SQL stores' `sql::codes::judge`, of the
/// code a session's record keeps for a purpose (`codes_lua`). KEYS: the session, its marker.
/// ARGV: purpose, email, mac, now, max attempts, action, the new session's tag (the marker's
/// value), marker TTL. Verdict: 0 missing, 1 expired, 2 dead, 3 right, 4 wrong.
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
  local n, x = field(c, CODE_ATTEMPTS), tonumber(field(c, CODE_EXPIRES) or '')
  local e, m = field(c, CODE_EMAIL), field(c, CODE_MAC)
  if not (n and string.match(n, '^%d+$') and x and m and field(c, CODE_MAIL_REF)) then
    return redis.error_reply('corrupt code record')
  end
  a = tonumber(n)
  if e ~= ARGV[2] then verdict = 0
  elseif x <= tonumber(ARGV[4]) then verdict = 1
  elseif a >= tonumber(ARGV[5]) then verdict = 2
  elseif m == ARGV[3] then verdict = 3
  else verdict = 4 end
end
local function spend()
  a = a + 1
  list[at][2] = set_field(c, CODE_ATTEMPTS, string.format('%d', a))
  redis.call('SET', KEYS[1], with_codes(head, list), 'KEEPTTL')
end
"#
    };
}

/// A wrong code spends an attempt. Returns {verdict, attempts}.
/// Sent once: a wrong code spends an attempt.
pub(in crate::store::redis) static CHECK: LazyLock<Lua> = LazyLock::new(|| {
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
/// the code and ends the old session with its codes (one key), marks the sign-in and queues
/// the entries ARGV[9..] in KEYS[3] when given (the webhook queue: SPEC §7, the event with its
/// change) ({2, attempts}); {0, _} otherwise.
/// Sent once: it spends an attempt or consumes the code.
pub(in crate::store::redis) static REDEEM: LazyLock<Lua> = LazyLock::new(|| {
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
if KEYS[3] then
  for i = 9, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
end
return {2, a}
"#
    ))
});

/// KEYS: a session. ARGV: purpose, code record, now, grace. Keeps the code in the session's
/// record (`put`), keeping its TTL. 1 = kept, 0 = no such session (nothing written).
/// Idempotent: a second run replaces the purpose's code with the same record.
pub(in crate::store::redis) static CODE_PUT: LazyLock<Lua> = LazyLock::new(|| {
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
