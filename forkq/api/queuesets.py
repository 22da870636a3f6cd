"""The cluster layout's ``schedule`` or ``retry``: one sorted set per queue, read as one.

In the cluster layout (``layout: cluster``) each queue keeps its own ``schedule`` and
``retry`` in its hash slot (``keys.ClusterKeys``), so ``Api.scheduled`` and ``Api.retries``
(the Scheduled and Retries pages) are the sets of every queue the directory of queues or a
live process names, merged. What it costs with N such queues:

- ``size``: one ``ZCARD`` per queue in one pipeline. redis-py's cluster pipeline splits it by
  node and writes to every node before it reads any reply: about one round trip.
- ``page(offset, count)``: the first ``offset + count`` entries of every queue's set, in one
  pipeline, merged by score in Python: page p of 25 reads up to N × 25 × p entries. A deep
  page over many large sets is costly; the filter (a ``ZSCAN`` of each set) finds one job.
- ``get(key)``: one ``ZRANGE BYSCORE`` per queue at the key's score, in one pipeline.
- An action on an entry goes to the set it was read from (``Entry.source``); the ``*_all``
  actions run set after set.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Callable, Iterator

from .entry import Entry
from .records import keyed_reply
from .sets import BATCH, RetrySet, ScheduledSet, SortedSet, entry_named


class QueueSets:
    """Sorted sets of one kind, one per queue (``parts``, by key), read and acted on as one."""

    descending = False

    def __init__(self, parts: list[SortedSet]) -> None:
        self.parts = {part.key: part for part in parts}

    @property
    def problem(self) -> str | None:
        """Why a part could not be read as a sorted set (its key holds another type)."""
        return next((part.problem for part in self.parts.values() if part.problem), None)

    def _each(self, read: Callable, default) -> list:
        """``read(pipe, key)`` of every part in one pipeline: each reply, or ``default``
        (and the part's ``problem`` set) where its key is no sorted set."""
        parts = list(self.parts.values())
        if not parts:
            return []
        pipe = parts[0].api.redis.pipeline(transaction=False)
        for part in parts:
            read(pipe, part.key)
        values = []
        for part, reply in zip(parts, pipe.execute(raise_on_error=False)):
            value, problem = keyed_reply(reply, default, "sorted set")
            part.problem = part.problem or problem
            values.append(value)
        return values

    @property
    def size(self) -> int:
        return sum(self._each(lambda pipe, key: pipe.zcard(key), 0))

    def page(self, offset: int = 0, count: int = 25) -> list[Entry]:
        replies = self._each(lambda pipe, key: pipe.zrange(
            key, 0, offset + count - 1, desc=self.descending, withscores=True), [])
        # merged as (score, text, set) and parsed only for the page shown
        runs = [[(score, raw, key) for raw, score in pairs]
                for key, pairs in zip(self.parts, replies)]
        merged = heapq.merge(*runs, key=lambda run: run[0], reverse=self.descending)
        return [Entry(raw, score, key)
                for score, raw, key in itertools.islice(merged, offset, offset + count)]

    def filter(self, text: str, batch: int = BATCH) -> Iterator[Entry]:
        for part in self.parts.values():
            yield from part.filter(text, batch)

    def find(self, jid: str) -> Entry | None:
        return next((e for e in self.filter(jid) if e.jid == jid), None)

    def get(self, key: str) -> Entry | None:
        def at_score(score: str) -> list[Entry]:
            replies = self._each(lambda pipe, name: pipe.zrange(
                name, score, score, byscore=True, withscores=True), [])
            return [Entry(raw, at, name) for name, pairs in zip(self.parts, replies)
                    for raw, at in pairs]

        return entry_named(key, at_score)

    def _on_entry(self, action: str, entry: Entry) -> bool:
        part = self.parts.get(entry.source)
        return bool(part and getattr(part, action)(entry))

    def _on_all(self, action: str) -> int:
        return sum(getattr(part, action)() for part in self.parts.values())

    def delete(self, entry: Entry) -> bool:
        return self._on_entry("delete", entry)

    def clear(self) -> int:
        return self._on_all("clear")

    delete_all = clear

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self.parts)} queues>"


class QueueScheduled(QueueSets):
    """``ScheduledSet`` of the cluster layout: every queue's ``schedule``."""

    def __init__(self, api, queues: list[str]) -> None:
        super().__init__([ScheduledSet(api, name) for name in queues])

    def add_to_queue(self, entry: Entry) -> bool:
        return self._on_entry("add_to_queue", entry)

    def add_all_to_queue(self) -> int:
        return self._on_all("add_all_to_queue")


class QueueRetries(QueueSets):
    """``RetrySet`` of the cluster layout: every queue's ``retry``."""

    def __init__(self, api, queues: list[str]) -> None:
        super().__init__([RetrySet(api, name) for name in queues])

    def retry_now(self, entry: Entry) -> bool:
        return self._on_entry("retry_now", entry)

    def retry_all(self) -> int:
        return self._on_all("retry_all")

    def kill(self, entry: Entry) -> bool:
        return self._on_entry("kill", entry)

    def kill_all(self) -> int:
        return self._on_all("kill_all")
