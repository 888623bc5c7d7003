-- A create accepted at (or above) the level a 1303 refused proves that refusal was noise.
-- KEYS: the seven ledger keys, then 8 refusals, 9 refused-level.
local level = tonumber(redis.call('GET', KEYS[9]))
if not level then return 0 end
if used_slots(KEYS[1]) >= level then redis.call('DEL', KEYS[9], KEYS[8]) return 1 end
return 0
