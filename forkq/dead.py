"""The dead set: the one module that writes and trims ``dead`` (DESIGN.md §3 and §4).

Every path that buries a job comes here: a job out of retries (retry writer), a payload forkq
cannot run (processor, poller), a poison job (recovery), an admin's kill (api). Each add trims
the set in the same Lua call, by age (``dead_timeout``) and count (``dead_max_jobs``), as
Sidekiq's ``DeadSet#kill`` does.

A move into ``dead`` takes the member out of its source (a sorted set or a list) and adds it in
one script call, so a job is never in neither place; when the member has already left the
source (another process moved it), nothing is added. In the cluster layout the source is in
another hash slot, and the move is two idempotent steps instead (``_bury_in_two_steps``); there
each add is followed by a ``WAIT`` on its own connection when the URL has ``wait_replicas``
(``dead`` is on another node than the job's source, so the source's own ``WAIT`` does not
cover it), so that a failover of the dead set's primary cannot undo a burial whose source
already let go. Too few confirmations are logged, as for the fetch acknowledgement.

Scripts elsewhere that must bury inside their own atomic step prepend ``DEAD_LUA`` and call
``dead_add`` per member and ``dead_trim`` once; ``DeadWriter.trim_args`` gives the trim's values.
"""

from __future__ import annotations

import base64
import time
from typing import Sequence

from . import connection
from .connection.scripts import Script
from .payload import dumps

#: Lua helpers shared by every script that writes ``dead``.
DEAD_LUA = """
local function dead_add(dead, score, member)
  redis.call('ZADD', dead, score, member)
end
local function dead_trim(dead, cutoff, max_jobs)
  redis.call('ZREMRANGEBYSCORE', dead, '-inf', cutoff)
  redis.call('ZREMRANGEBYRANK', dead, 0, -(tonumber(max_jobs) + 1))
end
"""

# KEYS: dead, source (none for kind 'none'). ARGV: now, cutoff, max jobs, source kind ('none', 'zset',
# 'list'), then (member in source, text to bury) pairs. Returns how many were buried.
BURY_SCRIPT = DEAD_LUA + """
local kind, buried = ARGV[4], 0
for i = 5, #ARGV, 2 do
  local present = 1
  if kind == 'zset' then
    present = redis.call('ZREM', KEYS[2], ARGV[i])
  elseif kind == 'list' then
    present = redis.call('LREM', KEYS[2], 1, ARGV[i])
  end
  if present == 1 then
    dead_add(KEYS[1], ARGV[1], ARGV[i + 1])
    buried = buried + 1
  end
end
dead_trim(KEYS[1], ARGV[2], ARGV[3])
return buried
"""

BURY = Script(BURY_SCRIPT)
#: the ``class`` of an envelope holding a payload forkq could not run
MALFORMED_CLASS = "forkq.MalformedJob"


class DeadWriter:
    """Writes to ``dead`` for one process; holds the trim limits from the config."""

    def __init__(self, keys, max_jobs: int, timeout: float) -> None:
        self.keys = keys
        self.max_jobs = max_jobs
        self.timeout = timeout

    def trim_args(self, now: float) -> list:
        """``now, cutoff, max jobs``: the first ARGV of ``BURY_SCRIPT`` and of ``dead_trim``."""
        return [repr(now), repr(now - self.timeout), self.max_jobs]

    def add(self, redis, texts: Sequence[str], now: float | None = None) -> int:
        """Bury jobs that are in no other structure (or whose source is acknowledged later)."""
        return self._bury(redis, "", "none", [(t, t) for t in texts], now)

    def move_from_zset(self, redis, source: str, pairs: Sequence[tuple[str, str]],
                       now: float | None = None) -> int:
        """(member, text) pairs: remove each member from ``source`` and bury its text."""
        return self._bury(redis, source, "zset", pairs, now)

    def move_from_list(self, redis, source: str, pairs: Sequence[tuple[str, str]],
                       now: float | None = None) -> int:
        """(member, text) pairs: remove one copy of each member from list ``source``, bury."""
        return self._bury(redis, source, "list", pairs, now)

    def _bury(self, redis, source: str, kind: str, pairs, now: float | None) -> int:
        if not pairs:
            return 0
        now = time.time() if now is None else now
        if source and self.keys.layout == "cluster":
            return self._bury_in_two_steps(redis, source, kind, pairs, now)
        args = self.trim_args(now) + [kind]
        for member, text in pairs:
            args += [member, text]
        keys = [self.keys.dead, source] if source else [self.keys.dead]
        if getattr(redis, "forkq_wait", None) and self.keys.layout == "cluster":
            return int(BURY.send_by(lambda command: connection.cluster.send_on_node(
                redis, [command], _logged)[0], BURY.command(keys, args)))
        return int(BURY(redis, keys, args))

    def _bury_in_two_steps(self, redis, source: str, kind: str, pairs, now: float) -> int:
        """The cluster layout's move into ``dead`` from another hash slot: add to ``dead``
        first, then remove from the source; when the member had already left the source
        (another process moved it), take the copy back out of ``dead``. Nothing is lost: a
        crash between the steps leaves the job in both places (the only cost of the split)."""
        buried = 0
        for member, text in pairs:
            self._bury(redis, "", "none", [(text, text)], now)
            if kind == "zset":
                removed = redis.zrem(source, member)
            else:
                removed = redis.lrem(source, 1, member)
            if removed:
                buried += 1
            else:
                redis.zrem(self.keys.dead, text)
        return buried


def _logged(confirmed: int, wait: tuple[int, int]) -> None:
    connection.replicas.confirmed(confirmed, wait[0])


def envelope(raw: str | bytes, reason: str, queue: str | None, jid: str,
             now: float) -> str:
    """A dead-set member for a payload that cannot run: its raw text and what is wrong.

    Text that is not UTF-8 is kept losslessly as base64 in ``raw`` with
    ``raw_encoding: "base64"``, so an operator can recover the exact bytes."""
    job = {"class": MALFORMED_CLASS, "args": [], "queue": queue or "default", "jid": jid,
           "created_at": now, "failed_at": now, "retry_count": 0, "retry": False,
           "error_class": "forkq.errors.MalformedJobError", "error_message": reason}
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            job["raw_encoding"] = "base64"
            raw = base64.b64encode(raw).decode("ascii")
    job["raw"] = raw
    return dumps(job)
