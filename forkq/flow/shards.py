"""Sharded hot queues (cluster layout): one queue split into lists on several hash slots.

A queue configured with ``shards: n`` (``[media, 3, {shards: 8}]`` in ``queues:``) is n
lists, each with its own hash tag (``keys.shard_tag``: shard 0 is the unsharded queue's tag,
the others spread over the slot space), its private lists, ``schedule`` and ``retry`` sets and
counters, so every script call stays in one slot and the shards land on several primaries.

Who knows the count: each worker, at its start, records its configured counts in
``forkq:{meta}:shards`` and raises ``forkq:{meta}:shards-ever`` (``record``); it then drains
every index below the highest count ever recorded, so lowering the count never strands a job.
A client reads ``forkq:{meta}:shards`` (one ``HGETALL``, kept ``REFRESH`` seconds) and writes
the shard it picks into the payload (``shard``), where retries and scheduled runs find it; a
queue not recorded (no worker started yet) has one shard, shard 0, which every worker drains.

Which shard: the payload's ``shard_key`` hashed (CRC-32), so one key's jobs stay in one list,
in order; else the client's own turn, round-robin per queue.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import zlib
from typing import Any

from ..connection.scripts import Script
from . import placement
from ..keys import cluster_name_problem

#: seconds a client keeps the shard counts it read
REFRESH = 5.0

# KEYS: shards, shards-ever. ARGV: queue, count, queue, count... Records each count and raises
# each highest count; returns the highest counts, in order.
RECORD = Script("""
local ever = {}
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  local highest = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > highest then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    highest = tonumber(ARGV[i + 1])
  end
  ever[#ever + 1] = highest
end
return ever
""")


def record(redis, keys, queues) -> dict[str, int]:
    """Record the configured shard counts of ``queues`` (``config.Queue``); the count each
    must be drained to: the highest ever recorded."""
    args = [value for queue in queues for value in (queue.name, queue.shards)]
    highest = RECORD(redis, [keys.shards, keys.shards_ever], args)
    return {queue.name: int(count) for queue, count in zip(queues, highest)}


def highest_counts(redis, keys) -> dict[str, int]:
    """Every queue's highest shard count ever recorded (pollers and the api)."""
    return {_text(name): int(count) for name, count in redis.hgetall(keys.shards_ever).items()}


def every_list(redis, keys, queues) -> list[str]:
    """The names of the lists of ``queues``: each sharded one's every shard ever recorded."""
    counts = highest_counts(redis, keys)
    return [name for queue in queues for name in shard_names(keys, queue, counts.get(queue, 1))]


def shard_names(keys, queue: str, count: int) -> list[str]:
    """The names of ``queue``'s shards (``keys.shard_queue``), shard 0 first."""
    return [keys.shard_queue(queue, index) for index in range(max(count, 1))]


def shard_of_key(key: str, count: int) -> int:
    """The shard a ``shard_key`` places its jobs on: stable across processes and runs."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % count


class ShardCounts:
    """A client's copy of the queues' shard counts and its round-robin turns."""

    def __init__(self) -> None:
        self._counts: tuple[float, dict[str, int]] = (float("-inf"), {})
        self._turns: dict[str, Any] = {}
        self._lock = threading.Lock()

    def count(self, redis, keys, queue: str) -> int:
        """``queue``'s shard count, as read at most ``REFRESH`` seconds ago; a queue name the
        cluster layout cannot tell from a shard's is refused, naming it."""
        problem = cluster_name_problem(queue)
        if problem:
            raise TypeError(f"queue {queue!r}: {problem}")
        read_at, counts = self._counts
        if time.monotonic() - read_at > REFRESH:
            counts = {_text(name): int(n) for name, n in redis.hgetall(keys.shards).items()}
            self._counts = (time.monotonic(), counts)
        return counts.get(queue, 1)

    def turn(self, queue: str, count: int) -> int:
        """The next shard of ``queue`` in this client's round-robin (a random first one)."""
        turns = self._turns.get(queue)
        if turns is None:
            with self._lock:
                turns = self._turns.setdefault(queue, itertools.count(random.randrange(1 << 16)))
        return next(turns) % count

    def assign(self, redis, keys, payloads: list[dict[str, Any]]) -> None:
        """Write a ``shard`` into each payload that has none, for its queue's count; a unique
        job's lock goes with it (``unique_queue``: the shard, whose slot holds lock and job)."""
        for payload in payloads:
            if "shard" in payload or not placement.place_of(payload, payload["queue"]).plain:
                continue  # a job with a priority or a fair key waits in shard 0's places
            count = self.count(redis, keys, payload["queue"])
            if count > 1:
                payload["shard"] = self.pick(payload, count)
                if "unique_digest" in payload and payload["shard"]:
                    payload["unique_queue"] = keys.shard_queue(payload["queue"],
                                                               payload["shard"])

    def pick(self, payload: dict[str, Any], count: int) -> int:
        """The ``shard_key``'s shard; a unique job's digest's when it has none, so that its
        duplicates meet its lock; else the next in turn."""
        key = payload.get("shard_key")
        if not isinstance(key, str):
            key = payload.get("unique_digest")
        return shard_of_key(key, count) if isinstance(key, str) else self.turn(
            payload["queue"], count)


class ShardPlan:
    """What one worker process drains of each configured queue: filled by ``Worker.start``
    (``record``) before any thread starts, read by the fetchers, recovery and poller."""

    def __init__(self, keys, queues) -> None:
        self.keys = keys
        self.queues = tuple(queues)
        self.counts: dict[str, int] = {queue.name: queue.shards for queue in self.queues}

    def record(self, redis) -> None:
        if self.keys.layout == "cluster":
            self.counts = record(redis, self.keys, self.queues)

    def names(self, queue: str) -> list[str]:
        """The shards of ``queue`` to drain (the queue alone when it has one)."""
        return shard_names(self.keys, queue, self.counts.get(queue, 1))

    def all_names(self) -> list[str]:
        """Every list name this process drains: each queue's shards."""
        return [name for queue in self.queues for name in self.names(queue.name)]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
