-- Shared by the slot-ledger scripts (prepended to each one's body by redis-scripts.ts).
-- KEYS of every slot-ledger script, in this order, all under the route's hash tag:
--   1 holders (task id -> slots held), 2 effective capacity, 3 lowered-at,
--   4 waiters (zset: score = priority, ties in task id order), 5 waiter-info (task id ->
--   "<until>:<wants>": the ms after which an absent waiter drops out, and the slots it wants now;
--   0 while its job has stepped back to the queue), 6 holders' since (task id -> ms its slots were
--   taken; absent for a holder re-held from Postgres after Redis lost the ledger), 7 the route's
--   learnt run time (provider-run-time.ts)

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

-- Backfilling (EASY): may a waiter behind the blocked head of the line take n slots now, without
-- delaying the head's start? The head needs k more slots than are free for it now (room of waiters
-- ahead of it that fit is counted as taken). With one learnt run time R for every task, a task
-- started now never ends before those already running, so it may only take room the head will not
-- need when it starts: it is refused if any set of holders that may be the first to end frees at
-- least k slots but fewer than k + n (the head would then have started there without it).
-- Which sets may end first comes from each holder's window: it ends no sooner than its since + R
-- and, by the learnt run time with a margin (a lost callback noticed by a poll, create latency), no
-- later than since + R * BACKFILL_LATE_SHARE + BACKFILL_LATE_MS; a holder past that window may end
-- at any moment. A holder of unknown since, an unknown R or a long ledger: no backfilling.
local BACKFILL_LATE_SHARE = 1.05
local BACKFILL_LATE_MS = 250
local BACKFILL_MAX_HOLDERS = 64
local function backfill_fits(holders, sinceKey, runMs, now, k, n)
  if not runMs or runMs <= 0 then return false end
  local flat = redis.call('HGETALL', holders)
  if #flat > 2 * BACKFILL_MAX_HOLDERS then return false end
  local lo, hi, size = {}, {}, {}
  for i = 1, #flat, 2 do
    local since = tonumber(redis.call('HGET', sinceKey, flat[i]))
    if not since then return false end
    local l = math.max(now, since + runMs)
    local h = since + runMs * BACKFILL_LATE_SHARE + BACKFILL_LATE_MS
    if h < now then h = math.huge elseif h < l then h = l end
    lo[#lo + 1], hi[#hi + 1], size[#size + 1] = l, h, tonumber(flat[i + 1])
  end
  local limit = k + n
  -- Each set that may be the first to end is the holders surely ended by some holder's earliest end
  -- t (forced) plus any of those that may have ended by then: a subset sum over the latter, up to
  -- limit. Walking t upwards, holders only join the second group or move from it to the first, so
  -- the sums are extended as they join and rebuilt only when one moves.
  local order = {}
  for a = 1, #lo do order[a] = a end
  table.sort(order, function(x, y) return lo[x] < lo[y] end)
  local forced, state = 0, {}
  local can = {[0] = true}
  local add = function(b)
    for s = limit - 1, size[b], -1 do
      if can[s - size[b]] then can[s] = true end
    end
  end
  for i = 1, #order do
    local t = lo[order[i]]
    local moved = false
    for b = 1, #lo do
      if state[b] == 'may' and hi[b] <= t then
        state[b], forced, moved = 'forced', forced + size[b], true
      end
    end
    local joined = {}
    for j = i, #order do
      local b = order[j]
      if lo[b] > t then break end
      if not state[b] then
        if hi[b] <= t then
          state[b], forced, moved = 'forced', forced + size[b], true
        else
          state[b] = 'may'
          joined[#joined + 1] = b
        end
      end
    end
    if moved then
      can = {[0] = true}
      for b = 1, #lo do
        if state[b] == 'may' then add(b) end
      end
    else
      for _, b in ipairs(joined) do add(b) end
    end
    for s = 0, limit - 1 - forced do
      if can[s] and forced + s >= k then return false end
    end
  end
  return true
end

-- Hands free room over: the waiters at the head of the line that fit in it, one after another in
-- line order, are named on the channel (a comma list of task ids), so that only their jobs, in
-- whichever worker, wake and acquire. The first one that does not fit is the head: the room is kept
-- for it (a larger task is not starved by smaller ones), and those behind it are named only when
-- they may backfill (backfill_fits). A waiter that could never fit the current capacity is passed
-- over, as acquire does, and so is one whose job stepped back to the queue (it takes its turn when
-- it is back). Absent waiters (past their until) drop out.
local function wake_next(holders, effectiveKey, loweredKey, waiters, info, sinceKey, runKey, configured, recoverMs, now, channel)
  local eff = effective_capacity(effectiveKey, loweredKey, configured, recoverMs, now, false)
  local free = eff - used_slots(holders)
  if free <= 0 then return 0 end
  local woken = {}
  local k = nil
  local runMs = nil
  for _, member in ipairs(redis.call('ZRANGE', waiters, 0, 31)) do
    local untilMs, size = waiter(info, member)
    if now > untilMs then
      drop_waiter(waiters, info, member)
    elseif size > 0 and size <= eff then
      if not k then
        if size <= free then
          woken[#woken + 1] = member
          free = free - size
        else
          k = size - free
          runMs = tonumber(redis.call('GET', runKey))
          if not runMs then break end
        end
      elseif size <= free and backfill_fits(holders, sinceKey, runMs, now, k, size) then
        -- Named, it will hold its slots past the head's start: they count as taken for the rest.
        woken[#woken + 1] = member
        free = free - size
        k = k + size
      end
      if free <= 0 then break end
    end
  end
  if #woken > 0 then redis.call('PUBLISH', channel, table.concat(woken, ',')) end
  return #woken
end
