-- Shared by the slot-ledger scripts (prepended to each one's body by redis-scripts.ts).
-- KEYS of every slot-ledger script, in this order, all under the route's hash tag:
--   1 holders (task id -> slots held), 2 effective capacity, 3 lowered-at,
--   4 waiters (zset: score = priority, ties in task id order), 5 waiter-info (task id ->
--   "<until>:<wants>": the ms after which an absent waiter drops out, and the slots it wants now;
--   0 while its job has stepped back to the queue)

-- The time of the Redis server, in ms: never a client's clock (machines disagree by seconds).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function used_slots(holders)
  local used = 0
  for _, v in ipairs(redis.call('HVALS', holders)) do used = used + tonumber(v) end
  return used
end

-- Additive recovery after a 1303 lowered the effective capacity: one slot per recoverMs that has
-- passed, idle time included. `store`: write the recovered level back (acquire does; readers don't).
local function effective_capacity(effectiveKey, loweredKey, configured, recoverMs, now, store)
  local eff = tonumber(redis.call('GET', effectiveKey) or configured)
  if eff > configured then eff = configured end
  if eff < configured then
    local lowered = tonumber(redis.call('GET', loweredKey) or 0)
    local steps = math.floor((now - lowered) / recoverMs)
    if steps > 0 then
      eff = math.min(configured, eff + steps)
      if store then
        redis.call('SET', effectiveKey, eff)
        redis.call('SET', loweredKey, lowered + steps * recoverMs)
      end
    end
  end
  return eff
end

local function drop_waiter(waiters, info, member)
  redis.call('ZREM', waiters, member)
  redis.call('HDEL', info, member)
end

local function set_waiter(info, member, untilMs, wants)
  redis.call('HSET', info, member, untilMs .. ':' .. wants)
end

-- {until, wants} of a waiter; {0, 0} when unknown (it then counts as gone).
local function waiter(info, member)
  local raw = redis.call('HGET', info, member)
  if not raw then return 0, 0 end
  local sep = string.find(raw, ':', 1, true)
  return tonumber(string.sub(raw, 1, sep - 1)), tonumber(string.sub(raw, sep + 1))
end

-- Hands free room over: the waiters at the head of the line that fit in it, one after another in
-- line order, are named on the channel (a comma list of task ids), so that only their jobs, in
-- whichever worker, wake and acquire. The first one that does not fit stops the walk: the room is
-- kept for it (a larger task is not starved by smaller ones). A waiter that could never fit the
-- current capacity is passed over, as acquire does, and so is one whose job stepped back to the
-- queue (it takes its turn when it is back). Absent waiters (past their until) drop out.
local function wake_next(holders, effectiveKey, loweredKey, waiters, info, configured, recoverMs, now, channel)
  local eff = effective_capacity(effectiveKey, loweredKey, configured, recoverMs, now, false)
  local free = eff - used_slots(holders)
  if free <= 0 then return 0 end
  local woken = {}
  for _, member in ipairs(redis.call('ZRANGE', waiters, 0, 31)) do
    local untilMs, size = waiter(info, member)
    if now > untilMs then
      drop_waiter(waiters, info, member)
    elseif size > 0 then
      if size <= free then
        woken[#woken + 1] = member
        free = free - size
        if free <= 0 then break end
      elseif size <= eff then
        break
      end
    end
  end
  if #woken > 0 then redis.call('PUBLISH', channel, table.concat(woken, ',')) end
  return #woken
end
