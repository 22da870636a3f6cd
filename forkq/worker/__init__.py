"""A worker process: the manager's processor threads, the poller and the heartbeat.

``python -m forkq.worker -c forkq.yml`` runs one standalone; the supervisor forks children
that call ``run`` with their slot and a *parent* (``supervisor/child.py``). Everything that
touches the process (signal dispositions, Redis connections, random seed) is set up here,
after any fork; what the threads share is built once, before they start (``services.py``).

The protocol with a parent: the worker's loop calls ``parent.tick(snapshot)`` at start and at
least once a second with a ``Snapshot`` (jobs running, how many of them are coroutine jobs,
the two capacities, jobs done, stopping), and stops when it returns a reason;
``parent.request_retirement()`` asks it for a successor (any thread). Others ask the worker,
never reach into it: ``snapshot()``, ``request_stop(reason)``.

Steps: connect and check Redis (warn unless ``maxmemory-policy`` is ``noeviction``); write the
first heartbeat; read the paused queues and cancels (``flow/control.py``, a thread that
reads them again twice a second); recover the lists this slot's predecessor left; start the
poller and the processors; then loop on signals: TERM/INT stop (quiet, finish running jobs
until ``timeout``, requeue the rest, exit 0), TSTP quiets, TTIN logs every thread's stack, USR2 reopens logs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import signal
import sys
import sysconfig
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Protocol

from .. import client as forkq_client
from .. import config as config_module
from .. import connection, log
from ..connection import cluster
from ..errors import ConfigError, ForkqError
from ..flow.control import ControlWatch
from ..flags import add_config_flag, add_worker_flags, config_path, worker_flags
from ..hooks import Hooks
from ..log import logger
from ..signals import Interrupted, SignalQueue, exit_interrupted, stop_while_starting
from ..ident import hostname
from .heartbeat import Heartbeat
from .manager import Manager
from .poller import Poller
from .recovery import Recovery
from .services import NullObserver, Services  # noqa: F401 (NullObserver: the observer's shape)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGUSR2)
#: exit status of a standalone worker that retired itself (a job ran past its time_limit):
#: EX_TEMPFAIL, so that its supervisor restarts it
RETIRED_STATUS = 75
#: seconds a retired process's other running jobs get to finish before they are requeued
RETIRE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Snapshot:
    """What a worker's parent is told at each tick."""

    #: jobs running, thread and coroutine jobs alike (the heartbeat's ``busy``)
    busy: int
    concurrency: int
    #: coroutine jobs among ``busy``, which run on the event loop, not on the threads
    coroutines: int
    async_concurrency: int
    #: jobs run to their end since the process started (``max_jobs`` counts them)
    jobs_done: int
    stopping: bool

    @property
    def threads_busy(self) -> int:
        return self.busy - self.coroutines


class Parent(Protocol):
    """The one a worker reports to (``supervisor.child.ChildTick`` in a supervised child)."""

    def tick(self, state: Snapshot) -> str | None:
        """Called at start and at least once a second; a reason to stop, or None."""

    def request_retirement(self) -> None:
        """Have this process replaced (any thread)."""


def import_required(modules) -> None:
    """Import the application modules that register jobs; name the one that failed, and the
    file and line where it failed (its traceback is logged at debug level)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    run_before_require_hooks()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            logger.debug("require: importing %r failed", name, exc_info=exc)
            message = exc.msg if isinstance(exc, SyntaxError) else exc
            raise ConfigError(f"require: could not import {name!r}: {import_location(exc)}"
                              f"{type(exc).__name__}: {message}{_path_hint(name, exc)}") from exc
    log.reclaim()


def _path_hint(name: str, exc: Exception) -> str:
    """Where modules are looked for, when the module itself (not one it imports) is missing."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing is None or not (name == missing or name.startswith(missing + ".")):
        return ""
    return (f" (modules are found from the working directory {os.getcwd()}, which forkq puts "
            f"on sys.path: run forkq from your project's root, or set PYTHONPATH)")


def import_location(exc: BaseException) -> str:
    """``file:line: `` of a failed import: the innermost line of the application's code (a
    ``SyntaxError``'s own line), not of importlib, forkq or an installed library; when the
    error was raised further in, ``(raised in file:line)`` is added. Empty when the traceback
    holds no such line (the required module itself was not found)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown_path(exc.filename)}:{exc.lineno}: "
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not _is_machinery(frame.filename)]
    if not frames:
        return ""
    own = [frame for frame in frames if not _is_library(frame.filename)] or frames
    where = f"{_shown_path(own[-1].filename)}:{own[-1].lineno}"
    if own[-1] is not frames[-1]:
        where += f" (raised in {_shown_path(frames[-1].filename)}:{frames[-1].lineno})"
    return where + ": "


#: code an import error passes through but does not start in: importlib and forkq itself
_MACHINERY = ("<frozen ", os.path.dirname(importlib.__file__) + os.sep,
              os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep)
#: the standard library's directories (installed packages are told by their folder's name)
_STDLIB = tuple({sysconfig.get_paths()[key] + os.sep for key in ("stdlib", "platstdlib")})
_INSTALLED = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def _is_machinery(filename: str) -> bool:
    return filename.startswith(_MACHINERY)


def _is_library(filename: str) -> bool:
    return filename.startswith(_STDLIB) or any(folder in filename for folder in _INSTALLED)


def _shown_path(filename: str) -> str:
    """``filename`` relative to the working directory when it is under it."""
    relative = os.path.relpath(filename)
    return filename if relative.startswith(os.pardir + os.sep) else relative


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
    def __init__(self, config, url: str, slot: str, parent: Parent | None = None, *,
                 hooks: Hooks | None = None, observer=None) -> None:
        self.config = config
        self.parent = parent
        self.signals = SignalQueue()
        self.services = services = Services.build(config, url, slot, hooks=hooks,
                                                  observer=observer, retire=self.retire)
        self.manager = Manager(services=services)
        self.heartbeat = Heartbeat(
            redis=services.make_redis(), config=config, keys=services.keys,
            identity=services.identity, quiet=services.quiet, health=services.health,
            work_state=services.work_state, coroutines_among=self.manager.coroutines_among,
            job_metrics=services.job_metrics, on_signal=self.signals.push)
        self.control = ControlWatch(redis=services.make_redis(), keys=services.keys,
                                    paused=services.paused, cancels=services.cancels,
                                    placement=services.placement)
        self.recovery = Recovery(services, services.death_handlers)
        self.poller = Poller(services, self.recovery)
        #: why the process stops (set once, by ``request_stop``)
        self.stop_reason: str | None = None
        self.retired = False

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def start(self) -> None:
        probe = self.services.make_redis()
        try:
            check_redis(probe, self.config.layout)
            self.services.shards.record(probe)
        finally:
            probe.close()
        self.heartbeat.beat()
        self.control.look()
        self.recovery.claim_slot()
        self.heartbeat.start()
        self.poller.start()
        self.control.start()
        self.services.watchdog.start()
        self.manager.start()
        logger.info("forkq %s started: identity=%s concurrency=%d queues=%s fetch=%s",
                    _version(), self.services.identity, self.config.concurrency,
                    ",".join(self.config.queue_names), self.config.fetch)

    def run(self) -> int:
        """Loop on signals until told to stop; returns the exit status."""
        while True:
            if self.parent is not None:
                reason = self.parent.tick(self.snapshot())
                if reason:
                    self.request_stop(reason)
            if self.stopping:
                return self.stop()
            for signum in self.signals.wait(timeout=1.0):
                self.handle(signum)

    def snapshot(self) -> Snapshot:
        work_state = self.services.work_state
        running = work_state.running().keys()
        return Snapshot(busy=len(running), concurrency=self.config.concurrency,
                        coroutines=self.manager.coroutines_among(running),
                        async_concurrency=self.config.async_concurrency,
                        jobs_done=work_state.jobs_done, stopping=self.stopping)

    def request_stop(self, reason: str) -> None:
        """Stop at the loop's next turn (within a second): quiet, let running jobs finish
        until ``timeout``, requeue the rest. The first reason is kept."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def handle(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.request_stop(signal.Signals(signum).name)
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
        if self.parent is not None:
            self.parent.request_retirement()
        else:
            self.signals.push(signal.SIGTERM)

    def stop(self) -> int:
        # Retired, its successor already runs: the other jobs need not hold this process long.
        timeout = min(self.config.timeout, RETIRE_TIMEOUT) if self.retired else self.config.timeout
        deadline = time.monotonic() + timeout
        # Under forkq start the master owns the second Ctrl-C (it forces the stop) and says so.
        hint = "" if self.parent else ("; a second Ctrl-C or TERM is ignored (kill -9 forces "
                                       "the stop; the jobs come back by recovery)")
        logger.info("stopping (%s): running jobs have %.0f s to finish, then go back to their "
                    "queues%s", self.stop_reason, timeout, hint)
        self.manager.stop(deadline)
        self.services.watchdog.halt()
        self.control.stop()
        self.poller.stop()
        try:
            self.recovery.release_slot()
        except Exception as exc:
            logger.warning("could not release slot %s: %s", self.services.slot, exc)
        self.heartbeat.stop()
        logger.info("stopped")
        return RETIRED_STATUS if self.retired and self.parent is None else 0


def check_redis(redis, layout: str = "default") -> None:
    """Fail fast with a clear message when Redis is absent, too old or of the wrong kind for
    the ``layout``; warn about eviction. A cluster answers for one of its nodes."""
    try:
        # INFO's default sections hold both the version and the eviction policy, so a worker's
        # ACL user needs no CONFIG rights.
        info = redis.info(target_nodes=redis.get_random_node()) if layout == "cluster" \
            else redis.info()
        policy = info.get("maxmemory_policy", "noeviction")
        cluster.check_layout(redis, layout, "Redis")
    except cluster.LayoutError as exc:
        raise ForkqError(str(exc)) from None
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
    log.setup_from(config, buffered=True)
    random.seed()
    forkq_client.default().use_config(config, per_thread=True)
    return connection.resolve_url(config.redis_url, config.data_dir)


def run(config, slot: str, parent: Parent | None = None, observer=None) -> int:
    """Run a worker until it is told to stop; the supervisor's children call this with their
    ``parent`` and, with metrics on, an ``observer`` of finished jobs."""
    url = prepare_process(config)
    worker = Worker(config, url, slot, parent, observer=observer)
    worker.signals.install(HANDLED_SIGNALS)
    try:
        worker.start()
        return worker.run()
    finally:
        worker.services.observer.close()
        log.flush()


def main(argv: list[str] | None = None, prog: str = "python -m forkq.worker") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Run one forkq worker process.")
    add_config_flag(parser)
    add_worker_flags(parser, threads_help="threads")
    args = parser.parse_args(argv)
    try:
        config = config_module.load(config_path(args), flags=worker_flags(args))
        return _run_standalone(config)
    except ForkqError as exc:
        print(f"forkq: {exc}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        exit_interrupted(stop, "forkq")


def _run_standalone(config) -> int:
    from ..connection.embedded import EmbeddedRedis

    server = None
    stop_while_starting()  # until ``run``'s handlers: the server stops on TERM or INT
    if not config.redis_url:
        server = EmbeddedRedis(config.data_dir).start()
    try:
        log.setup_from(config)  # before the import, whose traceback is logged at debug level
        import_required(config.require)
        return run(config, slot=f"{hostname()}:{os.getpid()}:0")
    finally:
        if server is not None:
            server.stop()
