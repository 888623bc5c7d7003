-- Intakes' rows are committed (or will not be): their in-flight marks go, each once. A mark already
-- reaped past its deadline (or lost with Redis) is not taken off again.
-- KEYS: 1 the marks, 2 the marks' deadlines. ARGV: the marks' members as fair-take wrote them.
local settled = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 1 then
    unmark(KEYS[1], ARGV[i])
    settled = settled + 1
  end
end
return settled
