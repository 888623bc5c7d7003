-- After a 1303 the provider accepted less than our ledger allowed (the account is shared, or its
-- limit is lower than configured). One refusal may be noise; a second one, before any create has
-- been accepted at the level refused (what we held plus the refused task), confirms it. Then step
-- down by the refused task's size, never below what we hold: a shared account walks the capacity
-- down in a few refusals (which cost nothing), and a stray 1303 costs nothing.
-- KEYS: the seven ledger keys, then 8 refusals, 9 refused-level. ARGV: configured, recoverMs, n.
local used = used_slots(KEYS[1])
local configured, recoverMs, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local level = used + n
local known = tonumber(redis.call('GET', KEYS[9]))
if not known or level < known then redis.call('SET', KEYS[9], level) end
local run = redis.call('INCR', KEYS[8])
local eff = effective_capacity(KEYS[2], KEYS[3], configured, recoverMs, now, false)
if run < 2 then return eff end
local lowered = math.max(1, math.min(eff, math.max(used, eff - n)))
redis.call('SET', KEYS[2], lowered)
redis.call('SET', KEYS[3], now)
return lowered
