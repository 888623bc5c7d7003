-- The intake's rows are committed (or will not be): its in-flight mark goes. Marks that expired
-- meanwhile are not written again (HINCRBY would make a key without expiry).
-- KEYS: 1 the in-flight marks the intake wrote. ARGV: account, n.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
