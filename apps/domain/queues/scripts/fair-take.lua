-- Intake's priority: the account's count grows by the n tasks taken, and the same n is marked in
-- flight (this minute's marks) until the intake has written its rows or given up (fair-settle).
-- KEYS: 1 the counts, 2 this minute's in-flight marks (same kind). ARGV: account, n, marks' ttl ms.
local n = tonumber(ARGV[2])
local count = redis.call('HINCRBY', KEYS[1], ARGV[1], n)
redis.call('HINCRBY', KEYS[2], ARGV[1], n)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return count
