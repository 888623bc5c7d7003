-- Leaves the line without slots; a head that leaves frees the room kept for it, so the next fit wakes.
-- ARGV: taskId, configured capacity, recoverMs, channel.
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[5], ARGV[1])
wake_next(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], tonumber(ARGV[2]), tonumber(ARGV[3]), now_ms(), ARGV[4])
return 1
