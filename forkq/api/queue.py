"""A queue as the read side sees it: the ``queue:<name>`` list, its size, latency and jobs,
and whether it is paused (``flow/pause.py``).

A producer may have left another type of key under a queue's name (``SADD queues x`` over a
hash ``queue:x``): the queue then reads as empty, with the reason in ``problem``, instead of
taking the page or the scrape that lists it down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..flow import pause as pausing
from .entry import Entry, wire
from .records import keyed_read, keyed_reply
from .source import Store, default_store

#: queue entries read per round trip when looking for one job, around its index hint first,
#: then through the whole list; few, since one job may be megabytes
_WINDOW = 100


def latency(oldest: str | None, now: float) -> float:
    """Seconds the job text ``oldest`` (a queue's right end) has waited since it was enqueued."""
    enqueued_at = Entry(oldest).enqueued_at if oldest else None
    return max(0.0, now - enqueued_at) if enqueued_at else 0.0


class Queue:
    """A ``queue:<name>`` list: producers push left, workers take from the right."""

    def __init__(self, name: str, api: Store | None = None) -> None:
        self.name = name
        self.api = api or default_store()
        self.key = wire(self.api.keys.queue(name))
        #: why the key cannot be read as a queue (it holds another type), once a read found it
        self.problem: str | None = None

    def _read(self, read, default=None):
        """``read()`` of the list; ``default`` (and ``problem`` set) when the key is no list."""
        value, problem = keyed_read(read, default, "list")
        self.problem = self.problem or problem
        return value

    @property
    def size(self) -> int:
        return self._read(lambda: self.api.redis.llen(self.key), 0)

    @property
    def latency(self) -> float:
        """Seconds the oldest job (right end) has waited since it was enqueued."""
        return latency(self._read(lambda: self.api.redis.lindex(self.key, -1)), time.time())

    def jobs(self, start: int = 0, count: int = 25) -> list[Entry]:
        """Newest first, as pushed."""
        texts = self._read(lambda: self.api.redis.lrange(self.key, start, start + count - 1), [])
        return [Entry(raw) for raw in texts]

    def find(self, ident: str, hint: int = 0) -> Entry | None:
        """The job named ``ident``: looked for around index ``hint`` first (jobs shift as
        workers take them), then through the whole list, one batch at a time."""
        found = self._find_in(ident, max(0, hint - _WINDOW // 2), _WINDOW)
        offset = 0
        while found is None and offset < self.size:
            found = self._find_in(ident, offset, _WINDOW)
            offset += _WINDOW
        return found

    def _find_in(self, ident: str, start: int, count: int) -> Entry | None:
        return next((e for e in self.jobs(start, count) if e.matches(ident)), None)

    def delete(self, entry: Entry) -> bool:
        return self.api.redis.lrem(self.key, 1, wire(entry.raw)) > 0

    @property
    def paused(self) -> bool:
        """Whether workers take no jobs from this queue (``pause``)."""
        return bool(self.api.redis.sismember(self.api.keys.paused, self.name))

    def pause(self) -> bool:
        """Stop every worker on this Redis taking jobs from the queue, within about a second;
        running jobs finish, pushes go on, nothing is lost. False when already paused."""
        return pausing.pause(self.api.redis, self.api.keys, self.name)

    def resume(self) -> bool:
        """Let workers take jobs from the queue again. False when it was not paused."""
        return pausing.resume(self.api.redis, self.api.keys, self.name)

    def clear(self) -> None:
        pipe = self.api.redis.pipeline()
        pipe.unlink(self.key)
        pipe.srem(self.api.keys.queues, wire(self.name))
        pipe.execute()

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"



@dataclass(frozen=True)
class QueueSummary:
    """A queue as the queues list shows it: what ``Queue`` reads one round trip at a time."""

    name: str
    size: int
    #: seconds the oldest job has waited
    latency: float
    paused: bool
    problem: str | None


def summaries(api: Store, names: list[str]) -> list[QueueSummary]:
    """Size, latency and pause of every queue in ``names``, in one round trip whatever their
    number (a page listing 1,000 queues three reads each took seconds)."""
    pipe = api.redis.pipeline(transaction=False)
    pipe.smembers(api.keys.paused)
    for name in names:
        key = wire(api.keys.queue(name))
        pipe.llen(key)
        pipe.lindex(key, -1)
    paused, *replies = pipe.execute(raise_on_error=False)
    paused, _ = keyed_reply(paused, set(), "set")
    now, found = time.time(), []
    for index, name in enumerate(names):
        size, problem = keyed_reply(replies[2 * index], 0, "list")
        oldest, _ = keyed_reply(replies[2 * index + 1], None, "list")
        found.append(QueueSummary(name, size, latency(oldest, now), name in paused, problem))
    return found
