"""What the threads of one worker process share, built once and frozen before they start.

``Services.build`` runs in the worker process after any fork (``Worker.__init__``), before
the first thread starts; nothing is assigned to it afterwards (a frozen dataclass). What a
later part supplies (the metrics observer, the callback that retires the process) is passed to
``build``, not filled in by whoever comes next. Its parts with state of their own guard it
themselves: the events, ``RedisHealth``, ``WorkState``, the watchdog, the observers.
Sidekiq 7's ``Capsule`` is the shape: the processors and the coroutine runner take this, each
smaller part (``Fetcher``, ``Flow``, ``Heartbeat``) is given only what it uses.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .. import connection
from ..connection.health import RedisHealth
from ..dead import DeadWriter
from ..flow.cancel import CancelView
from ..flow.pause import PausedView
from ..flow.placement import PlacementView
from ..flow.shards import ShardPlan
from ..flow.timelimit import Watchdog
from ..hooks import Hooks, registry
from ..jobmetrics import JobMetrics, WithJobMetrics
from ..keys import Keys, keys_for
from ..results import ResultRecorder
from . import ordering
from .clusterfetch import ClusterFetcher
from .fetch import Fetcher, FetchMode
from .heartbeat import hostname
from .outcome import OutcomeWriter
from .retry import RetryWriter
from .workstate import WorkState


class NullObserver:
    """Receives job events; metrics, when enabled, provide a real one."""

    def job_finished(self, queue: str, class_name: str, seconds: float, failed: bool) -> None:
        pass

    def jobs_finished(self, ended: list[tuple[str, str, float, bool]]) -> None:
        """``job_finished`` for each ``(queue, class_name, seconds, failed)``."""

    def jobs_recovered(self, count: int) -> None:
        pass

    def job_rescheduled(self, queue: str, limiter: str) -> None:
        pass

    def job_expired(self, queue: str) -> None:
        pass

    def job_poisoned(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True, eq=False)
class Services:
    """One worker process's shared parts; build with ``Services.build``."""

    config: Any
    url: str
    slot: str
    keys: Keys
    identity: str
    #: set when the process stops taking new jobs (TSTP, or the start of a stop)
    quiet: threading.Event
    #: set at the shutdown deadline: retries of Redis writes give up then
    stopped: threading.Event
    health: RedisHealth
    #: the application's death handlers (``hooks.py``), which recovery runs for poison jobs
    death_handlers: list
    dead_set: DeadWriter
    #: the job-outcome writer shared by threads and coroutines (``outcome.py``)
    outcome: OutcomeWriter
    queues: ordering.QueueOrder
    #: the shards of each queue this process drains (``flow/shards.py``), filled at its start
    shards: ShardPlan
    fetch_mode: FetchMode
    #: the queue each idle thread blocks on (``ordering.idle_plan``)
    idle_plan: tuple[str, ...]
    #: per-class job counts, flushed by the heartbeat (``jobmetrics``)
    job_metrics: JobMetrics
    #: told about each finished, rescheduled, expired, recovered or poisoned job
    observer: Any
    #: calls back at running jobs' time limits (``timelimit.py``)
    watchdog: Watchdog
    #: what runs now, published by the runners (``workstate.py``)
    work_state: WorkState
    #: copies of the paused queues and recent cancels, kept by the control watch
    #: (``flow/control.py``)
    paused: PausedView
    cancels: CancelView
    #: copy of the queues that ever had priority levels or tenants, kept by the control watch
    placement: PlacementView
    #: ``retire(reason)``: replace this process (a job ran past its time_limit); any thread
    retire: Callable[[str], None]

    @classmethod
    def build(cls, config, url: str, slot: str, *, hooks: Hooks | None = None,
              observer=None, retire: Callable[[str], None] = lambda reason: None) -> Services:
        """Everything a worker process's threads share; ``observer`` is the metrics one
        (supervised children with metrics), else a ``NullObserver``."""
        hooks = hooks or registry
        keys = keys_for(config.layout, config.namespace)
        identity = f"{hostname()}:{os.getpid()}:{os.urandom(6).hex()}"
        dead_set = DeadWriter(keys, config.dead_max_jobs, config.dead_timeout)
        job_metrics = JobMetrics()
        observer = WithJobMetrics(job_metrics, observer or NullObserver())
        quiet = threading.Event()
        cancels = CancelView()
        outcome = OutcomeWriter(
            keys=keys, identity=identity, cancels=cancels, middleware=hooks.middleware,
            error_handlers=hooks.error_handlers, results=ResultRecorder(keys),
            retry_writer=RetryWriter(keys, dead_set, config.max_retries, hooks.death_handlers,
                                     config.default_backtrace),
            dead_set=dead_set, observer=observer, quiet=quiet)
        return cls(config=config, url=url, slot=slot, keys=keys, identity=identity,
                   quiet=quiet, stopped=threading.Event(), health=RedisHealth(),
                   death_handlers=hooks.death_handlers,
                   dead_set=dead_set, outcome=outcome,
                   queues=ordering.QueueOrder(tuple(config.queues), config.strict),
                   shards=ShardPlan(keys, config.queues),
                   fetch_mode=FetchMode(config.fetch),
                   idle_plan=ordering.idle_plan(config.queues, config.concurrency),
                   job_metrics=job_metrics, observer=observer, watchdog=Watchdog(),
                   work_state=WorkState(), paused=PausedView(), cancels=cancels,
                   placement=PlacementView(),
                   retire=retire)

    @property
    def queue_names(self) -> list[str]:
        """The lists this process drains: its queues, each sharded one as its shards."""
        return self.shards.all_names()

    def make_redis(self):
        return connection.make_client(self.url)

    def make_fetcher(self, redis, thread_index: int) -> Fetcher:
        """A processor thread's fetcher: its private lists are per queue in the cluster
        layout (``clusterfetch.py``), a pair per thread otherwise."""
        options = dict(queues=self.queues, mode=self.fetch_mode, thread_index=thread_index,
                       idle_plan=self.idle_plan, paused=self.paused, cancels=self.cancels,
                       placement=self.placement)
        if self.keys.layout == "cluster":
            return ClusterFetcher(redis, self.keys, slot=self.slot, shards=self.shards,
                                  **options)
        return Fetcher(redis, self.keys, lists=self.keys.inflight_pair(self.slot, thread_index),
                       **options)
