-- The sweeper's resync, applied: each account's count becomes base + what intakes took since the
-- snapshot, where base = its queued rows in Postgres + its intakes in flight at the snapshot (read
-- before the rows). Another resync applied since the snapshot (or Redis lost, the epoch with it)
-- leaves the counts alone: the next sweep tries again.
-- KEYS: 1 single counts, 2 batch counts, 3 epoch. ARGV: epoch at the snapshot ('' for none),
-- JSON { single = { base = {account = n}, seen = {account = n} }, batch = ... }.
local epoch = redis.call('GET', KEYS[3]) or ''
if epoch ~= ARGV[1] then return 0 end
local plan = cjson.decode(ARGV[2])

local function apply(key, base, seen)
  local flat = redis.call('HGETALL', key)
  local current = {}
  for i = 1, #flat, 2 do current[flat[i]] = tonumber(flat[i + 1]) end
  local accounts = {}
  for account in pairs(current) do accounts[account] = true end
  for account in pairs(base) do accounts[account] = true end
  for account in pairs(accounts) do
    local now = current[account] or 0
    local since = now - (seen[account] or 0)
    -- Lower than at the snapshot: the hash was emptied since (Redis lost with no epoch yet), so
    -- all it holds came after.
    if since < 0 then since = now end
    local value = (tonumber(base[account]) or 0) + since
    if value > 0 then redis.call('HSET', key, account, value) else redis.call('HDEL', key, account) end
  end
end

apply(KEYS[1], plan.single.base, plan.single.seen)
apply(KEYS[2], plan.batch.base, plan.batch.seen)
redis.call('INCR', KEYS[3])
return 1
