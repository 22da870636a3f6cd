"""A queue as the read side sees it: the ``queue:<name>`` list and the lists of its priority
levels and tenants (``flow/placement.py``), its size, latency and jobs, and whether it is paused
(``flow/pause.py``). A sharded queue (cluster layout, ``flow/shards.py``) is one queue here:
its size and latency cover every shard, ``shard_sizes`` gives each; its job listing, ``find``
and ``clear`` read the first shard (the queue's own list) only.

A producer may have left another type of key under a queue's name (``SADD queues x`` over a
hash ``queue:x``): the queue then reads as empty, with the reason in ``problem``, instead of
taking the page or the scrape that lists it down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..flow import pause as pausing
from ..flow import placement, shards
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

    def _level_keys(self) -> dict[int, str]:
        """The lists of the queue's priority levels other than 0, by level, highest first."""
        return placement.level_lists(self.api.redis, self.api.keys, [self.name]).get(self.name, {})

    def _tenant_keys(self) -> dict[str, str]:
        """The lists of the queue's tenants with jobs waiting, in turn order."""
        return placement.tenant_lists(self.api.redis, self.api.keys, [self.name]).get(self.name, {})

    def _key(self, level: int = 0, tenant: str = "") -> str:
        place = placement.Place(self.name, level, tenant or "")
        return self.key if place.plain else wire(placement.place_list(self.api.keys, place))

    def _sizes(self, keys: list[str]) -> list[int]:
        pipe = self.api.redis.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        return [self._reply(reply, 0) for reply in pipe.execute(raise_on_error=False)]

    def _reply(self, reply, default):
        """A pipeline's ``reply`` for a list; ``default`` (and ``problem`` set) when Redis
        refused it because the key holds another type."""
        return self._read(lambda: _raised(reply), default)

    def _shard_keys(self) -> list[str]:
        """The lists of the queue's shards other than the first (``flow/shards.py``): every
        index ever recorded, in the cluster layout; none elsewhere."""
        if self.api.keys.layout != "cluster":
            return []
        names = shards.every_list(self.api.redis, self.api.keys, [self.name])[1:]
        return [wire(self.api.keys.queue(name)) for name in names]

    def shard_sizes(self) -> list[int]:
        """Jobs waiting in each shard, shard 0 (the queue's own list) first: one size for a
        queue that is not sharded."""
        return self._sizes([self.key, *self._shard_keys()])

    @property
    def size(self) -> int:
        """Jobs waiting, at every priority level, for every tenant and in every shard."""
        return sum(self.levels.values()) + sum(self._sizes(
            [wire(key) for key in self._tenant_keys().values()] + self._shard_keys()))

    @property
    def levels(self) -> dict[int, int]:
        """Jobs waiting at each priority level, highest first; 0 (``queue:<name>``, tenants
        not counted) always, others while used."""
        levels = sorted({0, *self._level_keys()}, reverse=True)
        sizes = self._sizes([self._key(level) for level in levels])
        return {level: size for level, size in zip(levels, sizes) if size or level == 0}

    def tenants(self, top: int | None = None) -> tuple[int, list[tuple[str, int]]]:
        """Fair shares: how many tenants have jobs waiting, and the ``top`` largest backlogs
        (all when None), largest first. Reads every tenant's list length: an admin read."""
        tenants = self._tenant_keys()
        sizes = self._sizes([wire(key) for key in tenants.values()])
        return len(tenants), placement.largest(tenants, sizes, top)

    @property
    def latency(self) -> float:
        """Seconds the oldest job (right end of a list) has waited since it was enqueued."""
        keys = [self.key, *map(wire, self._level_keys().values()),
                *map(wire, self._tenant_keys().values()), *self._shard_keys()]
        pipe = self.api.redis.pipeline(transaction=False)
        for key in keys:
            pipe.lindex(key, -1)
        now = time.time()
        return max(latency(self._reply(oldest, None), now)
                   for oldest in pipe.execute(raise_on_error=False))

    def jobs(self, start: int = 0, count: int = 25, level: int = 0,
             tenant: str | None = None) -> list[Entry]:
        """The jobs of one priority level (or of one tenant), newest first, as pushed."""
        key = self._key(level, tenant or "")
        texts = self._read(lambda: self.api.redis.lrange(key, start, start + count - 1), [])
        return [Entry(raw) for raw in texts]

    def find(self, ident: str, hint: int = 0, level: int = 0,
             tenant: str | None = None) -> Entry | None:
        """The job named ``ident`` in the list of ``level`` (or ``tenant``): looked for around
        index ``hint`` first (jobs shift as workers take them), then through the whole list,
        one batch at a time."""
        found = self._find_in(ident, max(0, hint - _WINDOW // 2), _WINDOW, level, tenant)
        offset = 0
        size = self._read(lambda: self.api.redis.llen(self._key(level, tenant or "")), 0)
        while found is None and offset < size:
            found = self._find_in(ident, offset, _WINDOW, level, tenant)
            offset += _WINDOW
        return found

    def _find_in(self, ident: str, start: int, count: int, level: int,
                 tenant: str | None) -> Entry | None:
        return next((e for e in self.jobs(start, count, level, tenant) if e.matches(ident)),
                    None)

    def delete(self, entry: Entry) -> bool:
        place = placement.place_of_text(entry.raw, self.name)
        return self.api.redis.lrem(self._key(place.level, place.tenant), 1, wire(entry.raw)) > 0

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
        """Delete every waiting job, at every level, of every tenant and in every shard, and
        forget the queue. A job pushed to a level or tenant that appears during the clear
        (between its read of the members and the deletes) stays in its list, unseen until that
        member is marked again by the next push there. In the cluster layout the deletes are
        not one ``MULTI``: the queue's keys, each shard's and the directories are in several
        slots; a client that pushed to the queue before does not send its name to the
        directory again (``connection/cluster.py``), so the queue is listed again once a live
        process fetches from it or a new client pushes."""
        keys, name = self.api.keys, wire(self.name)
        waiting = [self.key, *self._level_keys().values(), *self._tenant_keys().values(),
                   *self._shard_keys(), keys.levels(self.name), keys.turns(self.name),
                   keys.turn(self.name), keys.bell(self.name)]
        cluster = keys.layout == "cluster"
        pipe = self.api.redis.pipeline(transaction=not cluster)
        if cluster:  # a command a slot
            for key in waiting:
                pipe.unlink(key)
        else:
            pipe.unlink(*waiting)
        for directory in (keys.queues, keys.prioritized, keys.fair):
            pipe.srem(directory, name)
        pipe.execute()

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"


def _raised(reply):
    if isinstance(reply, Exception):
        raise reply
    return reply


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
    """Size, latency and pause of every queue in ``names`` (every priority level and tenant
    counted), in a few round trips whatever their number (a page listing 1,000 queues three
    reads each took seconds)."""
    lists = {name: [api.keys.queue(name)] for name in names}
    for placed in (placement.level_lists(api.redis, api.keys, names),
                   placement.tenant_lists(api.redis, api.keys, names)):
        for name, keys in placed.items():
            lists[name] += keys.values()
    pipe = api.redis.pipeline(transaction=False)
    pipe.smembers(api.keys.paused)
    for name in names:
        for key in lists[name]:
            pipe.llen(wire(key))
            pipe.lindex(wire(key), -1)
    paused, *replies = pipe.execute(raise_on_error=False)
    paused, _ = keyed_reply(paused, set(), "set")
    now, found, at = time.time(), [], 0
    for name in names:
        size, waited, problem = 0, 0.0, None
        for _ in lists[name]:
            length, unreadable = keyed_reply(replies[at], 0, "list")
            oldest, _ = keyed_reply(replies[at + 1], None, "list")
            size, waited = size + length, max(waited, latency(oldest, now))
            problem, at = problem or unreadable, at + 2
        found.append(QueueSummary(name, size, waited, name in paused, problem))
    return found
