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

In the cluster layout a script's keys must share one hash slot: each call is of one queue
(``parts``), whose slot holds the jobs' locks (``keys.ClusterKeys.unique``) and their
``LPUSH`` or ``ZADD``; the commands in the meta slot (``SADD`` into the directory, a ``queued``
result record) are sent just before the call, and the record of a job whose lock was refused
is deleted after it (``lock_and_push``). A producer killed between the two leaves a record
until its TTL, never a lock without its job.

Failure: a push command that fails (``WRONGTYPE`` on a queue key) makes the script delete the
lock it just took for that payload and return the error, which the client raises; payloads
before it in the call are pushed and hold their locks, those after it are not run, and what
that payload's commands wrote before the failing one (its ``queued`` result record, ``SADD
queues``) stays. A reply lost to a cut connection leaves the push done or not done as a whole:
a retried call then finds the job's lock (a duplicate).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, NamedTuple

from . import results
from .connection.scripts import Script
from .flow import placement, unique
from .log import logger
from .payload import dumps, home_named


def commands(keys, payloads: list[dict[str, Any]], at: float | None,
             now: float) -> list[tuple]:
    """What to send, in order, to push ``payloads`` (mutated: ``enqueued_at`` is set)."""
    recorded: list[tuple] = []
    for payload in payloads:
        recorded += results.queued_commands(keys, payload, now)
    if at is not None and at > now:
        by_set: dict[str, list] = {}
        for payload in payloads:
            by_set.setdefault(keys.schedule_for(home_named(keys, payload)), []).extend(
                (at, dumps(payload)))
        # the cluster layout's sets are per queue: its directory names them, for the pollers,
        # the API and cancels (Sidekiq's one schedule set needs no entry)
        listed = [("SADD", keys.queues, *dict.fromkeys(p["queue"] for p in payloads))] \
            if keys.layout == "cluster" else []
        return recorded + listed + [("ZADD", key, *members) for key, members in by_set.items()]
    by_place: dict[placement.Place, list[str]] = {}
    for payload in payloads:
        payload["enqueued_at"] = now
        place = placement.place_of(payload, home_named(keys, payload))
        by_place.setdefault(place, []).append(dumps(payload))
    queues = dict.fromkeys(payload["queue"] for payload in payloads)
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


class LockCall(NamedTuple):
    """One script call of a locked push, and what goes around it where its payloads' commands
    are not all in one hash slot (the cluster layout)."""

    #: commands on keys outside the script's slot, sent before it: the ``queued`` result
    #: records and the directory's ``SADD`` (none on one server)
    before: list[tuple]
    #: the ``EVALSHA`` that locks and pushes
    command: tuple
    #: per payload: the commands that take back its share of ``before`` if it is refused
    undo: list[list[tuple]]


def parts(keys, payloads: list[dict[str, Any]], locks: list):
    """``(payloads, locks)`` in slices of at most ``SCRIPT_BATCH``, one script call each; in
    the cluster layout each slice is of one queue, whose slot holds its locks and its list."""
    groups: dict[str, tuple[list, list]] = {}
    for payload, lock in zip(payloads, locks):
        group = "" if keys.layout != "cluster" else home_named(keys, payload)
        groups.setdefault(group, ([], []))
        groups[group][0].append(payload)
        groups[group][1].append(lock)
    for group, group_locks in groups.values():
        for start in range(0, len(group), SCRIPT_BATCH):
            yield group[start:start + SCRIPT_BATCH], group_locks[start:start + SCRIPT_BATCH]


def script_call(keys, payloads: list[dict[str, Any]], locks: list, at: float | None,
                now: float) -> LockCall:
    """The call that locks and pushes ``payloads`` (one ``parts`` slice); ``locks[i]`` is
    payload i's ``(digest, ttl seconds)``, or None for a payload without a lock."""
    anchor = keys.queue(home_named(keys, payloads[0]))
    before: list[tuple] = []
    undo: list[list[tuple]] = []
    script_keys: list[str] = []
    script_args: list = []
    for payload, lock in zip(payloads, locks):
        pushed_by = commands(keys, [payload], at, now)
        outside = [command for command in pushed_by if keys.apart(command[1], anchor)]
        inside = [command for command in pushed_by if command not in outside]
        before += outside
        undo.append([("DEL", key) for name, key, *_ in outside if name == "SET"])
        if lock is not None:
            script_keys.append(keys.unique(lock[0], unique.lock_queue(payload)))
        script_args += [payload["jid"], lock_ms(lock) if lock is not None else 0, len(inside)]
        for name, key, *rest in inside:
            script_keys.append(key)
            script_args += [name, len(rest), *rest]
    return LockCall(before, LOCK_PUSH.command(script_keys, script_args), undo)


def lock_and_push(call: LockCall, send: Callable[[list[tuple]], list]) -> list:
    """Send ``call`` with ``send`` (``connection.send_commands`` on a client); its reply."""
    if call.before:
        send(call.before)
    reply = LOCK_PUSH.send_by(lambda command: send([command])[0], call.command)
    taken_back = refused_undo(call, reply)
    if taken_back:
        send(taken_back)
    return reply


async def lock_and_push_async(call: LockCall, send: Callable[[list[tuple]], Awaitable]) -> list:
    """``lock_and_push`` with an asyncio ``send``."""
    if call.before:
        await send(call.before)
    (reply,) = await LOCK_PUSH.send_by_async(lambda command: send([command]), call.command)
    taken_back = refused_undo(call, reply)
    if taken_back:
        await send(taken_back)
    return reply


def refused_undo(call: LockCall, reply: list) -> list[tuple]:
    """What takes back the ``before`` commands of the payloads the script refused."""
    return [command for undo, was_pushed in zip(call.undo, reply) if not was_pushed
            for command in undo]


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
