//! The scripts of sessions: touch, activation of a pending sign-in, deletion and the user's
//! index. Each touches one hash tag.
use super::{LazyLock, Lua};

/// KEYS: session. ARGV: now, idle expiry. 0 = no such session (nothing written), 1 = touched,
/// 2 = pending (left to its sign-in). Rewrites last seen (after creation) and idle expiry
/// (after last seen), base 62 as `codec` writes them.
/// Idempotent: it writes the instants it is given, so a second run writes the same record.
pub(in crate::store::redis) static TOUCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 1, 1) == PENDING then return 2 end
local created, absolute = dec(field(v, SESSION_CREATED)), dec(field(v, SESSION_ABSOLUTE))
if not created or not absolute or not field(v, SESSION_IP) then
  return redis.error_reply('corrupt session record')
end
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
local nv = set_field(set_field(v, SESSION_SEEN, enc(now - created)), SESSION_IDLE, enc(idle - now))
local ttl = math.min(idle, created + absolute) - now
if ttl < 1000 then ttl = 1000 end
redis.call('SET', KEYS[1], nv, 'PX', string.format('%.0f', ttl), 'XX')
return 1
"#,
    )
});

/// KEYS: a session. Rewrites a pending record (`~<tag>␟<record>`) as active, its codes and TTL
/// kept. 1 = active now (or already), 0 = no such session.
/// Idempotent: a record already active stays as it is.
pub(in crate::store::redis) static ACTIVATE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 1, 1) ~= PENDING then return 1 end
local i = string.find(v, SEP, 1, true)
if not i then return redis.error_reply('corrupt session record') end
redis.call('SET', KEYS[1], string.sub(v, i + 1), 'KEEPTTL')
return 1
"#,
    )
});

/// KEYS: a session (its codes are in its record), and optionally the webhook queue's new
/// entries. ARGV: the entries of the events its end reports, queued only when it existed.
/// Returns the record that was there.
/// Idempotent: a second run finds nothing, queues nothing and answers nil, as for a session
/// already gone.
pub(in crate::store::redis) static DELETE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::idempotent(
        r#"
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
if v and KEYS[2] then
  for i = 1, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
end
return v
"#,
    )
});

/// KEYS: a user's index. ARGV: the session's score (absolute expiry in seconds, rounded up),
/// its member, now (ms). Drops what expired and keeps the index until its latest session's
/// absolute expiry.
/// Idempotent: the same member with the same score, the same pruning and TTL.
pub(in crate::store::redis) static INDEX_ADD: LazyLock<Lua> = LazyLock::new(|| {
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
