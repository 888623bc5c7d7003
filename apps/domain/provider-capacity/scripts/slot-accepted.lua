-- A create accepted at (or above) the level a 1303 refused proves that refusal was noise.
-- KEYS: the five ledger keys, then 6 refusals, 7 refused-level.
local level = tonumber(redis.call('GET', KEYS[7]))
if not level then return 0 end
if used_slots(KEYS[1]) >= level then redis.call('DEL', KEYS[7], KEYS[6]) return 1 end
return 0
