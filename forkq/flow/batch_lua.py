"""The Lua both layouts' batch scripts are made of (``batch_scripts.py`` for the default
layout, ``batch_cluster.py`` for the cluster layout): a batch record's writes, a member's
count, and ``settle_up``, which fires what became due, each event at most once (``HSETNX
fired_<event>``), then walks up to the parent batch when a child completed or succeeded.

Where the callback goes depends on the layout: with a queues key, ``fire`` pushes it in the
same call (one slot: the default layout); with ``''`` for it (the cluster layout, where the
callback's queue is in another slot) ``fire`` marks ``firing_<event>`` with ``firer``, the
jid whose call fired it, and ``due_from`` hands the callback's text to the caller to push.
"""

BATCH_LUA = """
local firer = ''
local function now_text()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
-- push a job's JSON text (without enqueued_at) to the front of its queue
local function push_text(queues_key, queue_name, queue_key, text, now)
  redis.call('SADD', queues_key, queue_name)
  redis.call('LPUSH', queue_key, string.sub(text, 1, -2) .. ',"enqueued_at":' .. now .. '}')
end
-- a hash written after the commit lives as long as the record
local function same_ttl(rec, key)
  local ttl = redis.call('PTTL', rec)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
-- a chord's callback: its header's results, in header order, spliced in as the first argument
local function chord_text(rec)
  local f = redis.call('HMGET', rec, 'chord_head', 'chord_tail', 'chord_size')
  local values = {}
  local results = rec .. ':results'
  for i = 0, tonumber(f[3]) - 1 do
    values[#values + 1] = redis.call('HGET', results, tostring(i)) or 'null'
  end
  return f[1] .. '[' .. table.concat(values, ',') .. ']' .. f[2]
end
local function callback_of(rec, event)
  if event == 'success' and redis.call('HEXISTS', rec, 'chord_head') == 1 then
    return chord_text(rec)
  end
  return redis.call('HGET', rec, 'cb_' .. event)
end
local function fire(rec, queues_key, event, now)
  if redis.call('HSETNX', rec, 'fired_' .. event, now) == 0 then return end
  if queues_key == '' then
    redis.call('HSET', rec, 'firing_' .. event, firer)
    return
  end
  local text = callback_of(rec, event)
  if text then
    local q = redis.call('HMGET', rec, 'cb_queue', 'cb_queue_key')
    push_text(queues_key, q[1], q[2], text, now)
  end
end
-- fire what became due in batch bid, then in its parents while a child's state changed
local function settle_up(prefix, queues_key, batches_key, bid, now)
  while bid do
    local rec = prefix .. bid
    local f = redis.call('HMGET', rec, 'sealed', 'kids_open', 'kids_unok', 'parent', 'keep',
                         'fired_complete', 'fired_success')
    if not f[1] then return end
    local parent, up, complete = f[4], false, f[6]
    if not complete and tonumber(f[2] or '0') <= 0
        and redis.call('SCARD', rec .. ':unrun') == 0 then
      fire(rec, queues_key, 'complete', now)
      complete = true
      if parent then redis.call('HINCRBY', prefix .. parent, 'kids_open', -1); up = true end
    end
    if complete and not f[7] and tonumber(f[3] or '0') <= 0
        and redis.call('SCARD', rec .. ':pending') == 0 then
      fire(rec, queues_key, 'success', now)
      if batches_key ~= '' then redis.call('ZREM', batches_key, bid) end
      for _, suffix in ipairs({'', ':pending', ':unrun', ':failed', ':dead', ':results'}) do
        redis.call('EXPIRE', rec .. suffix, f[5] or '86400')
      end
      if parent then redis.call('HINCRBY', prefix .. parent, 'kids_unok', -1); up = true end
    end
    if not up then return end
    bid = parent
  end
end
-- the record's fields and joining jids from ARGV[at] on (field count n, n field/value pairs,
-- jid count m, the m jids); returns the index after them
local function write_record(rec, at)
  local n, i = tonumber(ARGV[at]), at + 1
  for _ = 1, n do
    redis.call('HSET', rec, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  local m = tonumber(ARGV[i])
  local first, last = i + 1, i + m
  redis.call('HINCRBY', rec, 'total', m)
  for j = first, last, 500 do
    local upto = math.min(j + 499, last)
    redis.call('SADD', rec .. ':pending', unpack(ARGV, j, upto))
    redis.call('SADD', rec .. ':unrun', unpack(ARGV, j, upto))
  end
  return last + 1
end
-- a new record lives expires_in seconds; a reopened one's new sets as long as the record
local function record_ttl(rec, reopen, expires_in)
  for _, suffix in ipairs({'', ':pending', ':unrun'}) do
    if reopen then
      if suffix ~= '' then same_ttl(rec, rec .. suffix) end
    else
      redis.call('EXPIRE', rec .. suffix, expires_in)
    end
  end
end
-- the record may fire from now on; a parent whose record expired gets no child (its record
-- would be rewritten without TTL); counted: the parent counted this child at its own seal
local function seal(prefix, bid, parent, kids, counted)
  local rec = prefix .. bid
  redis.call('HSET', rec, 'sealed', '1', 'kids_open', kids, 'kids_unok', kids)
  if parent ~= '' and (counted or redis.call('EXISTS', prefix .. parent) == 1) then
    redis.call('HSET', rec, 'parent', parent)
    if not counted then
      redis.call('HINCRBY', prefix .. parent, 'kids_open', 1)
      redis.call('HINCRBY', prefix .. parent, 'kids_unok', 1)
    end
  end
end
-- a member's success: out of pending and unrun; a chain's next step (next_jid) joins first,
-- at the member's first count only (a repeated count, after a crash, adds nothing)
local function count_success(prefix, bid, jid, index, value, next_jid, queues_key,
                             batches_key, now)
  local rec = prefix .. bid
  if next_jid ~= '' and redis.call('SISMEMBER', rec .. ':pending', jid) == 1 then
    redis.call('SADD', rec .. ':pending', next_jid)
    redis.call('SADD', rec .. ':unrun', next_jid)
    redis.call('HINCRBY', rec, 'total', 1)
  end
  if index ~= '' then
    redis.call('HSET', rec .. ':results', index, value)
    same_ttl(rec, rec .. ':results')
  end
  redis.call('SREM', rec .. ':pending', jid)
  redis.call('SREM', rec .. ':unrun', jid)
  redis.call('HDEL', rec .. ':failed', jid)
  settle_up(prefix, queues_key, batches_key, bid, now)
end
-- a member's retry, death or cancel: out of unrun, into failed (and dead when it died)
local function count_end(prefix, bid, jid, action, error, queues_key, batches_key, now)
  local rec = prefix .. bid
  redis.call('SREM', rec .. ':unrun', jid)
  redis.call('HSET', rec .. ':failed', jid, error)
  same_ttl(rec, rec .. ':failed')
  if action ~= 'retry' and action ~= 'cancel' then
    redis.call('SADD', rec .. ':dead', jid)
    same_ttl(rec, rec .. ':dead')
    fire(rec, queues_key, 'death', now)
  end
  settle_up(prefix, queues_key, batches_key, bid, now)
end
"""
