"""The poller: moves due jobs from ``schedule`` and ``retry`` to their queues; runs recovery.

A thread of the worker child. Each wait is drawn uniformly from [0.5, 1.5] × ``poll_interval``
so that many processes started together do not poll together.

Each round reads a batch of due entries (as bytes) and checks each with the processor's rule
(``payload.parse``). Good entries move in one Lua call that removes each from the sorted set
and pushes it to its queue in the same atomic step, so a job is moved exactly once however
many processes poll, and never lost between the set and the list. ``enqueued_at`` is set to the
time of the move by splicing the number into the JSON text; re-encoding (Redis' cjson reorders
keys and rounds big integers) happens only when the text holds several ``"enqueued_at":`` keys
and the top-level one cannot be told apart, and if that fails the text moves unchanged: the
script never removes an entry it does not place. A malformed entry (not UTF-8, not a JSON
object, no class...) moves to the dead set as an envelope with its raw text and the reason,
in one atomic step too (``DeadWriter.move_from_zset``).

Cost: a round is two calls (the read, then the move) where one script could do both, and each
due entry is parsed in Python. That is the price of the check: a script cannot tell a payload
the processor would refuse, and a poll moves at most ``MOVE_BATCH`` jobs a call, a few times
a second per process, so it stays off the per-job hot path.

In the cluster layout (``layout: cluster``) each queue has its own ``schedule`` and ``retry``;
a round polls those of this process's queues and of the directory of queues, each moved by
``CLUSTER_ENQUEUE_DUE`` within the queue's hash slot; a sharded queue's, those of every shard
up to its highest count ever recorded (``flow/shards.py``), each moved into its own shard.

A sorted set that Redis refuses to read as one (a producer made ``retry`` a list) is left as it
is and the other is still polled; the refusal is logged once when it starts and once when the
key is readable again, not at every poll.
"""

from __future__ import annotations

import random
import threading
import time

import redis as redis_py
from redis.client import NEVER_DECODE

from ..client import new_jid
from ..connection.health import refused_for_data
from ..connection.scripts import Script
from ..dead import envelope
from ..errors import MalformedJobError
from ..flow import batch_scripts, placement, shards
from ..flow.placement import PUSH_LUA
from .fetch import queue_of
from ..log import logger
from ..payload import batch_member, parse

#: due entries read per round; the poller repeats while rounds come back full
MOVE_BATCH = 100

#: Lua: ``with_enqueued_at(text, kind, now)``, the job text with its top-level ``enqueued_at``
#: set to ``now`` (kind: 0 none in the text, 1 a number, 2 anything else)
ENQUEUED_AT_LUA = r"""
local function with_enqueued_at(text, top_level, now)
  local pattern = '"enqueued_at"%s*:%s*[-0-9.eE+]+'
  if top_level == '0' then
    local open = string.find(text, '{', 1, true)
    local rest = string.sub(text, open + 1)
    local sep = string.match(rest, '^%s*}') and '' or ','
    return string.sub(text, 1, open) .. '"enqueued_at":' .. now .. sep .. rest
  end
  local _, found = string.gsub(text, pattern, '')
  if top_level == '1' and found == 1 then
    return (string.gsub(text, pattern, '"enqueued_at":' .. now))
  end
  local job = cjson.decode(text)
  job.enqueued_at = tonumber(now)
  return cjson.encode(job)
end
"""

ENQUEUE_DUE_SCRIPT = ENQUEUED_AT_LUA + PUSH_LUA + r"""
-- KEYS: sorted set, queues set. ARGV: now, queue key prefix, Keys.root, then per entry:
-- member, queue, its top-level enqueued_at: 0 none, 1 a number, 2 anything else, its place:
-- priority level and tenant ('' none; flow/placement.py). Returns how many it moved.
local moved = 0
for i = 4, #ARGV, 5 do
  local text, queue, level, tenant = ARGV[i], ARGV[i + 1], ARGV[i + 3], ARGV[i + 4]
  local ok, spliced = pcall(with_enqueued_at, text, ARGV[i + 2], ARGV[1])
  if redis.call('ZREM', KEYS[1], text) == 1 then
    redis.call('SADD', KEYS[2], queue)
    if level == '0' and tenant == '' then
      redis.call('LPUSH', ARGV[2] .. queue, ok and spliced or text)
    else
      push_placed(ARGV[3], queue, level, tenant, ok and spliced or text)
    end
    moved = moved + 1
  end
end
return moved
"""
ENQUEUE_DUE = Script(ENQUEUE_DUE_SCRIPT)

CLUSTER_ENQUEUE_DUE_SCRIPT = ENQUEUED_AT_LUA + PUSH_LUA + r"""
-- The cluster layout's move (one queue's sorted set to that queue's places, one hash slot).
-- KEYS: sorted set, queue. ARGV as ENQUEUE_DUE's, but the queue's name for the prefix (each
-- entry's own queue unused: the set is its queue's).
local moved = 0
for i = 4, #ARGV, 5 do
  local text, level, tenant = ARGV[i], ARGV[i + 3], ARGV[i + 4]
  local ok, spliced = pcall(with_enqueued_at, text, ARGV[i + 2], ARGV[1])
  if redis.call('ZREM', KEYS[1], text) == 1 then
    if level == '0' and tenant == '' then
      redis.call('LPUSH', KEYS[2], ok and spliced or text)
    else
      push_placed(ARGV[3], ARGV[2], level, tenant, ok and spliced or text)
    end
    moved = moved + 1
  end
end
return moved
"""
CLUSTER_ENQUEUE_DUE = Script(CLUSTER_ENQUEUE_DUE_SCRIPT)


def sort_due(entries: list[bytes]) -> tuple[list, list[tuple[bytes, str]]]:
    """(move arguments for the good entries, (entry, reason) for the malformed ones)."""
    good, bad = [], []
    for entry in entries:
        try:
            payload = parse(entry)
        except MalformedJobError as exc:
            bad.append((entry, str(exc)))
            continue
        place = placement.place_of(payload, payload.get("queue") or "default")
        good += [entry, place.queue, _enqueued_at_kind(payload), place.level, place.tenant]
    return good, bad


def _enqueued_at_kind(payload: dict) -> int:
    """How the script must set ``enqueued_at``: 0 insert it, 1 replace the number in the text,
    2 re-encode (the top-level value is not a number the text pattern can find)."""
    if "enqueued_at" not in payload:
        return 0
    return 1 if type(payload["enqueued_at"]) in (int, float) else 2


def poll_wait(poll_interval: float, rand=random.random) -> float:
    """Seconds until the next poll: uniform in [0.5, 1.5] × the average."""
    return poll_interval * (0.5 + rand())


class Poller(threading.Thread):
    def __init__(self, context, recovery) -> None:
        super().__init__(name="poller", daemon=True)
        self.context = context
        self.recovery = recovery
        self.redis = context.make_redis()
        self._halt = threading.Event()
        #: the sorted sets Redis refuses to read as such, logged when they became so
        self.refused: set[str] = set()

    def run(self) -> None:
        while not self._halt.wait(poll_wait(self.context.config.poll_interval)):
            try:
                self.enqueue_due()
                self.recovery.scan_if_due()
                self.context.health.succeeded()
            except (redis_py.ConnectionError, redis_py.TimeoutError) as exc:
                self.context.health.failed(exc)
            except Exception:
                logger.exception("poller error; entries it did not move stay where they are, "
                                 "and it tries again at the next poll")

    def enqueue_due(self, now: float | None = None) -> int:
        """Move every due job of ``schedule`` and ``retry`` to its queue; returns the count."""
        moved = 0
        for sorted_set, queue in self._due_sets():
            try:
                moved += self._move_due(sorted_set, queue, now)
            except redis_py.ResponseError as exc:
                if not refused_for_data(exc):
                    raise
                self._refused(sorted_set, exc)
            else:
                self._readable(sorted_set)
        return moved

    def _due_sets(self) -> list[tuple[str, str | None]]:
        """(sorted set, its queue) to poll: ``schedule`` and ``retry`` for every queue; in
        the cluster layout a pair per queue, those of this process and those pushed to."""
        keys = self.context.keys
        if keys.layout != "cluster":
            return [(keys.schedule, None), (keys.retry, None)]
        queues = set(self.context.config.queue_names) | self.redis.smembers(keys.queues)
        counts = shards.highest_counts(self.redis, keys)  # every index that may hold jobs
        names = [name for queue in sorted(queues) for name in shards.shard_names(
            keys, queue, max(counts.get(queue, 1), self.context.shards.counts.get(queue, 1)))]
        return [(key, name) for name in names
                for key in (keys.schedule_for(name), keys.retry_for(name))]

    def _move_due(self, sorted_set: str, queue: str | None, now: float | None) -> int:
        keys = self.context.keys
        moved = 0
        while True:
            stamp = repr(time.time() if now is None else now)
            due = self.redis.execute_command("ZRANGEBYSCORE", sorted_set, "-inf", stamp,
                                             "LIMIT", 0, MOVE_BATCH, **{NEVER_DECODE: True})
            good, bad = sort_due(due)
            if good and queue is None:
                moved += ENQUEUE_DUE(self.redis, [sorted_set, keys.queues],
                                     [stamp, keys.queue(""), keys.root] + good, raw=True)
            elif good:
                moved += CLUSTER_ENQUEUE_DUE(self.redis, [sorted_set, keys.queue(queue)],
                                             [stamp, keys.lua_name(queue), keys.root] + good,
                                             raw=True)
            if bad:
                self._bury(sorted_set, bad)
            if len(due) < MOVE_BATCH:
                return moved

    def _refused(self, sorted_set: str, exc: Exception) -> None:
        if sorted_set not in self.refused:
            self.refused.add(sorted_set)
            logger.error("%s cannot be polled: Redis refuses it (%s); what it holds waits "
                         "there until the key is a sorted set again", sorted_set, exc)

    def _readable(self, sorted_set: str) -> None:
        if sorted_set in self.refused:
            self.refused.discard(sorted_set)
            logger.warning("%s can be polled again", sorted_set)

    def _bury(self, sorted_set: str, bad: list[tuple[bytes, str]]) -> None:
        now = time.time()
        pairs = [(entry, envelope(entry, f"in {sorted_set}: {reason}", queue_of(entry),
                                  new_jid(), now)) for entry, reason in bad]
        if self.context.dead_set.move_from_zset(self.redis, sorted_set, pairs, now):
            for _, reason in bad:
                logger.error("entry in %s: dead: %s", sorted_set, reason)
            self._count_in_batches(sorted_set, bad)

    def _count_in_batches(self, sorted_set: str, bad: list[tuple[bytes, str]]) -> None:
        """Buried entries that still name their batch are counted dead there, after their
        burial (a process killed in between leaves the batch waiting for them); counting a
        jid twice, as two pollers may, counts it once."""
        for entry, reason in bad:
            member = batch_member(entry)
            if member is not None:
                batch_scripts.malformed(self.redis, self.context.keys, member,
                                        f"in {sorted_set}: {reason}")

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)
