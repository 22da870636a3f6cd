"""The per-tenant concurrency cap of fair shares (the ``fair_limit`` job option).

A job pushed with a ``fair_key`` and a ``fair_limit`` of N is not fetched while N jobs of its
tenant in its queue, fetched under a limit, are held by workers (every process together).
Shared by the fetch script (count, skip), the release and adopt scripts and recovery (give
back); the rule for the option's value is here too.

Counts live in two places, always changed together in one script:

- ``forkq:fair-running:<queue>``: hash tenant → jobs held (what the fetch compares the limit
  with);
- ``<private list>:fair``: hash ``<queue>,<tenant>`` → jobs the fetch counted into that
  private list (a thread's record).

The fetch counts a job into its fill list's record and gives back the whole record of the list
it acknowledges; a release gives back the thread's record; recovery gives back the record of a
list it emptied. So a tenant's count is the sum of the records, and a record is given back
whenever its list is acknowledged or recovered: a kill -9 leaks nothing past the recovery of
its slot (at the replacement's boot, or the heartbeat scan for a host that is gone).
"""

from __future__ import annotations

from typing import Any

from ..connection.scripts import Script
from ..keys import QUEUE_KEYS_LUA

#: the largest ``fair_limit`` accepted
MOST = 10_000
#: tenants the fetch looks at past the first two when those are at their limit: a fetch whose
#: LOOK_AHEAD + 2 (18) oldest turns are all tenants at their limit takes nothing from the
#: queue's tenants until one of their jobs ends
LOOK_AHEAD = 16

#: Lua: read, count and give back; ``root`` is ``Keys.root`` (``keys.QUEUE_KEYS_LUA``)
FAIR_LIMIT_LUA = QUEUE_KEYS_LUA + """
-- The fair_limit of a job's text, or nil (a payload written by other code with a value that
-- is not a whole number from 1 is not limited, as an invalid priority is ignored).
local function limit_of(job)
  if not job or not string.find(job, '"fair_limit"', 1, true) then return nil end
  local ok, payload = pcall(cjson.decode, job)
  if not ok or type(payload) ~= 'table' then return nil end
  local n = payload['fair_limit']
  if type(n) == 'number' and n >= 1 and n == math.floor(n) then return n end
  return nil
end

local function count_held(record, root, queue, tenant, n)
  redis.call('HINCRBY', record, queue .. ',' .. tenant, n)
  redis.call('HINCRBY', queue_key(root, queue, 'fair-running'), tenant, n)
end

-- Give back every count of a private list's record (the list was acknowledged or emptied).
local function give_back(record, root)
  local held = redis.call('HGETALL', record)
  for i = 1, #held, 2 do
    local queue, tenant = string.match(held[i], '^([^,]*),(.*)$')
    local running = queue_key(root, queue, 'fair-running')
    if redis.call('HINCRBY', running, tenant, -tonumber(held[i + 1])) <= 0 then
      redis.call('HDEL', running, tenant)
    end
  end
  if #held > 0 then redis.call('DEL', record) end
end
"""

GIVE_BACK = Script(FAIR_LIMIT_LUA + """
-- KEYS: a private list, its record. ARGV: root. Gives back the record once the list is empty.
if redis.call('EXISTS', KEYS[1]) == 0 then give_back(KEYS[2], ARGV[1]) end
""")


def limit_rule(value: Any) -> str | None:
    """Why ``value`` cannot be a ``fair_limit``, or None (the ``options`` rule shape)."""
    if type(value) is int and 1 <= value <= MOST:
        return None
    return f"a whole number from 1 to {MOST} (jobs of one tenant running at once)"


def record_key(list_key: str) -> str:
    """The record of the counts a private list holds (``Keys`` lists it)."""
    return f"{list_key}:fair"


def give_back_emptied(redis, keys, list_key: str) -> None:
    """Give back the counts of ``list_key`` if it is empty (recovery moved its jobs out)."""
    GIVE_BACK(redis, [list_key, record_key(list_key)], [keys.root])


def running(redis, keys, queue: str) -> dict[str, int]:
    """Jobs held under a limit, by tenant, in ``queue`` (tenants at 0 are absent)."""
    return {_text(t): int(n) for t, n in redis.hgetall(keys.fair_running(queue)).items()}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
