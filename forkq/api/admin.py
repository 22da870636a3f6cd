"""``Api``: the admin view of one Redis, from which queues, sets, processes and stats are read.

Runs in whatever process reads (web UI, ``forkqctl``, tests), never on the server side.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoPermissionError

from ..connection.source import default_source
from ..flow import cancel as cancelling
from ..flow import pause as pausing
from ..flow import placement, shards
from ..keys import SIGNALS_TTL
from ..signals import REMOTE_SIGNALS
from .batches import Batches
from .entry import as_int, wire
from .processes import Process, Work, parse_work, read_processes
from .queue import Queue, QueueSummary, summaries
from .queuesets import QueueRetries, QueueScheduled
from .records import keyed_read, wrong_type
from .sets import DeadSet, RetrySet, ScheduledSet
from .source import Store

#: remote signals a running process understands (``signals.REMOTE_SIGNALS``, which the
#: heartbeat acts on: USR2 reopens its log files)
SIGNALS = tuple(REMOTE_SIGNALS)


@dataclass
class DayStat:
    """Jobs processed and failed in one UTC day (``YYYY-MM-DD``)."""

    day: str
    processed: int
    failed: int


class Api(Store):
    """The admin view of one Redis: queues, sets, processes, stats."""

    def queue(self, name: str) -> Queue:
        return Queue(name, self)

    def all_queues(self, listened: bool = False) -> list[Queue]:
        """The queues pushed to (the ``queues`` set, as Sidekiq lists them; none when that key
        is not a set); with ``listened``, also those a live process fetches from that nobody
        pushed to yet."""
        return [Queue(name, self) for name in self._queue_names(listened)]

    def queue_summaries(self, listened: bool = False) -> list[QueueSummary]:
        """``all_queues`` with each one's size, latency, pause and problem, read together."""
        return summaries(self, self._queue_names(listened))

    def _queue_names(self, listened: bool, processes: list[Process] | None = None) -> list[str]:
        """The directory's names; with ``listened``, those of live processes (``processes``
        when read already) too."""
        names, _ = keyed_read(lambda: self.redis.smembers(self.keys.queues), set(), "set")
        names = set(names)
        if listened:
            names.update(name for process in (self.processes() if processes is None
                                              else processes)
                         for name in process.queues if isinstance(name, str))
        return sorted(names)

    def _every_list(self) -> list[str]:
        """The cluster layout's queues as ``_queue_names(listened=True)``, each sharded one
        as its every shard (``flow/shards.py``)."""
        return shards.every_list(self.redis, self.keys, self._queue_names(listened=True))

    def paused_queues(self) -> set[str]:
        """Names of the paused queues (``Queue.pause``)."""
        return pausing.paused(self.redis, self.keys)

    def cancel(self, jid: str) -> str | None:
        """``forkq.cancel`` on this Redis: where the job was found, or None."""
        return cancelling.cancel(jid, self)

    @property
    def cancelled(self) -> int:
        """Jobs ended as cancelled, in total."""
        return as_int(self.redis.get(self.keys.cancelled))

    @property
    def scheduled(self) -> ScheduledSet | QueueScheduled:
        """The ``schedule`` set; in the cluster layout every queue's (every shard's), read as
        one (the queues the directory or a live process names, as the pollers poll them)."""
        if self.keys.layout == "cluster":
            return QueueScheduled(self, self._every_list())
        return ScheduledSet(self)

    @property
    def retries(self) -> RetrySet | QueueRetries:
        """The ``retry`` set; in the cluster layout every queue's, as ``scheduled``."""
        if self.keys.layout == "cluster":
            return QueueRetries(self, self._every_list())
        return RetrySet(self)

    @property
    def dead(self) -> DeadSet:
        return DeadSet(self)

    @property
    def batches(self) -> Batches:
        """Open batches and each batch's status (``api/batches.py``)."""
        return Batches(self)

    def processes(self) -> list[Process]:
        """Live processes by identity, bad records included (``Process.problem``); members
        whose heartbeat hash expired are pruned (left in place when read-only)."""
        identities, _ = keyed_read(lambda: self.redis.smembers(self.keys.processes), set(), "set")
        identities = sorted(identities)
        found = read_processes(self.redis, self.keys, identities)
        gone = [identity for identity, process in zip(identities, found) if process is None]
        if gone and not self.read_only:
            self.redis.srem(self.keys.processes, *gone)
        return [process for process in found if process is not None]

    def workers(self) -> list[Work]:
        """Running jobs of live processes, longest running first; a ``:work`` key that is not
        a hash shows no jobs."""
        processes = [p for p in self.processes() if p.problem is None]
        pipe = self.redis.pipeline(transaction=False)
        for process in processes:
            pipe.hgetall(self.keys.work(process.identity))
        works = [parse_work(p.identity, thread, text)
                 for p, threads in zip(processes, pipe.execute(raise_on_error=False))
                 if not wrong_type(threads) for thread, text in threads.items()]
        self._add_cursors(works)
        return sorted(works, key=lambda w: w.run_at or 0.0)

    def _add_cursors(self, works: list[Work]) -> None:
        """The saved cursor of each running resumable job (one GET per running job)."""
        pipe = self.redis.pipeline(transaction=False)
        for work in works:
            pipe.get(self.keys.iteration(str(work.job.jid)))
        for work, text in zip(works, pipe.execute() if works else []):
            try:
                work.cursor = json.loads(text).get("cursor") if text else None
            except (ValueError, AttributeError):
                work.cursor = None

    def signal(self, identity: str, signal: str) -> None:
        """Asks a process to quiet (TSTP), stop (TERM), dump its threads (TTIN) or reopen its
        log files (USR2)."""
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, not {signal!r}")
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.signals(identity), signal)
        pipe.expire(self.keys.signals(identity), SIGNALS_TTL)
        pipe.execute()

    def stats(self) -> dict[str, int]:
        """Totals for the dashboard; a key of another type (a producer's mistake) counts 0,
        as its page shows (``Queue.problem``, ``SortedSet.problem``)."""
        keys = self.keys
        if keys.layout == "cluster":
            return self._cluster_stats()
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.stat("processed"))
        pipe.get(keys.stat("failed"))
        pipe.zcard(keys.schedule)
        pipe.zcard(keys.retry)
        pipe.zcard(keys.dead)
        pipe.smembers(keys.queues)
        replies = [None if wrong_type(reply) else reply
                   for reply in pipe.execute(raise_on_error=False)]
        processed, failed, scheduled, retries, dead, queues = replies
        for lists in placement.waiting_lists(self.redis, keys, queues or ()).values():
            for key in lists:
                pipe.llen(wire(key))
        enqueued = sum(as_int(None if wrong_type(size) else size)
                       for size in pipe.execute(raise_on_error=False)) if queues else 0
        processes = self.processes()
        return {"processed": as_int(processed), "failed": as_int(failed),
                "busy": sum(p.busy for p in processes), "enqueued": enqueued,
                "scheduled": as_int(scheduled), "retries": as_int(retries),
                "dead": as_int(dead), "processes": len(processes)}

    def _cluster_stats(self) -> dict[str, int]:
        """``stats`` in the cluster layout: each queue (each shard of a sharded one) has its
        own counters and sets (the queues the directory or a live process names), summed
        here, plus the counters flushed at exits."""
        keys, redis = self.keys, self.redis
        processes = self.processes()
        queues = shards.every_list(redis, keys,
                                   self._queue_names(listened=True, processes=processes))
        pipe = redis.pipeline(transaction=False)
        for name in queues:
            processed, failed = keys.queue_stat_keys(name, "")[:2]
            pipe.get(processed)
            pipe.get(failed)
            pipe.llen(keys.queue(name))
            pipe.zcard(keys.schedule_for(name))
            pipe.zcard(keys.retry_for(name))
        pipe.get(keys.stat("processed"))
        pipe.get(keys.stat("failed"))
        pipe.zcard(keys.dead)
        replies = [0 if wrong_type(reply) else as_int(reply)
                   for reply in pipe.execute(raise_on_error=False)]
        per_queue, (processed, failed, dead) = replies[:-3], replies[-3:]
        sums = [sum(per_queue[i::5]) for i in range(5)]
        return {"processed": processed + sums[0], "failed": failed + sums[1],
                "busy": sum(p.busy for p in processes), "enqueued": sums[2],
                "scheduled": sums[3], "retries": sums[4], "dead": dead,
                "processes": len(processes)}

    def history(self, days: int = 7, today: datetime.date | None = None) -> list[DayStat]:
        """Processed and failed per UTC day, oldest first, ending today."""
        today = today or datetime.datetime.now(datetime.timezone.utc).date()
        names = [(today - datetime.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        processed, failed = self._daily("processed", names), self._daily("failed", names)
        return [DayStat(d, p, f) for d, p, f in zip(names, processed, failed)]

    def _daily(self, stat: str, days: list[str]) -> list[int]:
        """The ``stat`` count of each day; in the cluster layout, summed over the queues of
        the directory (their own daily keys) and the counters flushed at exits."""
        counts = [as_int(v) for v in self.redis.mget([self.keys.daily_stat(stat, d)
                                                      for d in days])]
        if self.keys.layout != "cluster":
            return counts
        index = 2 if stat == "processed" else 3
        pipe = self.redis.pipeline(transaction=False)
        queues = shards.every_list(self.redis, self.keys, sorted(self.redis.smembers(
            self.keys.queues)))
        for name in queues:
            for day in days:
                pipe.get(self.keys.queue_stat_keys(name, day)[index])
        values = [as_int(v) for v in pipe.execute()] if queues else []
        return [count + sum(values[i::len(days)]) for i, count in enumerate(counts)]

    def periodic(self) -> dict:
        """The periodic leader and each entry's next and last run, as the leading master
        wrote them (``api.periodic.report``, which names what it could not read)."""
        from .periodic import report  # imports cronsim: only when this is asked

        return report(self.redis, self.keys)

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
    """An Api over the process's Redis and namespace (``forkq.configure``)."""
    source = default_source()
    return Api(source.redis, source.keys)
