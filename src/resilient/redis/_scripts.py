"""Strictly private. The Lua scripts of ``resilient.redis``, one per operation.

Every breaker operation is one script that reads the circuit, applies the
rules of ``resilient._breaker_state.MemoryStore`` (its reference
implementation) and writes the result, atomically: Redis runs one script at a
time, so processes never race. The scripts share one prelude (arguments, the
stored state, the answer); those that may change a window or open and close
the circuit add the helpers for that (each helper is a closure built on every
run, so a script carries only those it needs).

Keys (both carry the hash tag ``{namespace:name}``, so a Redis Cluster keeps
one breaker in one slot): ``KEYS[1]`` the circuit (a hash), ``KEYS[2]`` its
window (a string of one byte per call for a count-based window, a hash of
buckets for a time-based one). A time-based window keeps only the buckets
that saw calls, each under its number (``c<k>``, ``f<k>``, ``s<k>``: calls,
failures, slow calls) and linked to the next one entered (``n<k>``); the
circuit's ``p`` is the oldest, the window's ``l`` the newest. Catching up
after an idle spell drops the aged-out buckets from the oldest on: each
bucket is dropped once, as it was entered once, so a call costs the same
whatever the bucket count, and a window idle for longer than its span is
simply deleted. A lost window key empties the window; a lost
hash starts a new incarnation of the circuit (closed, its window dropped),
whose half-open epochs start from Redis ``TIME`` in microseconds, so tickets
of an earlier incarnation never match.

Arguments (``ARGV``), all strings:

1. now: ``""`` to read Redis ``TIME``; else the breaker's clock reading
2. the policy, fixed per breaker, as space-separated fields: idle expiry in
   milliseconds, failure_threshold, half_open_max_calls, success_threshold,
   window kind (0 none, 1 count-based, 2 time-based), window size (calls or
   buckets), bucket width in seconds, calls required before a rate is judged,
   failure-rate threshold, slow-call-rate threshold, slow calls counted (0/1),
   trial timeout in seconds, window signature (``-`` for none), and the
   backoff base and cap (for the un-jittered duration, when 3 is stale)
3. the open duration, drawn by the process for the openings in 4
4. the openings it was drawn for (-1: a fixed duration, always valid)
5. the previous duration it was drawn after (as stored, ``""`` for none)
6, 7. the operation's own: trial ticket and slow flag, or the forced state

Every script answers one string of space-separated fields (one bulk reply,
cheap to read): code (1, or 2 when acquire found the half-open permits lost
and started a new half-open period), state (0 closed, 1 open, 2 half-open),
counted failures, seconds the circuit stays open, openings, the last open
duration (``-`` for none), admitted (0/1), trial ticket (-1 for none), the
transition made (old state, -1 for none; new state; failures; open for;
window calls; window slow calls), the window totals (calls, failures, slow
calls), the end of the open period on the script's clock, the epoch (it
grows by one with each change of state: the circuit's sequence number, by
which a process orders the changes its overlapping operations learn), and
the version (it grows by one with each write of the circuit: with the epoch,
the order of the answers, so a process whose overlapping operations get
their answers out of order never remembers an older state over a newer one).
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "BUDGET_PROBE",
    "BUDGET_READ",
    "BUDGET_REFUND",
    "BUDGET_SPEND",
    "FAILURE",
    "FORCE",
    "PROBE",
    "RELEASE",
    "SNAPSHOT",
    "SUCCESS",
]

_POLICY_PATTERN = "^" + " ".join(["(%S+)"] * 15) + "$"

# The answer: 20 fields, floats with all their digits (Lua's own conversion rounds them).
_REPLY_FORMAT = "%d %d %d %.17g %d %s %d %d %d %d %d %s %d %d %d %d %d %.17g %s %d"

_CONSTANTS = f"""
local POLICY = '{_POLICY_PATTERN}'
local REPLY = '{_REPLY_FORMAT}'
"""

_PRELUDE = (
    _CONSTANTS
    + """
local NO_TRANSITION = {-1, -1, 0, '0', 0, 0}
local K, W = KEYS[1], KEYS[2]
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local idle_ms, threshold, max_trials, success_threshold, wkind, wsize, wwidth, wmin,
      frate, srate, slowcalls, trial_timeout, wsig, backoff_base, backoff_cap =
  string.match(ARGV[2], POLICY)
idle_ms = tonumber(idle_ms)
threshold = tonumber(threshold)
max_trials = tonumber(max_trials)
success_threshold = tonumber(success_threshold)
wkind = tonumber(wkind)
wsize = tonumber(wsize)
wwidth = tonumber(wwidth)
wmin = tonumber(wmin)
frate = tonumber(frate)
srate = tonumber(srate)
slowcalls = slowcalls == '1'
trial_timeout = tonumber(trial_timeout)

local function fmt(x) return string.format('%.17g', x) end

local h = redis.call('HMGET', K, 's', 'f', 'e', 't', 'ts', 'u', 'o', 'l', 'g', 'w',
                     'wc', 'wf', 'ws', 'p', 'b', 'v')
local state = tonumber(h[1]) or 0
local failures = tonumber(h[2]) or 0
local epoch = tonumber(h[3])
if epoch == nil then
  -- No circuit stored (new, expired or evicted): a new incarnation. Its epoch
  -- starts from Redis TIME in microseconds, not 0, so a trial ticket or an
  -- answer from an earlier incarnation never matches one of this one.
  local t = redis.call('TIME')
  epoch = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local trials = tonumber(h[4]) or 0
local trial_successes = tonumber(h[5]) or 0
local open_until = tonumber(h[6]) or 0
local openings = tonumber(h[7]) or 0
local last = h[8] or ''
local granted = tonumber(h[9]) or 0
local stored_wsig = h[10] or '-'
local wc = tonumber(h[11]) or 0
local wf = tonumber(h[12]) or 0
local ws = tonumber(h[13]) or 0
local pos = tonumber(h[14]) or 0
local bucket = tonumber(h[15] or '')
local version = tonumber(h[16]) or 0  -- writes of the circuit: orders the answers
local dirty = false   -- the circuit's fields changed
local wdirty = false  -- the window's totals changed
local code = 1
local tr = nil

-- A breaker with another window than the stored one: its window starts
-- afresh, as MemoryStore's does (breakers sharing a name should share a policy).
-- (A circuit whose hash was lost has no signature: a window key it left
-- behind is dropped here too, and the circuit starts clean.)
if stored_wsig ~= wsig then
  redis.call('DEL', W)
  wc, wf, ws, pos, bucket = 0, 0, 0, 0, nil
  stored_wsig = wsig
  dirty = true
  wdirty = true
elseif wkind ~= 0 and wc > 0 and redis.call('EXISTS', W) == 0 then
  -- The window's key was lost (evicted, expired) but the circuit's totals
  -- survived: they count calls no longer stored, which would never age out.
  -- The window is empty, as its key says.
  wc, wf, ws, pos, bucket = 0, 0, 0, 0, nil
  wdirty = true
end

local function counted()
  if wkind == 0 then return failures end
  return wf
end

local function enter(s)
  epoch = epoch + 1  -- outcomes of earlier trials no longer count
  trials = 0
  trial_successes = 0
  state = s
  dirty = true
end

local function half_open()
  local old = state
  enter(2)
  tr = {old, 2, counted(), '0', 0, 0}
end

local function reply(admitted, ticket)
  if dirty or wdirty then version = version + 1 end
  if dirty then
    redis.call('HSET', K, 's', state, 'f', failures, 'e', string.format('%d', epoch),
               't', trials, 'ts', trial_successes, 'u', fmt(open_until), 'o', openings, 'l', last,
               'g', fmt(granted), 'w', stored_wsig, 'v', version)
  end
  if wdirty then
    local b = ''
    if bucket ~= nil then b = fmt(bucket) end
    redis.call('HSET', K, 'wc', wc, 'wf', wf, 'ws', ws, 'p', fmt(pos), 'b', b, 'v', version)
  end
  if dirty or wdirty then
    local ttl = idle_ms
    if state == 1 and open_until > now then
      ttl = ttl + math.ceil((open_until - now) * 1000)
    end
    -- Lua turns large numbers into '1e+15' for Redis: capped (~3,000 years) and formatted.
    ttl = string.format('%d', math.min(ttl, 1e14))
    redis.call('PEXPIRE', K, ttl)
    if wkind ~= 0 then redis.call('PEXPIRE', W, ttl) end
  end
  local remaining = 0
  if state == 1 then remaining = open_until - now end
  local t = tr or NO_TRANSITION
  local shown_last = last
  if shown_last == '' then shown_last = '-' end
  return string.format(REPLY, code, state, counted(), remaining, openings, shown_last,
                       admitted, ticket, t[1], t[2], t[3], t[4], t[5], t[6], wc, wf, ws,
                       open_until, string.format('%d', epoch), version)
end
"""
)

_WINDOW = """
local function clear_window()
  redis.call('DEL', W)
  wc, wf, ws, pos, bucket = 0, 0, 0, 0, nil
  wdirty = true
end

-- Time-based window: drop the buckets that aged out; return the current bucket.
-- Only entered buckets are visited (pos, the oldest, then each one's successor),
-- never the bucket numbers in between: O(1) per call, amortized, whatever wsize.
local function advance()
  local current = math.floor(now / wwidth)
  if bucket == nil or current - bucket >= wsize then
    clear_window()  -- idle for the whole span: empty, in one command
  elseif current > bucket then
    local oldest_live = current - wsize + 1
    while wc > 0 and pos < oldest_live do
      local k = fmt(pos)
      local v = redis.call('HMGET', W, 'c' .. k, 'f' .. k, 's' .. k, 'n' .. k)
      wc = wc - (tonumber(v[1]) or 0)
      wf = wf - (tonumber(v[2]) or 0)
      ws = ws - (tonumber(v[3]) or 0)
      redis.call('HDEL', W, 'c' .. k, 'f' .. k, 's' .. k, 'n' .. k)
      local following = tonumber(v[4])
      if following == nil or following <= pos then
        -- The newest entered bucket aged out too (or a link was lost): empty.
        wc, wf, ws, pos = 0, 0, 0, 0
      else
        pos = following
      end
    end
  else
    return bucket  -- a clock that is behind: stay in the newest bucket
  end
  bucket = current
  wdirty = true
  return current
end

"""

_CHANGES = """
local function record(failed, slow)
  if wkind == 1 then
    if wc == wsize then
      local old = string.byte(redis.call('GETRANGE', W, pos, pos)) or 0
      wf = wf - old % 2
      ws = ws - math.floor(old / 2)
    else
      wc = wc + 1
    end
    redis.call('SETRANGE', W, pos, string.char(failed + 2 * slow))
    pos = (pos + 1) % wsize
  else
    local current = advance()
    local i = fmt(current)  -- every digit: bucket numbers on Redis time are large
    if redis.call('HINCRBY', W, 'c' .. i, 1) == 1 then
      -- The bucket's first call: link it after the newest entered one.
      if wc == 0 then
        pos = current
      else
        local newest = redis.call('HGET', W, 'l')
        if newest then redis.call('HSET', W, 'n' .. newest, i) end
      end
      redis.call('HSET', W, 'l', i)
    end
    if failed == 1 then redis.call('HINCRBY', W, 'f' .. i, 1) end
    if slow == 1 then redis.call('HINCRBY', W, 's' .. i, 1) end
    wc = wc + 1
  end
  wf = wf + failed
  ws = ws + slow
  wdirty = true
end

local function rate_exceeded()
  if wkind == 0 or wc < wmin then return false end
  if wf / wc >= frate then return true end
  return slowcalls and ws / wc >= srate
end

local function open_circuit()
  local d, dstr
  local drawn_for = tonumber(ARGV[4])
  if drawn_for == -1 or (drawn_for == openings and ARGV[5] == last) then
    dstr = ARGV[3]
    d = tonumber(dstr)
  else
    -- drawn for a count another process has changed since: the un-jittered duration
    local base = tonumber(backoff_base)
    if base <= 0 then
      d = 0
    else
      d = math.min(base * 2 ^ openings, tonumber(backoff_cap))
    end
    dstr = fmt(d)
  end
  local old = state
  openings = openings + 1
  last = dstr
  open_until = now + d
  enter(1)
  tr = {old, 1, counted(), dstr, wc, ws}
end

local function close_circuit()
  local old = state
  local c = counted()
  failures = 0
  openings = 0
  last = ''
  if wkind ~= 0 then clear_window() end
  enter(0)
  tr = {old, 0, c, '0', 0, 0}
end

"""

ACQUIRE = (
    _PRELUDE
    + """
if state == 0 then return reply(1, -1) end
if state == 1 then
  if now < open_until then return reply(0, -1) end
  half_open()
elseif trials >= max_trials and now - granted >= trial_timeout then
  -- Every permit was handed out trial_timeout ago and no outcome came back:
  -- a process holding them died. A new half-open period, with fresh permits.
  enter(2)
  code = 2
end
if trials < max_trials then
  trials = trials + 1
  granted = now
  dirty = true
  return reply(1, epoch)
end
return reply(0, -1)
"""
)

SUCCESS = (
    _PRELUDE
    + _WINDOW
    + _CHANGES
    + """
local trial = tonumber(ARGV[6])
local slow = tonumber(ARGV[7])
if trial == nil then
  if state ~= 0 then return reply(0, -1) end
  if wkind == 0 then
    if failures ~= 0 then failures = 0; dirty = true end
    return reply(0, -1)
  end
  record(0, slow)
  if rate_exceeded() then open_circuit() end
  return reply(0, -1)
end
if state ~= 2 or epoch ~= trial then return reply(0, -1) end
if slow == 1 then
  open_circuit()  -- a trial that answers too slowly shows the dependency is still down
  return reply(0, -1)
end
trial_successes = trial_successes + 1
dirty = true
if trial_successes >= success_threshold then close_circuit() end
return reply(0, -1)
"""
)

FAILURE = (
    _PRELUDE
    + _WINDOW
    + _CHANGES
    + """
local trial = tonumber(ARGV[6])
local slow = tonumber(ARGV[7])
if trial == nil then
  if state ~= 0 then return reply(0, -1) end
  if wkind == 0 then
    failures = failures + 1
    dirty = true
    if failures >= threshold then open_circuit() end
    return reply(0, -1)
  end
  record(1, slow)
  if rate_exceeded() then open_circuit() end
  return reply(0, -1)
end
if state ~= 2 or epoch ~= trial then return reply(0, -1) end
if wkind == 0 then failures = failures + 1 end
open_circuit()
return reply(0, -1)
"""
)

RELEASE = (
    _PRELUDE
    + """
local trial = tonumber(ARGV[6])
if state == 2 and epoch == trial then
  trials = trials - 1
  dirty = true
end
return reply(0, -1)
"""
)

FORCE = (
    _PRELUDE
    + _WINDOW
    + _CHANGES
    + """
local target = tonumber(ARGV[6])
if target == 0 then close_circuit() elseif target == 1 then open_circuit() else half_open() end
if tr[1] == tr[2] then tr = nil end
return reply(0, -1)
"""
)

SNAPSHOT = (
    _PRELUDE
    + _WINDOW
    + """
if wkind == 2 then advance() end
return reply(0, -1)
"""
)

PROBE = (
    _PRELUDE
    + """
-- Before handing a breaker back to Redis after an outage: its keys must read
-- as the right types and accept a write (a read-only replica, or a server out
-- of memory, answers reads and refuses writes). It rewrites what is stored.
if wkind == 1 then
  redis.call('STRLEN', W)
elseif wkind == 2 then
  redis.call('HLEN', W)
end
dirty = true
return reply(0, -1)
"""
)

# -- the retry budget: KEYS[1] holds the tokens; ARGV: max_tokens, token_ratio, idle ms --

_BUDGET_PRELUDE = """
local max = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
local tokens = max
if v then tokens = tonumber(v) end
"""

BUDGET_SPEND = (
    _BUDGET_PRELUDE
    + """
tokens = math.max(tokens - 1, 0)
redis.call('SET', KEYS[1], string.format('%.17g', tokens), 'PX', ARGV[3])
local allowed = 0
if tokens > max / 2 then allowed = 1 end
return {allowed, string.format('%.17g', tokens)}
"""
)

BUDGET_REFUND = (
    _BUDGET_PRELUDE
    + """
tokens = math.min(tokens + tonumber(ARGV[2]), max)
redis.call('SET', KEYS[1], string.format('%.17g', tokens), 'PX', ARGV[3])
return string.format('%.17g', tokens)
"""
)

BUDGET_PROBE = (
    _BUDGET_PRELUDE
    + """
-- Before handing back after an outage: a write must succeed (it rewrites the tokens).
redis.call('SET', KEYS[1], string.format('%.17g', tokens), 'PX', ARGV[3])
return string.format('%.17g', tokens)
"""
)

BUDGET_READ = (
    _BUDGET_PRELUDE
    + """
return string.format('%.17g', tokens)
"""
)
