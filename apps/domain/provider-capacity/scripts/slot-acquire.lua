-- Takes n slots for a task, or puts it in line (by priority) and says where it stands.
-- KEYS: the seven ledger keys (slot-ledger.lib.lua).
-- ARGV: taskId, n, configured capacity, recoverMs, priority, staleMs, stepBackMs, stepBackMaxMs
-- Returns {1, used, effective, 0, 0} when taken (used = -1: it already held them), else
-- {0, used, effective, place (0 = head), stepBackMs (0: wait in place; else come back after it)}.
local holders, effectiveKey, loweredKey, waiters, info, sinceKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local taskId, n, configured, recoverMs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local priority, staleMs, stepBackMs, stepBackMaxMs = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
-- Already holding (an attempt whose outcome is unknown): its since stays that of the first create,
-- the earliest the provider may have started it.
if redis.call('HEXISTS', holders, taskId) == 1 then return {1, -1, -1, 0, 0} end
local now = now_ms()
local eff = effective_capacity(effectiveKey, loweredKey, configured, recoverMs, now, true)
redis.call('ZADD', waiters, 'NX', priority, taskId)
-- Room is kept for the waiters ahead in line that are here and fit now, and for the head of the
-- line (the first of them that does not fit): a task behind the head takes slots only when it fits
-- beside all of theirs and, by the learnt run time, cannot delay the head's start (backfill_fits),
-- so a large task is never starved by small ones. A waiter that could never fit the current
-- capacity would block everyone: no room is kept for it. The walk stops at the head, or as soon as
-- the room is spoken for, so its cost does not grow with the line.
local used = used_slots(holders)
local ahead = 0
local head = nil
for _, member in ipairs(redis.call('ZRANGE', waiters, 0, 31)) do
  if member == taskId then break end
  local untilMs, size = waiter(info, member)
  if now > untilMs then
    drop_waiter(waiters, info, member)
  elseif size > 0 and size <= eff then
    if used + ahead + size <= eff then
      ahead = ahead + size
    else
      head = size
      break
    end
  end
  if used + ahead + n > eff then break end
end
local fits = used + ahead + n <= eff
if fits and head then fits = backfill_fits(holders, sinceKey, tonumber(redis.call('GET', KEYS[7])), now, head - (eff - used - ahead), n) end
if fits then
  redis.call('HSET', holders, taskId, n)
  redis.call('HSET', sinceKey, taskId, now)
  drop_waiter(waiters, info, taskId)
  return {1, used + n, eff, 0, 0}
end
local place = redis.call('ZRANK', waiters, taskId) or -1
-- Only the first `configured` in line wait in place (woken by a release that names them); the
-- others step back to the queue until their turn is near: a round of the line (`configured`
-- places) takes about one run time of the provider (stepBackMs while none has been learnt), and
-- they come back a round before their turn (those within a round, after 100 ms), so a task returns
-- a few times however long the line, and the in-place waiters are refilled before they run out, and the backlog polls at a rate that does not grow with the number of workers. While away
-- a waiter keeps its place but no room is kept for it (it wants 0 until it is back): slots never
-- sit idle for a job that is not running.
if place >= configured then
  local runMs = tonumber(redis.call('GET', KEYS[7]))
  local perRound = stepBackMs
  if runMs then perRound = math.max(50, math.min(10000, runMs)) end
  local stepBack = math.floor(math.max(100, math.min(stepBackMaxMs, perRound * (math.floor(place / configured) - 1))))
  set_waiter(info, taskId, now + staleMs + stepBack, 0)
  return {0, used, eff, place, stepBack}
end
set_waiter(info, taskId, now + staleMs, n)
return {0, used, eff, place, 0}
