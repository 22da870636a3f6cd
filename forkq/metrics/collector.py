"""What the exporter reports at each scrape, read then: status file, psutil, Redis, job files.

Runs in the exporter process, on the HTTP server's request threads. Child facts come from the
status file the master writes atomically (``<data_dir>/status.json``), CPU and memory from
psutil by pid, heartbeats from Redis (the ``<identity>`` hash whose ``info`` names this host
and the child's pid). A Redis that is down or slow makes ``forkq_redis_up`` 0 and leaves out
the Redis-derived series; everything else is still served. A bad record (a heartbeat another
writer left, a producer's ``SADD processes queue:x``, a queue or set key of another type) is
Redis answering, not Redis down: heartbeats are read by ``api.processes.read_processes``, and
each bad record is counted in ``forkq_bad_records{kind}`` and otherwise left out. In the cluster
layout (``layout: cluster``) the scheduled and retry sizes are summed over the sets of every
queue the directory or the config names (``Keys.schedule_sets``), read in the pipeline of the
queues' sizes; the open batches are the index in the meta slot, as in the default layout.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis import RedisError

from .. import __version__, connection
from ..api import latency, wire
from ..api.entry import as_int
from ..api.processes import read_processes
from ..api.records import wrong_type
from ..errors import ForkqError
from ..flow import placement, shards
from ..ident import hostname
from ..keys import keys_for
from ..log import logger
from ..status import status_path
from . import store
from .periodic import periodic_series

#: tenants of a fair queue whose backlog ``/metrics`` shows: the largest ones
TOP_TENANTS = 10

#: seconds a scrape waits for Redis before reporting it down (Prometheus' timeout is 10 s)
REDIS_TIMEOUT = 2.0
_CHILD = ["child", "pid"]


def read_status(path: str) -> dict | None:
    """The master's status file, or None before its first write."""
    try:
        with open(path, encoding="utf-8") as handle:
            status = json.load(handle)
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


@dataclass
class RedisFacts:
    """What one scrape read from Redis; ``up`` False leaves the rest empty."""

    up: bool = False
    #: pid → the ``<identity>`` hash fields of this host's processes
    beats: dict[int, dict] = field(default_factory=dict)
    #: records that could not be read, by kind: heartbeat, queue, set
    bad: dict[str, int] = field(default_factory=dict)
    #: queue name → (size, latency in seconds)
    queues: dict[str, tuple[int, float]] = field(default_factory=dict)
    sets: dict[str, int] = field(default_factory=dict)
    #: fair queue name → (tenants with jobs waiting, the ``TOP_TENANTS`` largest backlogs as
    #: (tenant, size), largest first)
    tenants: dict[str, tuple[int, list[tuple[str, int]]]] = field(default_factory=dict)
    #: names of the paused queues (``flow/pause.py``)
    paused: set[str] = field(default_factory=set)
    #: jobs ended as cancelled, in total (``flow/cancel.py``)
    cancelled: int = 0


class RedisReader:
    """One client for the exporter's lifetime, built once the URL resolves."""

    def __init__(self, config) -> None:
        self.config = config
        self.keys = keys_for(config.layout, config.namespace)
        self.host = hostname()
        self._client = None
        self._was_up = True

    def read(self) -> RedisFacts:
        try:
            facts = self._read()
        except (RedisError, OSError, ForkqError) as exc:
            if self._was_up:
                logger.warning("metrics: Redis unavailable (%s); serving forkq_redis_up 0", exc)
            self._was_up = False
            return RedisFacts()
        if not self._was_up:
            logger.info("metrics: Redis is back")
        self._was_up = True
        return facts

    def _client_or_connect(self):
        if self._client is None:
            url = connection.resolve_url(self.config.redis_url, self.config.data_dir)
            # A queue name or job that is not UTF-8 (a buggy producer) must not stop a scrape.
            self._client = connection.make_client(url, socket_timeout=REDIS_TIMEOUT,
                                                  socket_connect_timeout=REDIS_TIMEOUT,
                                                  encoding_errors="surrogateescape")
        return self._client

    def _read(self) -> RedisFacts:
        redis, keys = self._client_or_connect(), self.keys
        pipe = redis.pipeline(transaction=False)
        pipe.smembers(keys.processes)
        pipe.smembers(keys.queues)
        pipe.zcard(keys.dead)
        pipe.smembers(keys.paused)
        pipe.get(keys.cancelled)
        pipe.zcard(keys.batches)
        identities, queue_set, dead, paused, cancelled, batches = pipe.execute(
            raise_on_error=False)
        queues = sorted(_members(queue_set) | set(self.config.queue_names) | _members(paused))
        tenants = placement.tenant_lists(redis, keys, queues)
        lists = placement.waiting_lists(redis, keys, queues, tenants)
        every = queues
        if keys.layout == "cluster":  # a sharded queue's other shards: their lists and sets
            counts = shards.highest_counts(redis, keys)
            named = {name: shards.shard_names(keys, name, counts.get(name, 1)) for name in queues}
            every = [shard for name in queues for shard in named[name]]
            for name in queues:
                lists[name] += [keys.queue(shard) for shard in named[name][1:]]
        waiting_sets = (keys.schedule_sets(every), keys.retry_sets(every))
        for name in (name for sets in waiting_sets for name in sets):
            pipe.zcard(wire(name))
        for name in queues:
            for key in lists[name]:
                pipe.llen(wire(key))
                pipe.lindex(wire(key), -1)
        tail, now = iter(pipe.execute(raise_on_error=False)), time.time()
        # the cluster layout's schedule and retry are a set per queue: summed, each counted
        set_sizes = [[next(tail) for _ in sets] for sets in waiting_sets] + [[dead],
                                                                             [batches]]
        sizes, shares = {}, {}
        for name in queues:
            ends = [(next(tail), next(tail)) for _ in lists[name]]
            counts = [0 if wrong_type(size) else as_int(size) for size, _ in ends]
            if not wrong_type(ends[0][0]):
                sizes[_label(name)] = (sum(counts), max(
                    latency(None if wrong_type(oldest) else oldest, now) for _, oldest in ends))
            if name in tenants:
                shares[_label(name)] = top_tenants(tenants[name], counts[-len(tenants[name]):])
        processes = [p for p in read_processes(redis, keys, sorted(_members(identities))) if p]
        bad = {"heartbeat": sum(1 for p in processes if p.problem),
               "queue": len(queues) - len(sizes),
               "set": sum(map(wrong_type, [size for each in set_sizes for size in each]
                              + [identities, queue_set, paused]))}
        return RedisFacts(True, self._beats(processes), bad, sizes,
                          {name: sum(0 if wrong_type(size) else size for size in each)
                           for name, each in zip(("scheduled", "retry", "dead", "batches"),
                                                 set_sizes)},
                          shares, {_label(name) for name in _members(paused)},
                          as_int(cancelled))

    def _beats(self, processes) -> dict[int, dict]:
        """This host's sound heartbeats by pid: thread jobs and coroutine jobs apart, each
        beside its capacity."""
        return {p.pid: {"busy": float(p.threads_busy), "beat": p.beat or 0.0,
                        "concurrency": float(p.concurrency),
                        "coroutines": float(p.coroutines or 0),
                        "async_concurrency": float(p.async_concurrency)}
                for p in processes
                if p.problem is None and p.info.get("hostname") == self.host}


def top_tenants(tenants, sizes: list[int]) -> tuple[int, list[tuple[str, int]]]:
    """How many tenants wait, and the ``TOP_TENANTS`` largest backlogs, largest first."""
    return len(sizes), [(_label(t), size)
                        for t, size in placement.largest(tenants, sizes, TOP_TENANTS)]


def _members(reply) -> set:
    return set() if wrong_type(reply) else reply


def _label(name: str) -> str:
    """A queue name as a label value: bytes that are not UTF-8 shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def health(status: dict | None, facts: RedisFacts) -> tuple[bool, str]:
    """Healthy once every worker child the master runs has written its first heartbeat."""
    if status is None:
        return False, "no status file yet"
    children = status.get("children") or []
    expected = status.get("processes") or len(children)
    if not children or len(children) < expected:
        return False, f"{len(children)} of {expected} worker children started"
    if not facts.up:
        return False, "Redis unavailable: cannot see heartbeats"
    waiting = [str(c.get("slot")) for c in children if c.get("pid") not in facts.beats]
    if waiting:
        return False, f"no heartbeat yet from child {', '.join(waiting)}"
    return True, "ok"


class Collector:
    """A prometheus_client collector over one scrape's reads."""

    def __init__(self, config, directory: str | None) -> None:
        self.config = config
        self.directory = directory
        self.status_path = status_path(config.data_dir)
        self.redis = RedisReader(config)

    def read(self) -> tuple[dict | None, RedisFacts]:
        return read_status(self.status_path), self.redis.read()

    def collect(self):
        status, facts = self.read()
        yield from self._info(status)
        yield from self._memory_limit()
        yield from _children(status or {}, facts)
        yield from periodic_series(status or {})
        yield from _redis_series(facts)
        if self.directory and os.path.isdir(self.directory):
            yield from store.collect(self.directory)

    def _info(self, status: dict | None):
        status = status or {}
        info = GaugeMetricFamily("forkq_info", "forkq version and supervisor shape.",
                                 labels=["version", "processes", "concurrency"])
        info.add_metric([str(status.get("version", __version__)),
                         str(status.get("processes", self.config.processes)),
                         str(status.get("concurrency", self.config.concurrency))], 1)
        yield info


    def _memory_limit(self):
        """The recycling limit, so an alert can compare children's memory with it."""
        if self.config.max_memory_mb:
            limit = GaugeMetricFamily("forkq_memory_limit_bytes",
                                      "A child above this resident memory is recycled.")
            limit.add_metric([], self.config.max_memory_mb * 1024 * 1024)
            yield limit


def _children(status: dict, facts: RedisFacts):
    families = {
        "up": GaugeMetricFamily("forkq_child_up", "1 while the worker child's process runs.",
                                labels=_CHILD),
        "beat": GaugeMetricFamily("forkq_child_heartbeat_timestamp_seconds",
                                  "Time of the child's last heartbeat.", labels=_CHILD),
        "busy": GaugeMetricFamily("forkq_child_busy_threads",
                                  "Jobs running on the child's processor threads.",
                                  labels=_CHILD),
        "concurrency": GaugeMetricFamily("forkq_child_concurrency",
                                         "Processor threads of the child.", labels=_CHILD),
        "coroutines": GaugeMetricFamily("forkq_child_busy_coroutines",
                                        "Coroutine jobs running on the child's event loop.",
                                        labels=_CHILD),
        "async_concurrency": GaugeMetricFamily(
            "forkq_child_async_concurrency", "Coroutine jobs the child runs at once at most.",
            labels=_CHILD),
        "cpu": CounterMetricFamily("forkq_child_cpu_seconds", "CPU (user + system) of the child.",
                                   labels=_CHILD),
        "rss": GaugeMetricFamily("forkq_child_resident_memory_bytes",
                                 "Resident memory of the child.", labels=_CHILD),
        "restarts": CounterMetricFamily("forkq_child_restarts", "Times the slot was restarted.",
                                        labels=_CHILD),
    }
    for child in status.get("children") or []:
        _add_child(families, child, status.get("master_pid"), facts)
    yield from families.values()


def _add_child(families: dict, child: dict, master_pid, facts: RedisFacts) -> None:
    pid = child.get("pid")
    labels = [str(child.get("slot")), str(pid or "")]
    families["restarts"].add_metric(labels, child.get("restarts") or 0)
    usage = _usage(pid, master_pid) if pid else None
    families["up"].add_metric(labels, 1 if usage else 0)
    if usage:
        families["cpu"].add_metric(labels, usage[0])
        families["rss"].add_metric(labels, usage[1])
    beat = facts.beats.get(pid)
    if beat:
        families["beat"].add_metric(labels, beat["beat"])
        for name in ("busy", "concurrency", "coroutines", "async_concurrency"):
            families[name].add_metric(labels, beat[name])


def _usage(pid: int, master_pid) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a running child; None when gone, a zombie or another's pid."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            if master_pid and process.ppid() != master_pid:
                return None
            cpu = process.cpu_times()
            return cpu.user + cpu.system, process.memory_info().rss
    except psutil.Error:
        return None


def _tenant_series(tenants: dict[str, tuple[int, list[tuple[str, int]]]]):
    """Fair queues: tenants waiting, and the backlog of the largest few only (a series per
    tenant would grow with the tenants)."""
    waiting = GaugeMetricFamily("forkq_queue_tenants", "Tenants with jobs waiting in the fair "
                                "queue (fair_key).", labels=["queue"])
    backlog = GaugeMetricFamily("forkq_queue_tenant_backlog",
                                f"Jobs waiting of the {TOP_TENANTS} tenants with the most "
                                f"waiting in the queue.", labels=["queue", "tenant"])
    for name, (count, largest) in tenants.items():
        waiting.add_metric([name], count)
        for tenant, size in largest:
            backlog.add_metric([name, tenant], size)
    yield waiting
    yield backlog


def _redis_series(facts: RedisFacts):
    up = GaugeMetricFamily("forkq_redis_up", "1 when this scrape could read Redis.")
    up.add_metric([], 1 if facts.up else 0)
    yield up
    if not facts.up:
        return
    bad = GaugeMetricFamily("forkq_bad_records", "Records in Redis this scrape could not read "
                            "(shown as bad in the web UI), by kind.", labels=["kind"])
    for kind, count in sorted(facts.bad.items()):
        bad.add_metric([kind], count)
    yield bad
    size = GaugeMetricFamily("forkq_queue_size", "Jobs waiting in the queue.", labels=["queue"])
    latency = GaugeMetricFamily("forkq_queue_latency_seconds",
                                "Seconds the oldest job of the queue has waited.",
                                labels=["queue"])
    paused = GaugeMetricFamily("forkq_queue_paused",
                               "1 while the queue is paused (workers take none of its jobs).",
                               labels=["queue"])
    for name, (length, wait) in facts.queues.items():
        size.add_metric([name], length)
        latency.add_metric([name], wait)
        paused.add_metric([name], 1 if name in facts.paused else 0)
    yield size
    yield latency
    yield paused
    yield from _tenant_series(facts.tenants)
    cancelled = CounterMetricFamily("forkq_jobs_cancelled",
                                    "Jobs ended as cancelled (forkq.cancel), on this Redis.")
    cancelled.add_metric([], facts.cancelled)
    yield cancelled
    for name, text in (("scheduled", "Jobs scheduled for later."),
                       ("retry", "Failed jobs waiting for a retry."),
                       ("dead", "Jobs in the dead set.")):
        family = GaugeMetricFamily(f"forkq_{name}_size", text)
        family.add_metric([], facts.sets[name])
        yield family
    # the index of open batches (flow/batch.py): one that never succeeds (a job died) counts
    # until its record expires and the web UI's listing drops it
    family = GaugeMetricFamily("forkq_batches_open", "Batches created and not yet succeeded.")
    family.add_metric([], facts.sets.get("batches", 0))
    yield family
