"""The heartbeat: this process's entry in ``processes``, its busy jobs, and remote signals.

A thread of the worker child. The first beat is written synchronously at start, then every
``heartbeat_interval``. One MULTI writes the ``<identity>`` hash (``info`` JSON and Sidekiq's
top-level fields, whose ``busy`` counts every running job; plus ``coroutines``, how many of
those are coroutine jobs, a field Sidekiq ignores), ``<identity>:work`` (Sidekiq 7+) and
``<identity>:workers`` (6.x), all with a TTL of ``heartbeat_ttl``, and pops
``<identity>-signals`` (``signals.REMOTE_SIGNALS`` pushed by the web UI, ``forkqctl`` or
Sidekiq's own UI), which are handed to the worker's signal loop. Then it flushes the
per-class job metrics counted since the last beat (``jobmetrics``), as Sidekiq 8 does on each
beat, and once more at stop. The busy jobs are read from the process's ``WorkState``
(``workstate.py``), where the processors and the coroutine runner publish them.
"""

from __future__ import annotations

import json
import os
import threading
import time

import redis as redis_py

from .. import __version__
from ..ident import hostname
from ..jobmetrics import JobMetrics
from ..log import logger
from ..signals import REMOTE_SIGNALS
from .workstate import WorkState

#: KB in one memory page, the unit of /proc/self/statm
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kb() -> int:
    """Current resident memory of this process, in KB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def process_info(config, identity: str, started_at: float) -> dict:
    """The ``info`` JSON of this process's ``<identity>`` hash, in Sidekiq's fields."""
    info = {"hostname": hostname(), "started_at": started_at, "pid": os.getpid(),
            "tag": config.tag, "concurrency": config.concurrency,
            "async_concurrency": config.async_concurrency,
            "queues": list(config.queue_names), "labels": list(config.labels),
            "identity": identity, "version": __version__, "embedded": False}
    default = capsule(config)
    if not config.strict:
        info["weights"] = [default["weights"]]
    info["capsules"] = {"default": default}
    return info


def capsule(config) -> dict:
    """This process as Sidekiq 8.0.9+'s one capsule (``Capsule#to_h``): Sidekiq 8.1 lists a
    process's queues from the capsules' ``weights`` keys, so every queue is there."""
    if config.strict:
        return {"concurrency": config.concurrency, "mode": "strict",
                "weights": {q.name: 0 for q in config.queues}}
    weights = {q.name: q.weight for q in config.queues}
    mode = "random" if all(w == 1 for w in weights.values()) else "weighted"
    return {"concurrency": config.concurrency, "mode": mode, "weights": weights}


class Heartbeat(threading.Thread):
    def __init__(self, *, redis, config, keys, identity: str, quiet: threading.Event,
                 health, work_state: WorkState, coroutines_among, job_metrics: JobMetrics,
                 on_signal) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.redis = redis
        self.config = config
        self.keys = keys
        self.identity = identity
        self.quiet = quiet
        self.health = health
        self.work_state = work_state
        #: how many of some ``WorkState`` tags are coroutine jobs (``Manager.coroutines_among``)
        self.coroutines_among = coroutines_among
        #: per-class job counts, which the process's observer fills
        self.job_metrics = job_metrics
        self.on_signal = on_signal
        self.info_json = json.dumps(process_info(config, identity, time.time()))
        #: microseconds the last beat's PING took (Sidekiq's ``rtt_us``)
        self.rtt_us = 0
        self._halt = threading.Event()

    def run(self) -> None:
        interval = self.config.heartbeat_interval
        while not self._halt.wait(interval):
            self.beat_safely()

    def beat_safely(self) -> None:
        try:
            self.beat()
            self.health.succeeded()
        except redis_py.RedisError as exc:
            self.health.failed(exc)

    def beat(self) -> None:
        keys, identity = self.keys, self.identity
        ttl = int(max(1, round(self.config.heartbeat_ttl)))
        running = {tag: w for tag, w in self.work_state.running().items()
                   if type(w.text) is str}
        work = {thread_key(tag): json.dumps({"queue": w.queue, "payload": w.text,
                                             "run_at": int(w.run_at)})
                for tag, w in running.items()}
        started = time.perf_counter()
        self.redis.ping()
        self.rtt_us = int((time.perf_counter() - started) * 1e6)
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(keys.processes, identity)
        pipe.hset(keys.process(identity), mapping={
            "info": self.info_json, "concurrency": self.config.concurrency,
            "busy": len(running), "coroutines": self.coroutines_among(running),
            "beat": time.time(),
            "quiet": "true" if self.quiet.is_set() else "false",
            "rss": rss_kb(), "rtt_us": self.rtt_us})
        pipe.expire(keys.process(identity), ttl)
        for work_key in (keys.work(identity), keys.workers(identity)):
            pipe.delete(work_key)
            if work:
                pipe.hset(work_key, mapping=work)
                pipe.expire(work_key, ttl)
        pipe.rpop(keys.signals(identity), 10)
        signals = pipe.execute()[-1] or []
        for name in signals:
            self._deliver(name)
        self.job_metrics.flush(self.redis, keys, time.time())

    def _deliver(self, name: str) -> None:
        signum = REMOTE_SIGNALS.get(name)
        if signum is None:
            logger.warning("ignoring unknown remote signal %r", name)
            return
        logger.info("remote signal %s received", name)
        self.on_signal(signum)

    def stop(self) -> None:
        """Stop beating and remove this process from ``processes``."""
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5)
        keys, identity = self.keys, self.identity
        try:
            self.job_metrics.flush(self.redis, keys, time.time())
        except redis_py.RedisError as exc:
            logger.warning("could not write the last per-class job metrics (%s)", exc)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.srem(keys.processes, identity)
            pipe.delete(keys.process(identity), keys.work(identity), keys.workers(identity))
            pipe.execute()
        except redis_py.RedisError as exc:
            logger.warning("could not remove this process from 'processes' (%s); its entry "
                           "expires by itself", exc)


def thread_key(tag: int) -> str:
    """Sidekiq's thread id field for ``:work``: a short, stable form of a runner's tag (a
    processor thread's ident, a coroutine job's tag)."""
    return format(tag % 0xFFFFFF, "x")
