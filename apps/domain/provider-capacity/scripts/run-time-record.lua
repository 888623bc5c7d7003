-- One sample into the moving average of the provider's run time. KEYS: 1 run-ms. ARGV: sample ms.
local old = tonumber(redis.call('GET', KEYS[1]))
local sample = tonumber(ARGV[1])
local next = old and (old * 0.8 + sample * 0.2) or sample
redis.call('SET', KEYS[1], next)
return tostring(next)
