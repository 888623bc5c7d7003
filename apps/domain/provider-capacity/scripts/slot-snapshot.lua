-- What the next acquire will find (for /readyz and operators): {configured-capped effective, holders as a flat list}.
-- ARGV: configured capacity, recoverMs.
local eff = effective_capacity(KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), now_ms(), false)
return {eff, redis.call('HGETALL', KEYS[1])}
