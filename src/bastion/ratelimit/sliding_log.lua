-- One rate-limit decision: the sliding log of bastion.ratelimit.store, atomically, in one
-- round trip. Loaded once (SCRIPT LOAD) and called by SHA (EVALSHA).
--
-- KEYS[1]  sorted set of the charges still in the window: score = instant (microseconds),
--          member = a token unique to the charge (so a refund is one ZREM of that token).
--          The caller wraps the rule and client in a {hash tag} for Redis Cluster.
-- ARGV[1]  limit (requests per window)
-- ARGV[2]  window (microseconds)
-- ARGV[3]  now (microseconds), or '' to use this server's clock (one clock for every host)
-- ARGV[4]  the token to record if the request is admitted
-- ARGV[5]  'p': reply with one packed integer; 'a': reply with an array (huge limits)
--
-- Reply 'p': (reset_ms * (limit + 1) + used), negated when refused: one integer to parse
-- instead of an array, which is measurably cheaper for the client on every request.
-- Reply 'a': {admitted (1/0), used, reset_ms}.
-- reset_ms = milliseconds (rounded up) until the oldest charge in the window expires.

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = ARGV[3]
if now == '' then
  -- TIME before a write needs effects replication on Redis < 5 (the default since 5).
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = t[1] .. string.format('%06d', tonumber(t[2]))
end
local now_n = tonumber(now)

-- Charges at or before now - window have left the window (an instant counts for [t, t + w)).
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now_n - window))
local used = redis.call('ZCARD', key)
local admitted = 0
if used < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
  used = used + 1
  admitted = 1
end
local oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
local reset_ms = math.ceil((oldest + window - now_n) / 1000)

if ARGV[5] == 'a' then
  return {admitted, used, reset_ms}
end
if used > limit then used = limit end  -- only after the limit was lowered; keeps the packing
local packed = reset_ms * (limit + 1) + used
if admitted == 1 then return packed end
return -packed
