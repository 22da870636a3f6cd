"""``Api``: the admin view of one Redis, from which queues, sets, processes and stats are read.

Runs in whatever process reads (web UI, ``forkqctl``, tests), never on the server side.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoPermissionError

from ..config import Config
from ..connection.scripts import Script
from ..dead import DeadWriter
from ..keys import SIGNALS_TTL, Keys
from .entry import as_int, wire
from .processes import PROCESS_FIELDS, Process, Work, parse_process, parse_work
from .queue import Queue
from .sets import MOVE_TO_QUEUE, DeadSet, RetrySet, ScheduledSet

_MOVE_TO_QUEUE = Script(MOVE_TO_QUEUE)
#: remote signals a running process understands (DESIGN.md §3, heartbeat)
SIGNALS = ("TSTP", "TERM", "TTIN")


@dataclass
class DayStat:
    """Jobs processed and failed in one UTC day (``YYYY-MM-DD``)."""

    day: str
    processed: int
    failed: int


class Api:
    """The admin view of one Redis: queues, sets, processes, stats."""

    def __init__(self, redis, keys: Keys | None = None, *,
                 dead_max_jobs: int = Config.dead_max_jobs,
                 dead_timeout: float = Config.dead_timeout, read_only: bool = False) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.read_only = read_only
        self.dead_writer = DeadWriter(self.keys, dead_max_jobs, dead_timeout)
        self.move_to_queue = functools.partial(_MOVE_TO_QUEUE, redis)

    @classmethod
    def from_config(cls, config: Config, redis=None, read_only: bool = False) -> "Api":
        if redis is None:
            from .. import connection

            # Text that is not UTF-8 (a buggy producer's job, a queue name) round-trips as
            # surrogates, so it can be shown, found again and deleted.
            redis = connection.make_client(connection.resolve_url(config.redis_url,
                                                                  config.data_dir),
                                           encoding_errors="surrogateescape")
        return cls(redis, Keys(config.namespace), dead_max_jobs=config.dead_max_jobs,
                   dead_timeout=config.dead_timeout, read_only=read_only)

    def queue(self, name: str) -> Queue:
        return Queue(name, self)

    def all_queues(self) -> list[Queue]:
        return [Queue(name, self) for name in sorted(self.redis.smembers(self.keys.queues))]

    @property
    def scheduled(self) -> ScheduledSet:
        return ScheduledSet(self)

    @property
    def retries(self) -> RetrySet:
        return RetrySet(self)

    @property
    def dead(self) -> DeadSet:
        return DeadSet(self)

    def processes(self) -> list[Process]:
        """Live processes by identity; members whose heartbeat hash expired are pruned
        (left in place when read-only)."""
        identities = sorted(self.redis.smembers(self.keys.processes))
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.hmget(self.keys.process(identity), *PROCESS_FIELDS)
        live, gone = [], []
        for identity, fields in zip(identities, pipe.execute()):
            if fields[0] is None:
                gone.append(identity)
            else:
                live.append(parse_process(identity, fields))
        if gone and not self.read_only:
            self.redis.srem(self.keys.processes, *gone)
        return live

    def workers(self) -> list[Work]:
        """Running jobs of live processes, longest running first."""
        processes = self.processes()
        pipe = self.redis.pipeline(transaction=False)
        for process in processes:
            pipe.hgetall(self.keys.work(process.identity))
        works = [parse_work(p.identity, thread, text)
                 for p, threads in zip(processes, pipe.execute())
                 for thread, text in threads.items()]
        return sorted(works, key=lambda w: w.run_at or 0.0)

    def signal(self, identity: str, signal: str) -> None:
        """Asks a process to quiet (TSTP), stop (TERM) or dump its threads (TTIN)."""
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, not {signal!r}")
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.signals(identity), signal)
        pipe.expire(self.keys.signals(identity), SIGNALS_TTL)
        pipe.execute()

    def stats(self) -> dict[str, int]:
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.stat("processed"))
        pipe.get(keys.stat("failed"))
        pipe.zcard(keys.schedule)
        pipe.zcard(keys.retry)
        pipe.zcard(keys.dead)
        pipe.smembers(keys.queues)
        processed, failed, scheduled, retries, dead, queues = pipe.execute()
        for name in queues:
            pipe.llen(wire(keys.queue(name)))
        enqueued = sum(pipe.execute()) if queues else 0
        processes = self.processes()
        return {"processed": as_int(processed), "failed": as_int(failed),
                "busy": sum(p.busy for p in processes), "enqueued": enqueued,
                "scheduled": scheduled, "retries": retries, "dead": dead,
                "processes": len(processes)}

    def history(self, days: int = 7, today: datetime.date | None = None) -> list[DayStat]:
        """Processed and failed per UTC day, oldest first, ending today."""
        today = today or datetime.datetime.now(datetime.timezone.utc).date()
        names = [(today - datetime.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        processed = self.redis.mget([self.keys.daily_stat("processed", d) for d in names])
        failed = self.redis.mget([self.keys.daily_stat("failed", d) for d in names])
        return [DayStat(d, as_int(p), as_int(f)) for d, p, f in zip(names, processed, failed)]

    def redis_info(self) -> dict[str, Any]:
        """Server facts from INFO; "?" where a Redis user may not run INFO (not a read)."""
        try:
            info = self.redis.info()
        except NoPermissionError:
            info = {}
        return {"version": info.get("redis_version", "?"),
                "used_memory": info.get("used_memory_human", "?"),
                "peak_memory": info.get("used_memory_peak_human", "?"),
                "connected_clients": info.get("connected_clients", 0),
                "uptime_days": info.get("uptime_in_days", 0),
                "maxmemory_policy": info.get("maxmemory_policy", "?")}


def default() -> Api:
    """An Api over the forkq client's Redis and namespace (``forkq.configure``)."""
    from .. import client

    return Api(client.default().redis, client.default().keys)
