-- The intake's rows are committed (or will not be): its in-flight mark goes, once. A mark already
-- reaped past its deadline (or lost with Redis) is not taken off again.
-- KEYS: 1 the marks, 2 the marks' deadlines. ARGV: the mark's member as fair-take wrote it.
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
unmark(KEYS[1], ARGV[1])
return 1
