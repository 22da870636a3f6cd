"""Priority within a queue: the ``priority`` job option (-100..100, higher first, default 0).

Pure rules and the Redis commands that place a job at its level; shared by the client (push),
the fetcher (release), recovery, the poller and the coroutine runner's requeue.

Layout (``keys.py``): a job of priority 0 goes where Sidekiq puts every job, the list
``queue:<name>``, so Ruby Sidekiq and its web UI keep seeing it. A job of another priority goes
to ``forkq:level:<level>:<name>`` (a list, same ends as the queue: pushed left, taken right,
put back right). ``forkq:levels:<name>`` is a sorted set of the levels that may hold jobs (score
= member = the level); ``forkq:prioritized`` is the set of queue names that ever had a level
(the worker's guard: while none of its queues is in it, the fetch script never looks at levels).
A push adds the job to its list *before* its level to the sorted set, in one atomic step; the
fetch script removes a level only when it finds its list empty. ``forkq:bell:<name>`` is a
short list of wake-up tokens: a push at a level rings it, so that an idle thread blocked there
runs a fetch at once (a thread blocked on ``queue:<name>`` is woken only by a push there).
"""

from __future__ import annotations

import json
from typing import Any

#: the range of ``priority`` (Django's): higher runs first
LOWEST, HIGHEST = -100, 100
#: wake-up tokens a bell holds at most: one per idle thread it may have to wake
BELL_TOKENS = 16

#: Lua: record that ``level`` of queue ``name`` may hold jobs (after the job is in its list)
MARK_LUA = """
local function mark_level(levels_key, prioritized_key, level, name)
  redis.call('ZADD', levels_key, level, level)
  redis.call('SADD', prioritized_key, name)
end
"""
#: Lua: push ``text`` to ``level`` (not 0) of queue ``name``, mark the level and ring the bell;
#: the key names are ``keys.py``'s, made from ``root`` (``Keys.root``) as the fetch script does
PUSH_LUA = MARK_LUA + f"""
local function push_at_level(root, name, level, text)
  redis.call('LPUSH', root .. 'forkq:level:' .. level .. ':' .. name, text)
  mark_level(root .. 'forkq:levels:' .. name, root .. 'forkq:prioritized', level, name)
  local bell = root .. 'forkq:bell:' .. name
  redis.call('LPUSH', bell, '1')
  redis.call('LTRIM', bell, 0, {BELL_TOKENS - 1})
end
"""


def rule(value: Any) -> str | None:
    """Why ``value`` cannot be a priority, or None (the ``_OPTION_RULES`` shape)."""
    if type(value) is int and LOWEST <= value <= HIGHEST:
        return None
    return f"a whole number from {LOWEST} to {HIGHEST} (higher runs first; 0 is the default)"


def level_of(payload: Any) -> int:
    """The level a job waits at: its ``priority`` when valid, else 0 (a payload written by
    other code is placed, never refused, here)."""
    level = payload.get("priority", 0) if isinstance(payload, dict) else 0
    return level if rule(level) is None else 0


def level_of_text(text: str | bytes) -> int:
    if isinstance(text, str) and '"priority"' not in text:
        return 0  # the common case, without decoding
    try:
        return level_of(json.loads(text))
    except (ValueError, RecursionError):
        return 0


def push_commands(keys, queue: str, level: int, texts: list[str]) -> list[tuple]:
    """The commands that push ``texts`` (newest last) to ``level`` of ``queue``: the list,
    then its level, then the bell. Atomic only inside a script or a MULTI (``push.py``)."""
    if level == 0:
        return [("LPUSH", keys.queue(queue), *texts)]
    bell = keys.bell(queue)
    return [("LPUSH", keys.level(queue, level), *texts),
            ("ZADD", keys.levels(queue), level, level),
            ("SADD", keys.prioritized, queue),
            ("LPUSH", bell, *["1"] * min(len(texts), BELL_TOKENS)),
            ("LTRIM", bell, 0, BELL_TOKENS - 1)]


def front_keys(keys, queue: str, level: int) -> list[str]:
    """Keys of a put-back to the front of ``queue`` at ``level``: the list, and for a level
    other than 0 its sorted set and ``forkq:prioritized`` (``MARK_LUA``)."""
    if level == 0:
        return [keys.queue(queue)]
    return [keys.level(queue, level), keys.levels(queue), keys.prioritized]


def level_lists(redis, keys, names) -> dict[str, dict[int, str]]:
    """For each queue of ``names`` that has levels in use, its level lists by level, highest
    first (the admin side's reads: sizes, latency, clearing, cancelling). Two round trips."""
    marked = {_text(name) for name in redis.smembers(keys.prioritized)}
    names = [name for name in names if name in marked]
    if not names:
        return {}
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.zrevrange(keys.levels(name), 0, -1)
    return {name: {int(_text(level)): keys.level(name, int(_text(level))) for level in levels}
            for name, levels in zip(names, pipe.execute()) if levels}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PriorityView:
    """One worker process's copy of ``forkq:prioritized``, replaced whole by the control
    watch; read by the fetch (its guard) and the idle wait (which bells to block on)."""

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset()

    def update(self, names) -> None:
        self.names = frozenset(_text(name) for name in names)
