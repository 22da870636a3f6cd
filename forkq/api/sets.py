"""The ``schedule``, ``retry`` and ``dead`` sorted sets: paged, searched and moved in batches.

An action names the entries it moves by their raw text, so it removes exactly what was shown,
or nothing when someone (another admin, the poller) moved it first. A key of another type
under a set's name (a producer's ``LPUSH retry x``) reads as an empty set with the reason in
``problem``, so the pages and the scrape that show it stay up.

In the cluster layout each queue has its own ``schedule`` and ``retry`` (a ``ScheduledSet`` or
``RetrySet`` made with its ``queue``), read as one by ``api/queuesets.py``; the moves to a queue
that cross hash slots there are ``api/clustermove.py``'s.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterator

from ..flow import placement
from . import clustermove
from .entry import Entry, wire
from .records import keyed_read
from .source import Store, default_store

#: entries read or moved per round trip by the ``*_all`` actions and by ``filter``
BATCH = 1000
#: ``<score>-<ident>``: the score as ``repr(float)`` (``-inf``, ``1e-05``), then the ident
_KEY = re.compile(r"(?P<score>[+-]?(?:inf|\d+(?:\.\d*)?(?:e[+-]?\d+)?))-(?P<ident>.+)\Z",
                  re.DOTALL)


def entry_named(key: str, at_score: Callable[[str], list[Entry]]) -> Entry | None:
    """The entry an ``Entry.key`` names among ``at_score(score)``, the entries read at its
    score (given as Redis reads it); None when it is gone or the key names none."""
    parsed = _KEY.match(key)
    if parsed is None:
        return None
    return next((e for e in at_score(parsed["score"]) if e.matches(parsed["ident"])), None)


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class SortedSet:
    """``schedule``, ``retry`` or ``dead``: paged by index, searched by ZSCAN, moved by Lua."""

    #: newest (highest score) first when paging
    descending = False

    def __init__(self, key: str, api: Store | None = None, queue: str | None = None) -> None:
        self.api = api or default_store()
        self.key = key
        #: the queue whose own set this is (the cluster layout's): its entries go back there
        self.queue = queue
        #: why the key cannot be read as a sorted set (it holds another type), once a read found it
        self.problem: str | None = None

    def _read(self, read, default):
        """``read()`` of the set; ``default`` (and ``problem`` set) when the key is no zset."""
        value, problem = keyed_read(read, default, "sorted set")
        self.problem = self.problem or problem
        return value

    @property
    def size(self) -> int:
        return self._read(lambda: self.api.redis.zcard(self.key), 0)

    def page(self, offset: int = 0, count: int = 25) -> list[Entry]:
        pairs = self._read(lambda: self.api.redis.zrange(
            self.key, offset, offset + count - 1, desc=self.descending, withscores=True), [])
        return [Entry(raw, score, self.key) for raw, score in pairs]

    def filter(self, text: str, batch: int = BATCH) -> Iterator[Entry]:
        """Entries whose JSON contains ``text``, matched by Redis one batch at a time."""
        if self.size == 0:  # nothing to match, or a key of another type (``problem``)
            return
        pattern = f"*{glob_escape(text)}*"
        for raw, score in self.api.redis.zscan_iter(self.key, match=pattern, count=batch):
            yield Entry(raw, score, self.key)

    def find(self, jid: str) -> Entry | None:
        return next((e for e in self.filter(jid) if e.jid == jid), None)

    def get(self, key: str) -> Entry | None:
        """The entry an ``Entry.key`` names, or None when it has gone."""
        def at_score(score: str) -> list[Entry]:
            pairs = self._read(lambda: self.api.redis.zrange(
                self.key, score, score, byscore=True, withscores=True), [])
            return [Entry(raw, at, self.key) for raw, at in pairs]

        return entry_named(key, at_score)

    def delete(self, entry: Entry) -> bool:
        return self.api.redis.zrem(self.key, wire(entry.raw)) == 1

    def clear(self) -> int:
        """Drops every entry at once; Redis frees the memory in the background."""
        pipe = self.api.redis.pipeline()
        pipe.zcard(self.key)
        pipe.unlink(self.key)
        return pipe.execute()[0]

    delete_all = clear

    def _requeue(self, entries: list[Entry], decrement: bool) -> tuple[int, int]:
        """Moves entries to their queues in one script call; returns (moved, left in place).

        Malformed entries stay: there is no queue to send them to.
        """
        movable = [e for e in entries if not e.malformed]
        if not movable:
            return 0, len(entries)
        if self.api.keys.layout == "cluster":
            now = time.time()
            moves = [(self.queue or e.queue or "default", wire(e.raw),
                      wire(e.requeued_text(now, decrement))) for e in movable]
            return clustermove.requeue(self.api, self.key, moves, self.queue is not None), \
                len(entries) - len(movable)
        keys, now = [self.key, self.api.keys.queues], time.time()
        position: dict[str, int] = {}  # queue name -> 1-based index of its list in KEYS
        args: list[Any] = [self.api.keys.root]
        for entry in movable:
            queue = entry.queue or "default"
            if queue not in position:
                keys.append(wire(self.api.keys.queue(queue)))
                position[queue] = len(keys)
            place = placement.place_of_text(entry.raw, queue)
            args += [wire(entry.raw), wire(entry.requeued_text(now, decrement)),
                     position[queue], wire(queue), place.level, wire(place.tenant)]
        return self.api.move_to_queue(keys=keys, args=args), len(entries) - len(movable)

    def _kill(self, entries: list[Entry]) -> tuple[int, int]:
        moved = self.api.dead_writer.move_from_zset(self.api.redis, self.key,
                                                    [(wire(e.raw),) * 2 for e in entries])
        return moved, 0

    def _each_batch(self, action: Callable[[list[Entry]], tuple[int, int]],
                    batch: int = BATCH) -> int:
        """Applies ``action`` to the entries present at the start, ``batch`` at a time.

        Moved entries leave the set, so the next batch starts at the entries left in place.
        Stopping after the starting size keeps a steady inflow from making this endless.
        """
        done = kept = 0
        remaining = self.size
        while remaining > 0:
            pairs = self.api.redis.zrange(self.key, kept, kept + min(batch, remaining) - 1,
                                          withscores=True)
            if not pairs:
                break
            moved, left = action([Entry(raw, score, self.key) for raw, score in pairs])
            done, kept, remaining = done + moved, kept + left, remaining - len(pairs)
        return done

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} size={self.size}>"


class ScheduledSet(SortedSet):
    """Score = run-at; soonest first. With ``queue``, that queue's own set (cluster layout)."""

    def __init__(self, api: Store | None = None, queue: str | None = None) -> None:
        api = api or default_store()
        super().__init__(api.keys.schedule_for(queue) if queue else api.keys.schedule, api,
                         queue)

    def add_to_queue(self, entry: Entry) -> bool:
        return self._requeue([entry], decrement=False)[0] == 1

    def add_all_to_queue(self, batch: int = BATCH) -> int:
        return self._each_batch(lambda entries: self._requeue(entries, False), batch)


class FailedSet(SortedSet):
    """A set of failed jobs (``retry``, ``dead``), which an admin may retry at once."""

    def retry_now(self, entry: Entry) -> bool:
        return self._requeue([entry], decrement=True)[0] == 1

    def retry_all(self, batch: int = BATCH) -> int:
        return self._each_batch(lambda entries: self._requeue(entries, True), batch)


class RetrySet(FailedSet):
    """Score = next retry; soonest first. With ``queue``, that queue's own set (cluster
    layout)."""

    def __init__(self, api: Store | None = None, queue: str | None = None) -> None:
        api = api or default_store()
        super().__init__(api.keys.retry_for(queue) if queue else api.keys.retry, api, queue)

    def kill(self, entry: Entry) -> bool:
        return self._kill([entry])[0] == 1

    def kill_all(self, batch: int = BATCH) -> int:
        return self._each_batch(self._kill, batch)


class DeadSet(FailedSet):
    """Score = time of death; newest first. Trimmed by ``dead_max_jobs`` and ``dead_timeout``."""

    descending = True

    def __init__(self, api: Store | None = None) -> None:
        api = api or default_store()
        super().__init__(api.keys.dead, api)

