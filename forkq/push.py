"""The Redis commands that push payloads: pure, shared by the synchronous and asyncio clients.

A payload with a future ``at`` goes to ``schedule``; otherwise it gets ``enqueued_at`` and goes
to its queue (``SADD queues`` then one multi-value ``LPUSH`` per queue and place, a
priority level or a tenant: ``flow/placement.py``). A payload that keeps
a result (``result_ttl``) is recorded as ``queued`` by a ``SET`` sent before its push, so a
worker that fetches it at once always finds the record (``commands``).

Unique jobs are locked and pushed in one atomic round trip: one script call
(``LOCK_PUSH_SCRIPT``), for single and bulk pushes. For each payload the script takes its lock
(``SET <unique key> <jid> NX PX <ttl>``, ``flow/unique.py``) if it has one, and runs the
payload's push commands only when it took the lock or has none; its reply says, payload by
payload, which were pushed. Lock and push cannot be separated, so a producer killed mid-push
leaves either nothing or a pushed job with its lock, never a lock without a job.

One source of truth for the push layout: the script does not know it. ``script_call`` asks
``commands`` for each payload's own commands (the ``queued`` result record, ``SADD queues``
and ``LPUSH``, or ``ZADD schedule``; ``enqueued_at`` set as there) and hands them over as data:
each command's key in ``KEYS``, its name and other arguments in ``ARGV``; the script runs them
as given. Pushed one payload at a time, a batch leaves Redis as one multi-value push would:
the same keys, members and list order.

Failure: a push command that fails (``WRONGTYPE`` on a queue key) makes the script delete the
lock it just took for that payload and return the error, which the client raises; payloads
before it in the call are pushed and hold their locks, those after it are not run, and what
that payload's commands wrote before the failing one (its ``queued`` result record, ``SADD
queues``) stays. A reply lost to a cut connection leaves the push done or not done as a whole:
a retried call then finds the job's lock (a duplicate).
"""

from __future__ import annotations

from typing import Any

from . import results
from .connection.scripts import Script
from .flow import placement
from .log import logger
from .payload import dumps


def commands(keys, payloads: list[dict[str, Any]], at: float | None,
             now: float) -> list[tuple]:
    """What to send, in order, to push ``payloads`` (mutated: ``enqueued_at`` is set)."""
    recorded: list[tuple] = []
    for payload in payloads:
        recorded += results.queued_commands(keys, payload, now)
    if at is not None and at > now:
        by_set: dict[str, list] = {}
        for payload in payloads:
            by_set.setdefault(keys.schedule_for(payload["queue"]), []).extend(
                (at, dumps(payload)))
        return recorded + [("ZADD", key, *members) for key, members in by_set.items()]
    by_place: dict[placement.Place, list[str]] = {}
    for payload in payloads:
        payload["enqueued_at"] = now
        place = placement.place_of(payload, payload["queue"])
        by_place.setdefault(place, []).append(dumps(payload))
    queues = dict.fromkeys(place.queue for place in by_place)
    return recorded + [("SADD", keys.queues, *queues)] + [
        command for place, texts in by_place.items()
        for command in placement.push_commands(keys, place, texts)]


def sendable(keys, payloads: list[dict[str, Any]], at: float | None,
             now: float) -> list[tuple]:
    """``commands``, in a MULTI when they push to a level or a tenant: a job's list and its
    member of the sorted set are written together (``flow/placement.py``), else a cut
    connection could leave a job where no fetch looks. A plain push needs none."""
    sent = commands(keys, payloads, at, now)
    # a payload naming neither a priority nor a tenant is plain without working out its place
    if (at is not None and at > now) or all(
            ("priority" not in p and "fair_key" not in p)
            or placement.place_of(p, p["queue"]).plain for p in payloads):
        return sent
    return [("MULTI",), *sent, ("EXEC",)]


# KEYS, per payload: its lock key (when it has a lock), then the key of each push command.
# ARGV, per payload: jid, lock TTL in ms (0: no lock), command count, then per command: name,
# count of its arguments after the key, those arguments. Returns 1 per payload pushed, 0 per
# payload refused (its lock is held).
LOCK_PUSH_SCRIPT = """
local k, a, pushed = 1, 1, {}
while a <= #ARGV do
  local jid, ttl, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local lock, took = nil, true
  a = a + 3
  if ttl > 0 then
    lock, k = KEYS[k], k + 1
    took = redis.call('SET', lock, jid, 'NX', 'PX', ttl) ~= false
  end
  for _ = 1, count do
    local command, n = {ARGV[a], KEYS[k]}, tonumber(ARGV[a + 1])
    for i = 1, n do command[i + 2] = ARGV[a + 1 + i] end
    a, k = a + 2 + n, k + 1
    if took then
      local reply = redis.pcall(unpack(command))
      if type(reply) == 'table' and reply.err then
        if lock then redis.call('DEL', lock) end
        return reply
      end
    end
  end
  pushed[#pushed + 1] = took and 1 or 0
end
return pushed
"""
LOCK_PUSH = Script(LOCK_PUSH_SCRIPT)
#: most payloads per script call: a bulk push with a bigger ``batch_size`` makes several calls,
#: since one call is one command (Redis takes at most 1,048,576 arguments, about 58,000 jobs,
#: and runs nothing else while the script runs)
SCRIPT_BATCH = 1000


def parts(payloads: list[dict[str, Any]], locks: list):
    """``(payloads, locks)`` in slices of at most ``SCRIPT_BATCH``, one script call each."""
    for start in range(0, len(payloads), SCRIPT_BATCH):
        yield payloads[start:start + SCRIPT_BATCH], locks[start:start + SCRIPT_BATCH]


def script_call(keys, payloads: list[dict[str, Any]], locks: list, at: float | None,
                now: float) -> tuple:
    """The ``EVALSHA`` that locks and pushes ``payloads``; ``locks[i]`` is payload i's
    ``(digest, ttl seconds)``, or None for a payload without a lock."""
    script_keys: list[str] = []
    script_args: list = []
    for payload, lock in zip(payloads, locks):
        pushed_by = commands(keys, [payload], at, now)
        if lock is not None:
            script_keys.append(keys.unique(lock[0]))
        script_args += [payload["jid"], lock_ms(lock) if lock is not None else 0, len(pushed_by)]
        for name, key, *rest in pushed_by:
            script_keys.append(key)
            script_args += [name, len(rest), *rest]
    return LOCK_PUSH.command(script_keys, script_args)


def lock_ms(lock: tuple[str, float]) -> int:
    return max(int(lock[1] * 1000), 1)


def pushed(payloads: list[dict[str, Any]], locks: list, reply: list) -> list[dict[str, Any]]:
    """The payloads the script pushed; each refused one (a duplicate) is logged at debug."""
    done = []
    for payload, lock, was_pushed in zip(payloads, locks, reply):
        if was_pushed:
            done.append(payload)
        else:
            logger.debug("%s %s: a job with unique digest %s is already queued, scheduled or "
                         "running; not enqueued", payload["class"], payload["args"], lock[0])
    return done
