//! The mail queue's worker side (`../outbox.rs`). A queue entry is the whole mail (`codec`'s
//! `encode_mail_entry`: `ref␟attempts␟expires␟created␟code key␟to␟order`); the queue's two keys
//! are under the hash tag `{mail}`, so each of these scripts touches one slot of a Cluster,
//! except `MAIL_STATE`, which touches codes only.
use super::{LazyLock, Lua};

/// KEYS: queue, new mails. ARGV: now, lease end, how many. Leases the due mails, those of the
/// queue first (retries, ended leases), then new ones (they enter the queue, scored by the
/// lease's end), and returns their entries. An entry without a separator is a bare reference
/// queued by an older build, whose mail this one cannot read: dropped.
/// Sent once: a second run would lease the next mails, and the first run's would wait for
/// their lease to end.
pub(in crate::store::redis) static MAIL_CLAIM: LazyLock<Lua> = LazyLock::new(|| {
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
  if string.find(m, SEP, 1, true) then
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
pub(in crate::store::redis) static MAIL_NEXT_DUE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local due = nil
local z = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if z[2] then due = tonumber(z[2]) end
local m = redis.call('LINDEX', KEYS[2], 0)
if m then
  local c = tonumber(field(m, ENTRY_CREATED) or '') or 0
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
pub(in crate::store::redis) static MAIL_STATE: LazyLock<Lua> = LazyLock::new(|| {
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
        -- One field less: a code written before its mail state was kept (the state is last).
        local k = count_fields(pc[2])
        if (k == CODE_FIELDS or k == CODE_FIELDS - 1) and field(pc[2], CODE_MAIL_REF) == ref then
          if k == CODE_FIELDS then
            pc[2] = set_field(pc[2], CODE_MAIL_STATE, ARGV[1])
          else
            pc[2] = pc[2] .. SEP .. ARGV[1]
          end
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

/// KEYS: given-up webhooks, webhook queue's new entries. ARGV: the given-up entry, the same
/// queued again. Moves it back into the queue; 0 when it was not (or no longer) there.
/// Idempotent: a second run finds it gone and changes nothing.
pub(in crate::store::redis) static HOOK_RETRY: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
"#,
    )
});

/// KEYS: queue. ARGV: the entry as leased, the same with one more attempt, when it is due.
/// Puts a mail whose attempt failed back for its retry; 0 when it was no longer in the queue.
/// Idempotent: a second run finds the leased entry gone and changes nothing (answering 0).
pub(in crate::store::redis) static MAIL_REQUEUE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"#,
    )
});
