-- Gives a task's slots back (a no-op when it holds none) and wakes the waiters that fit the room.
-- ARGV: taskId, configured capacity, recoverMs, channel. Returns the slots released.
local n = redis.call('HGET', KEYS[1], ARGV[1])
if not n then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
wake_next(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], tonumber(ARGV[2]), tonumber(ARGV[3]), now_ms(), ARGV[4])
return tonumber(n)
