//! The script of rate limits: several limits counted and compared in one step (`limits_lua`,
//! which a code request's script shares).
use super::{LazyLock, Lua};

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
    local rec, ttl = '1' .. LIMIT_WINDOW .. fresh, tonumber(fresh) - now
    if sname ~= '' then
      rec = rec .. LIMIT_GAP .. sname .. LIMIT_GAP_END .. ARGV[j + 3]
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
      local c, r, g = string.match(v, LIMIT_HEAD)
      if not c or (string.gsub(g, LIMIT_GAPS, '')) ~= '' then
        return redis.error_reply('corrupt limit record')
      end
      if tonumber(r) > now then n, reset = tonumber(c), r end
      gaps = g
    end
    if fresh ~= '' then
      local keep, last = '', 0
      for name, e in string.gmatch(gaps, LIMIT_GAPS) do
        local t = tonumber(e)
        if t > now then
          if name == sname then return {i, t} end
          keep = keep .. LIMIT_GAP .. name .. LIMIT_GAP_END .. e
          if t > last then last = t end
        end
      end
      if sname ~= '' then
        keep = keep .. LIMIT_GAP .. sname .. LIMIT_GAP_END .. ARGV[j + 3]
        local t = tonumber(ARGV[j + 3])
        if t > last then last = t end
      end
      reset = reset or fresh
      n = n + 1
      local ttl = math.max(tonumber(reset), last) - now
      if ttl < 1000 then ttl = 1000 end
      local rec = string.format('%d', n) .. LIMIT_WINDOW .. reset .. keep
      redis.call('SET', key, rec, 'PX', string.format('%.0f', ttl))
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
pub(in crate::store::redis) static HITS: LazyLock<Lua> = LazyLock::new(|| {
    Lua::once(concat!(
        "local NLIM = #KEYS\n",
        limits_lua!(),
        "return {0, 0}\n"
    ))
});
