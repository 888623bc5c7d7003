-- Shared by the fair-priority scripts (prepended to each one's body by redis-scripts.ts).
-- An intake's in-flight mark: its n tasks counted in the marks hash (account -> n) and one member
-- "<n> <nonce> <account>" in the deadlines zset, scored with the ms (Redis TIME) after which the
-- mark stops counting (an API that died mid-intake never settles it).

-- The time of the Redis server, in ms: never a client's clock (machines disagree by seconds).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function unmark(marks, member)
  local n, account = string.match(member, '^(%d+) %S+ (.*)$')
  if not n then return end
  local left = redis.call('HINCRBY', marks, account, -tonumber(n))
  if left <= 0 then redis.call('HDEL', marks, account) end
end

-- Marks past their deadline stop counting; at most `limit` per call keeps a call short.
local function reap(marks, deadlines, now, limit)
  local expired = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now, 'LIMIT', 0, limit)
  for _, member in ipairs(expired) do
    redis.call('ZREM', deadlines, member)
    unmark(marks, member)
  end
end
