//! A code request's writes in one step, on one Redis (`CodeRequestWrites`,
//! `redis/code_request.rs`).
use super::{LazyLock, Lua};

/// A code request's writes in one step, on one Redis (`CodeRequestWrites`): its limits as HITS; when
/// they allow, the code (in a new session's record written whole, or put into the record of the
/// visitor's session, `codes_lua`) and the queued mail (its entry in the list of new mails, as
/// `outbox.rs` queues it). KEYS: the limits, then the session, the list. ARGV: as HITS, then
/// from `b = 4 * limits + 2`: the new session's record with its code, or '' for an existing
/// session; its TTL; for an existing session the code's purpose, its record and grace (`put`),
/// else three ''; the mail's queue entry.
/// Returns as HITS; an existing session gone meanwhile gets neither code nor mail ({0, 0}: the
/// code could never be entered).
/// Sent once: it counts and queues a mail.
pub(in crate::store::redis) static CODE_REQUEST: LazyLock<Lua> = LazyLock::new(|| {
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
