"""Where a waiting job lives in its queue: priority levels and fair shares between tenants.

Pure rules and the Redis commands that place a job; shared by the client (push), the fetcher
(release), recovery, the poller, the coroutine runner's requeue and the admin side's reads.

A job's *place* (``Place``) comes from its payload: its queue, its ``priority`` (-100..100,
higher first, default 0) and its ``fair_key`` (a tenant: fair shares within the queue).

- A job of priority 0 without a fair key goes where Sidekiq puts every job, the list
  ``queue:<name>``, so Ruby Sidekiq and its web UI keep seeing it.
- Priority ``p`` (not 0): the list ``forkq:level:<p>:<name>``; ``forkq:levels:<name>`` is a
  sorted set of the levels that may hold jobs (score = member = the level); the fetch takes
  the highest level first and removes a level it finds empty.
- Fair key ``t``: the list ``forkq:tenant:<name>,<t>`` (a queue name holds no comma);
  ``forkq:turns:<name>`` is a sorted set of the tenants with jobs waiting, scored by their
  last turn: a tenant joins with score 0 (``ZADD NX``: ahead of every tenant already served),
  and the fetch takes one job from the lowest-scored tenant, then gives it the next turn
  number (``forkq:turn:<name>``, ``INCR``) or removes it when its list is empty. In a queue
  with tenants, ``queue:<name>`` takes its turn as one more tenant (member ``""``), so plain
  and Ruby-pushed jobs are not starved.
- ``forkq:prioritized`` and ``forkq:fair`` are the sets of queue names that ever had a level or
  a tenant (the worker's guard: the fetch script looks at levels and turns only for those).
- A tenant's concurrency cap (the ``fair_limit`` option) is counted by the fetch script and
  given back by the release and recovery (``flow/fairlimit.py``).
- ``forkq:bell:<name>`` is a short list of wake-up tokens: a push that does not go to
  ``queue:<name>`` rings it, so that an idle thread waiting on it runs a fetch at once.

Every writer adds the job to its list *before* its level or tenant to the sorted set, in one
atomic step (a script or a MULTI); the fetch removes a member only when its list is empty.

In the cluster layout (``keys.ClusterKeys``) every one of a queue's keys above carries the
queue's hash tag, so each of these steps stays in one slot; ``forkq:prioritized`` and
``forkq:fair`` are directories in the meta slot, which the client adds a queue to before its
first such push (``connection/cluster.py``), and which only tell idle threads which bells to
wait on: the cluster's fetch looks for a queue's levels and turns itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..keys import QUEUE_KEYS_LUA
from ..values import name_problem

#: the range of ``priority`` (Django's): higher runs first
LOWEST, HIGHEST = -100, 100
#: wake-up tokens a bell holds at most: one per idle thread it may have to wake
BELL_TOKENS = 16

#: Lua: record that ``member`` of queue ``name`` may hold jobs (after the job is in its
#: list): ``ZADD NX`` keeps a waiting tenant's turn and a level's score. ``names`` is the set
#: of queue names to mark, or ``zset`` itself where that set is in another hash slot (the
#: cluster layout: ``front``, ``keys.QUEUE_KEYS_LUA``' ``guard_key``): the client marks it.
MARK_LUA = """
local function mark(zset, names, score, member, name)
  redis.call('ZADD', zset, 'NX', score, member)
  if names ~= zset then redis.call('SADD', names, name) end
end
"""
#: Lua: push ``text`` to the place of queue ``name`` at ``level`` for ``tenant`` ('' none),
#: not ``queue:<name>``, mark it and ring the bell. The key names are ``keys.py``'s, made from
#: ``root`` (``Keys.root``) as the fetch script makes them (``QUEUE_KEYS_LUA``).
PUSH_LUA = QUEUE_KEYS_LUA + MARK_LUA + f"""
local function push_placed(root, name, level, tenant, text)
  if tenant ~= '' then
    redis.call('LPUSH', tenant_key(root, name, tenant), text)
    local turns = queue_key(root, name, 'turns')
    mark(turns, guard_key(root, 'fair', turns), 0, tenant, name)
  else
    redis.call('LPUSH', queue_key(root, name, 'level:' .. level), text)
    local levels = queue_key(root, name, 'levels')
    mark(levels, guard_key(root, 'prioritized', levels), level, level, name)
  end
  local bell = queue_key(root, name, 'bell')
  redis.call('LPUSH', bell, '1')
  redis.call('LTRIM', bell, 0, {BELL_TOKENS - 1})
end
"""


@dataclass(frozen=True)
class Place:
    queue: str
    level: int = 0
    tenant: str = ""

    @property
    def plain(self) -> bool:
        """Whether the job waits in ``queue:<name>``, Sidekiq's list."""
        return self.level == 0 and not self.tenant


def priority_rule(value: Any) -> str | None:
    """Why ``value`` cannot be a priority, or None (the ``options`` rule shape)."""
    if type(value) is int and LOWEST <= value <= HIGHEST:
        return None
    return f"a whole number from {LOWEST} to {HIGHEST} (higher runs first; 0 is the default)"


def fair_key_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a fair key (a tenant), or None."""
    if not isinstance(value, str):
        return "a string naming the tenant"
    problem = name_problem(value)
    return f"a usable tenant name ({problem})" if problem else None


def place_of(payload: Any, queue: str) -> Place:
    """Where a job of ``queue`` waits, from its payload: a ``priority`` or ``fair_key`` that is
    not valid is ignored (a payload written by other code is placed, never refused, here). A
    payload with both is placed by its fair key (the client refuses the pair)."""
    if not isinstance(payload, dict):
        return Place(queue)
    tenant = payload.get("fair_key")
    if tenant is not None and fair_key_problem(tenant) is None:
        return Place(queue, 0, tenant)
    level = payload.get("priority", 0)
    return Place(queue, level if priority_rule(level) is None else 0)


def place_of_text(text: str | bytes, queue: str) -> Place:
    if isinstance(text, str) and '"priority"' not in text and '"fair_key"' not in text:
        return Place(queue)  # the common case, without decoding
    try:
        return place_of(json.loads(text), queue)
    except (ValueError, RecursionError):
        return Place(queue)


def push_commands(keys, place: Place, texts: list[str]) -> list[tuple]:
    """The commands that push ``texts`` (newest last) to ``place``: the list, then its member
    of the sorted set, then the bell. Atomic only inside a script or a MULTI (``push.py``)."""
    if place.plain:
        return [("LPUSH", keys.queue(place.queue), *texts)]
    bell = keys.bell(place.queue)
    return [("LPUSH", place_list(keys, place), *texts),
            ("ZADD", *_member(keys, place)),
            ("SADD", *_names(keys, place)),
            ("LPUSH", bell, *["1"] * min(len(texts), BELL_TOKENS)),
            ("LTRIM", bell, 0, BELL_TOKENS - 1)]


def place_list(keys, place: Place) -> str:
    if place.tenant:
        return keys.tenant(place.queue, place.tenant)
    return keys.level(place.queue, place.level) if place.level else keys.queue(place.queue)


def front(keys, place: Place) -> tuple[list[str], list]:
    """Keys and arguments of a put-back to the front of ``place`` (``MARK_LUA``): the list,
    and for a place other than ``queue:<name>`` its sorted set and set of names, with the
    score, member and queue name to mark."""
    if place.plain:
        return [keys.queue(place.queue)], ["", "", ""]
    zset, _, score, member = _member(keys, place)
    names = zset if keys.layout == "cluster" else _names(keys, place)[0]  # see MARK_LUA
    return [place_list(keys, place), zset, names], [score, member, place.queue]


def _member(keys, place: Place) -> tuple:
    if place.tenant:
        return keys.turns(place.queue), "NX", 0, place.tenant
    return keys.levels(place.queue), "NX", place.level, place.level


def _names(keys, place: Place) -> tuple:
    return (keys.fair, place.queue) if place.tenant else (keys.prioritized, place.queue)


def level_lists(redis, keys, names) -> dict[str, dict[int, str]]:
    """For each queue of ``names`` that has levels in use, its level lists by level, highest
    first (the admin side's reads: sizes, latency, clearing, cancelling). Two round trips."""
    return {name: {int(level): keys.level(name, int(level)) for level in levels}
            for name, levels in _members(redis, names, keys.prioritized, keys.levels).items()}


def tenant_lists(redis, keys, names) -> dict[str, dict[str, str]]:
    """For each queue of ``names`` that has tenants waiting, their lists by tenant, in turn
    order (the plain list's turn left out). Reads every tenant: for admin reads."""
    turns = _members(redis, names, keys.fair, keys.turns, lowest_first=True)
    return {name: {t: keys.tenant(name, t) for t in tenants if t}
            for name, tenants in turns.items()}


def _members(redis, names, marked_key: str, zset_of, lowest_first=False) -> dict[str, list]:
    """The members of ``zset_of(name)`` for each of ``names`` in the set ``marked_key``."""
    marked = {_text(name) for name in redis.smembers(marked_key)}
    names = [name for name in names if name in marked]
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.zrange(zset_of(name), 0, -1, desc=not lowest_first)
    return {name: [_text(member) for member in members]
            for name, members in zip(names, pipe.execute()) if members}


def waiting_lists(redis, keys, names, tenants=None) -> dict[str, list[str]]:
    """Every list holding each queue's waiting jobs: ``queue:<name>`` first, then its levels'
    and last its tenants' lists (``tenants``: ``tenant_lists``' reply, when read already)."""
    levels = level_lists(redis, keys, names)
    tenants = tenant_lists(redis, keys, names) if tenants is None else tenants
    return {name: [keys.queue(name), *levels.get(name, {}).values(),
                   *tenants.get(name, {}).values()] for name in names}


def largest(tenants, sizes, top: int | None) -> list[tuple[str, int]]:
    """The ``top`` (None: all) largest backlogs as (tenant, size), largest first."""
    ranked = sorted(zip(tenants, sizes), key=lambda pair: (-pair[1], pair[0]))
    return ranked[:top] if top is not None else ranked


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PlacementView:
    """One worker process's copy of ``forkq:prioritized`` and ``forkq:fair``, replaced whole
    by the control watch; read by the fetch (its guard) and the idle wait (which bells)."""

    def __init__(self) -> None:
        self.leveled: frozenset[str] = frozenset()
        self.fair: frozenset[str] = frozenset()
        #: queues whose pushes may not reach ``queue:<name>``: they have bells
        self.names: frozenset[str] = frozenset()

    def update(self, leveled, fair) -> None:
        self.leveled = frozenset(_text(name) for name in leveled)
        self.fair = frozenset(_text(name) for name in fair)
        self.names = self.leveled | self.fair

    def flags(self, names: list[str]) -> str:
        """The fetch script's per-queue flags: 0 plain, +1 levels, +2 tenants; '' for none."""
        if not self.names:
            return ""
        return "".join(chr(48 + (name in self.leveled) + 2 * (name in self.fair))
                       for name in names)
