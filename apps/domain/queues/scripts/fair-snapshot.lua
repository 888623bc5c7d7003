-- The resync's snapshot, taken before it reads Postgres: the epoch, both kinds' counts and their
-- live in-flight marks (expired ones reaped first, by Redis' clock), read in one step.
-- KEYS: 1 epoch, 2 single counts, 3 batch counts, 4 single marks, 5 single deadlines,
-- 6 batch marks, 7 batch deadlines.
local now = now_ms()
reap(KEYS[4], KEYS[5], now, 1000)
reap(KEYS[6], KEYS[7], now, 1000)
return {
  redis.call('GET', KEYS[1]) or '',
  redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
  redis.call('HGETALL', KEYS[4]),
  redis.call('HGETALL', KEYS[6]),
}
