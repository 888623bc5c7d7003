-- The provider gate of one route in one atomic step: whether submissions may go now (and whether
-- this one is the probe), and every change of state. KEYS (under the route's hash tag): 1 state
-- (hash: mode, reason, since, until), 2 failures (a counter with the failure window as its TTL),
-- 3 probe (set while a probe is out).
-- ARGV: op (check | success | failure | pause), reason, immediately (0|1), failureThreshold,
-- failureWindowMs, openMs, pauseProbeMs.
-- Returns {mode, reason, since, until, allowed (0|1), probe (0|1), retryInMs}.
local stateKey, failuresKey, probeKey = KEYS[1], KEYS[2], KEYS[3]
local op, reason, immediately = ARGV[1], ARGV[2], ARGV[3] == '1'
local threshold, windowMs, openMs, pauseMs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function current()
  local s = redis.call('HMGET', stateKey, 'mode', 'reason', 'since', 'until')
  if not s[1] or s[1] == 'closed' then return {'closed', '', 0, 0} end
  return {s[1], s[2] or '', tonumber(s[3]) or 0, tonumber(s[4]) or 0}
end

local function open(mode, why, forMs)
  local s = current()
  local since = now
  if s[1] == mode then since = s[3] end
  redis.call('HSET', stateKey, 'mode', mode, 'reason', why, 'since', since, 'until', now + forMs)
  redis.call('DEL', probeKey)
end

if op == 'check' then
  local s = current()
  if s[1] == 'closed' then return {'closed', '', 0, 0, 1, 0, 0} end
  if now >= s[4] then
    -- One probe at a time; it has until its own deadline to report back.
    if redis.call('SET', probeKey, '1', 'PX', math.max(openMs, 5000), 'NX') then
      return {s[1], s[2], s[3], s[4], 1, 1, 0}
    end
  end
  return {s[1], s[2], s[3], s[4], 0, 0, math.max(250, s[4] - now)}
elseif op == 'success' then
  redis.call('DEL', failuresKey)
  local mode = redis.call('HGET', stateKey, 'mode')
  if mode and mode ~= 'closed' then redis.call('DEL', stateKey, probeKey) end
elseif op == 'failure' then
  local failures = redis.call('INCR', failuresKey)
  if failures == 1 then redis.call('PEXPIRE', failuresKey, windowMs) end
  -- A failed probe re-opens at once; otherwise only a run of failures (any success resets the
  -- count) opens the circuit, so a sprinkle of 5xx among successes never does.
  if immediately or current()[1] == 'open' or failures >= threshold then open('open', reason, openMs) end
elseif op == 'pause' then
  open('paused', reason, pauseMs)
else
  return redis.error_reply('unknown gate op ' .. op)
end
local s = current()
return {s[1], s[2], s[3], s[4], 0, 0, 0}
