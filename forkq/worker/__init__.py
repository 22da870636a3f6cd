"""A worker process: the manager's processor threads, the poller and the heartbeat.

``python -m forkq.worker -c forkq.yml`` runs one standalone; the supervisor forks children
that call ``run`` with their slot. Everything that touches the process (signal dispositions,
Redis connections, random seed) is set up here, after any fork.

Steps: connect and check Redis (warn unless ``maxmemory-policy`` is ``noeviction``); write the
first heartbeat; recover the lists this slot's predecessor left; start the poller and the
processors; then loop on signals: TERM/INT stop (quiet, finish running jobs until ``timeout``,
requeue the rest, exit 0), TSTP quiets, TTIN logs every thread's stack, USR2 reopens logs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
import traceback
from typing import Callable

from .. import client as forkq_client
from .. import config as config_module
from .. import connection, log
from . import ordering
from ..errors import ConfigError, ForkqError
from ..connection.health import RedisHealth
from .heartbeat import Heartbeat, hostname
from ..hooks import Hooks, registry
from ..jobmetrics import WithJobMetrics
from ..keys import Keys
from ..log import logger
from .manager import Manager
from .recovery import Recovery
from ..dead import DeadWriter
from ..results import ResultRecorder
from .retry import RetryWriter
from .poller import Poller
from ..signals import SignalQueue
from ..flow.timelimit import Watchdog

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGUSR2)
#: exit status of a standalone worker that retired itself (a job ran past its time_limit):
#: EX_TEMPFAIL, so that its supervisor restarts it
RETIRED_STATUS = 75
#: seconds a retired process's other running jobs get to finish before they are requeued
RETIRE_TIMEOUT = 5.0


class Context:
    """What every thread of a worker shares: config, keys, events, writers. Built after fork."""

    def __init__(self, config, url: str, slot: str, hooks: Hooks | None = None) -> None:
        hooks = hooks or registry
        self.config = config
        self.url = url
        self.slot = slot
        self.keys = Keys(config.namespace)
        self.identity = f"{hostname()}:{os.getpid()}:{os.urandom(6).hex()}"
        #: set when the process stops taking new jobs (TSTP, or the start of a stop)
        self.quiet = threading.Event()
        #: set at the shutdown deadline: retries of Redis writes give up then
        self.stopped = threading.Event()
        self.health = RedisHealth()
        #: what the application registered (``hooks.py``): middleware and handlers
        self.middleware = hooks.middleware
        self.error_handlers = hooks.error_handlers
        self.death_handlers = hooks.death_handlers
        self.dead_set = DeadWriter(self.keys, config.dead_max_jobs, config.dead_timeout)
        self.retry_writer = RetryWriter(self.keys, self.dead_set, config.max_retries,
                                        self.death_handlers)
        self.results = ResultRecorder(self.keys)
        #: the event loop running coroutine jobs; the manager sets it
        self.coroutines = None
        self.idle_plan = ordering.idle_plan(config.queues, config.concurrency)
        #: told about each finished job; the metrics module replaces it in supervised children
        self.observer = NullObserver()
        #: calls back at running jobs' time limits (``timelimit.py``)
        self.watchdog = Watchdog()
        #: ``retire(reason)``: replace this process (a job ran past its time_limit); any thread
        self.retire = lambda reason: None

    def make_redis(self):
        return connection.make_client(self.url)

    def private_lists(self, thread_index: int) -> tuple[str, str]:
        return self.keys.inflight_pair(self.slot, thread_index)


class NullObserver:
    """Receives job events; metrics, when enabled, provide a real one."""

    def job_finished(self, queue: str, class_name: str, seconds: float, failed: bool) -> None:
        pass

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


def import_required(modules) -> None:
    """Import the application modules that register jobs; name the one that failed."""
    import importlib

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    run_before_require_hooks()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(f"require: could not import {name!r}: "
                              f"{type(exc).__name__}: {exc}") from exc


def run_before_require_hooks() -> None:
    """Call every ``forkq.before_require`` entry point (a framework's set-up, e.g. Django's
    ``django.setup()``) before the application modules are imported; name the one that failed."""
    from importlib.metadata import entry_points

    for hook in entry_points(group="forkq.before_require"):
        try:
            hook.load()()
        except ForkqError:
            raise
        except Exception as exc:
            raise ConfigError(f"before-require hook {hook.name!r} ({hook.value}) failed: "
                              f"{type(exc).__name__}: {exc}") from exc


class Worker:
    def __init__(self, config, url: str, slot: str,
                 on_tick: Callable[["Worker"], None] | None = None,
                 hooks: Hooks | None = None) -> None:
        self.config = config
        self.context = Context(config, url, slot, hooks)
        self.signals = SignalQueue()
        self.manager = Manager(self.context)
        self.heartbeat = Heartbeat(self.context, self.manager, self.signals.push)
        self.recovery = Recovery(self.context, self.context.death_handlers)
        self.poller = Poller(self.context, self.recovery)
        self.on_tick = on_tick
        self.stopping = False
        self.retired = False
        self.context.retire = self.retire

    def start(self) -> None:
        probe = self.context.make_redis()
        try:
            check_redis(probe)
        finally:
            probe.close()
        self.heartbeat.beat()
        self.recovery.claim_slot()
        self.heartbeat.start()
        self.poller.start()
        # Processors read the observer when their threads start: wrap it before that.
        self.context.observer = WithJobMetrics(self.heartbeat.job_metrics, self.context.observer)
        self.context.watchdog.start()
        self.manager.start()
        logger.info("forkq %s started: identity=%s concurrency=%d queues=%s fetch=%s",
                    _version(), self.context.identity, self.config.concurrency,
                    ",".join(self.config.queue_names), self.config.fetch)

    def run(self) -> int:
        """Loop on signals until told to stop; returns the exit status (0).

        ``on_tick(worker)`` runs at start and at least once a second (the supervisor's child
        uses it for liveness, readiness and the process title)."""
        while True:
            if self.on_tick is not None:
                self.on_tick(self)
            if self.stopping:
                return self.stop()
            for signum in self.signals.wait(timeout=1.0):
                self.handle(signum)

    def handle(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        elif signum == signal.SIGTSTP:
            self.manager.quiet()
        elif signum == signal.SIGTTIN:
            dump_threads()
        elif signum == signal.SIGUSR2:
            log.reopen()

    def retire(self, reason: str) -> None:
        """Have this process replaced: it takes no new job, and under ``forkq start`` asks the
        master for a successor (which stops it gracefully); alone, it stops and exits with
        ``RETIRED_STATUS`` for its supervisor to restart it."""
        logger.warning("retiring this process: %s", reason)
        self.retired = True
        self.manager.quiet()
        request = getattr(self.on_tick, "request_retirement", None)
        if request is not None:
            request()
        else:
            self.signals.push(signal.SIGTERM)

    def stop(self) -> int:
        # Retired, its successor already runs: the other jobs need not hold this process long.
        timeout = min(self.config.timeout, RETIRE_TIMEOUT) if self.retired else self.config.timeout
        deadline = time.monotonic() + timeout
        # Under forkq start the master owns the second Ctrl-C (it forces the stop) and says so.
        hint = "" if self.on_tick else ("; a second Ctrl-C or TERM is ignored (kill -9 forces "
                                        "the stop; the jobs come back by recovery)")
        logger.info("stopping: running jobs have %.0f s to finish, then go back to their "
                    "queues%s", timeout, hint)
        self.manager.stop(deadline)
        self.context.watchdog.halt()
        self.poller.stop()
        try:
            self.recovery.release_slot()
        except Exception as exc:
            logger.warning("could not release slot %s: %s", self.context.slot, exc)
        self.heartbeat.stop()
        logger.info("stopped")
        return RETIRED_STATUS if self.retired and self.on_tick is None else 0


def check_redis(redis) -> None:
    """Fail fast with a clear message when Redis is absent or too old; warn about eviction."""
    try:
        # INFO's default sections hold both the version and the eviction policy, so a worker's
        # ACL user needs no CONFIG rights.
        info = redis.info()
        policy = info.get("maxmemory_policy", "noeviction")
    except Exception as exc:
        raise ForkqError(f"cannot reach Redis: {type(exc).__name__}: {exc}") from exc
    version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2])
    if version < (6, 2):
        raise ForkqError(f"Redis {info.get('redis_version')} is too old: forkq needs 6.2 or newer")
    if policy != "noeviction":
        logger.warning("Redis maxmemory-policy is %r: Redis may evict queued jobs under memory "
                       "pressure; set it to 'noeviction'", policy)


def dump_threads() -> None:
    frames = sys._current_frames()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident)
        stack = "".join(traceback.format_stack(frame)) if frame else "(no frame)\n"
        logger.warning("thread %s (%s):", thread.name, thread.ident,
                       extra={"details": stack.rstrip()})


def _version() -> str:
    from .. import __version__

    return __version__


def prepare_process(config) -> str:
    """Per-process setup after any fork: logging, random seed, client, Redis URL."""
    log.setup(config.loglevel, config.logfile, buffered=True)
    random.seed()
    forkq_client.default().use_config(config, per_thread=True)
    return connection.resolve_url(config.redis_url, config.data_dir)


def run(config, slot: str, on_tick=None, observer=None) -> int:
    """Run a worker until it is told to stop; the supervisor's children call this."""
    url = prepare_process(config)
    worker = Worker(config, url, slot, on_tick)
    if observer is not None:
        worker.context.observer = observer
    worker.signals.install(HANDLED_SIGNALS)
    try:
        worker.start()
        return worker.run()
    finally:
        worker.context.observer.close()
        log.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forkq.worker",
                                     description="Run one forkq worker process.")
    parser.add_argument("-c", "--config", help="path to the YAML config (default: "
                        "$FORKQ_CONFIG, else ./forkq.yml when it exists)")
    parser.add_argument("-r", "--require", action="append",
                        help="module that registers jobs (repeatable)")
    parser.add_argument("-q", "--queue", action="append", dest="queues",
                        help="queue name, or name,weight (repeatable)")
    parser.add_argument("-C", "--concurrency", type=int, help="threads")
    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.config or config_module.default_path(), flags={
            "require": args.require, "queues": args.queues, "concurrency": args.concurrency})
        return _run_standalone(config)
    except ForkqError as exc:
        print(f"forkq: {exc}", file=sys.stderr)
        return 1


def _run_standalone(config) -> int:
    from ..connection.embedded import EmbeddedRedis

    server = None
    if not config.redis_url:
        server = EmbeddedRedis(config.data_dir).start()
    try:
        import_required(config.require)
        return run(config, slot=f"{hostname()}:{os.getpid()}:0")
    finally:
        if server is not None:
            server.stop()
