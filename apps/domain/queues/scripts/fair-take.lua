-- Intake's priority: the account's count grows by the n tasks taken, and the same n is marked in
-- flight until the intake has written its rows or given up (fair-settle), or its deadline passed.
-- KEYS: 1 the counts, 2 the marks, 3 the marks' deadlines (same kind).
-- ARGV: account, n, the mark's lifetime in ms, a nonce unique to this intake; then any number of
-- other intakes' marks to settle first (members as written here): the settles that waited for a
-- command to ride on (fair-priority.ts), as fair-settle would take them.
for i = 5, #ARGV do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then unmark(KEYS[2], ARGV[i]) end
end
local n = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local count = redis.call('HINCRBY', KEYS[1], ARGV[1], n)
redis.call('HINCRBY', KEYS[2], ARGV[1], n)
redis.call('ZADD', KEYS[3], now_ms() + ttl, n .. ' ' .. ARGV[4] .. ' ' .. ARGV[1])
-- Every mark in them ends within ttl, so keys untouched for twice that hold nothing alive.
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
redis.call('PEXPIRE', KEYS[3], 2 * ttl)
return count
