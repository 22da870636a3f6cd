"""The master process of ``forkq start``: forks worker children and keeps them running.

Runs in the master, single-threaded. Signal handlers only record the signal; the loop acts on
it. The master imports the application once (``require:``) so children share it copy-on-write,
and it holds no Redis connection and no thread when it forks: each child sets itself up after
the fork (here: signal dispositions, the master's file descriptors; then ``child.py``'s process
title and ``worker.run``: Redis pool, logging, random seed).

This module owns the loop and the master's effects on processes (signals, fork, the shutdown
sweep). Children are ``children.Child`` objects with one set of verbs (fork, stop, kill, retire,
exited): the worker slots and the metrics exporter alike. Each worker child owns a *slot*,
``host:master-pid:index``, which keys its private lists in Redis, so a replacement in the same
slot recovers its predecessor's jobs at boot; ``children.Slots`` holds them and decides which
to fork and which to replace. A pipe runs from each worker child to the master: the child
writes a byte from its main loop at least once a second. The first byte says it is ready, every
byte that its loop is alive, ``S`` that it is stopping by itself, ``R`` that it asks to be
retired: the master stops it gracefully and forks its replacement at once.

Steps of the loop: act on signals, read the pipes, reap exited children, kill hung or overdue
ones (``watch``); replace the unwanted (asked to be, too big, running an old config), fork what
is missing, enqueue due periodic jobs while this master leads (``periodic/master.py``, on a
connection opened and closed within the step).

Shutdown: TERM every child, then ``watch`` until none is left; each finishes its jobs until
``timeout``, requeues the rest and exits 0. Survivors are SIGKILLed ``GRACE`` seconds after the
deadline; then, with no child left, the master opens a short-lived Redis connection and pushes
whatever their private lists still hold back to the front of the queues. It is worse to lose a
job than to run it twice. A second TERM or INT (Ctrl-C) during the shutdown forces it: every
child is SIGKILLed at once, skipping the rest of the timeout, and the same sweep pushes their
unfinished jobs back. HUP and TSTP are ignored once every child is told to stop.

What the outside sees of the master, its pidfiles (found and verified by ``forkqctl``), its
``status.json`` (read by the metrics exporter) and its title, is ``files.MasterFiles``.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import random
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Callable

from setproctitle import setproctitle

from .. import __version__, client, connection, log, worker
from .child import ChildTick, die_with_master, exit_child, keep_to_one_cpu, title
from .children import GRACE, Child, Helper, Slots, WorkerSlot, describe_exit, restart_delay
from .files import MasterFiles
from .preflight import check_redis
from ..errors import ForkqError
from ..worker.heartbeat import hostname
from ..keys import keys_for
from ..log import logger
from . import notify as systemd
from ..worker.recovery import requeue_slots
from ..signals import SignalQueue, stop_while_starting
from ..status import master_status

if TYPE_CHECKING:
    from ..periodic.master import MasterPeriodic

#: signals the master acts on in its loop; a child resets them after the fork
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGUSR2,
                  signal.SIGHUP, signal.SIGCHLD)
#: seconds between looks at the children's pipes; a signal (CHLD included) wakes the loop at once
TICK = 0.2
#: relative spread of ``max_jobs`` per child, so children do not recycle in lockstep
MAX_JOBS_JITTER = 0.1


# --- pure helpers

def jittered(limit: int | None, rng: random.Random) -> int | None:
    """One child's ``max_jobs``: ``limit`` spread by ``MAX_JOBS_JITTER``; None for no limit."""
    if not limit:
        return None
    return max(1, round(limit * rng.uniform(1 - MAX_JOBS_JITTER, 1 + MAX_JOBS_JITTER)))


# --- process-level effects of the master

def metrics_module(config):
    """``forkq.metrics`` when it exists and metrics are enabled, else None."""
    if config.metrics.port is None or importlib.util.find_spec("forkq.metrics") is None:
        return None
    from .. import metrics

    return metrics


def periodic_scheduler(config, master_pid: int) -> MasterPeriodic | None:
    """The master's periodic scheduler; None when no periodic job is declared. Entries come
    from the config's ``periodic:`` or from ``forkq.register_periodic(...)``, whose registry
    lives in ``forkq.periodic``: without either, that module was never loaded, and the master
    leaves it (and cronsim, zoneinfo) unloaded too."""
    if not config.periodic and "forkq.periodic" not in sys.modules:
        return None
    from ..periodic.master import MasterPeriodic

    return MasterPeriodic.from_config(config, master_pid)


def run_exporter(metrics, config) -> None:
    """Main of the metrics exporter child, after the fork."""
    die_with_master()
    setproctitle(title("forkq", "metrics", config.tag))
    exit_child(lambda: metrics.run_exporter(config) or 0)


def requeue_leftovers(config, names: list[str]) -> None:
    """With every child gone, push back what killed ones left in the private lists of the
    slots ``names``, on a connection opened and closed here."""
    if not names:
        return
    redis = None
    try:
        redis = connection.make_client(connection.resolve_url(config.redis_url,
                                                              config.data_dir))
        moved = requeue_slots(redis, keys_for(config.layout, config.namespace), names,
                              config.concurrency)
    except Exception as exc:
        logger.error("could not check the children's private lists (%s): jobs left there "
                     "are recovered once their heartbeats expire", exc)
        return
    finally:
        if redis is not None:
            redis.close()
    if moved:
        logger.warning("pushed %d job(s) left by killed children back to their queues", moved)


# --- the master

class Supervisor:
    """One master: ``run()`` starts it, keeps its children running until TERM/INT, stops them."""

    def __init__(self, config, reload: Callable[[], object] | None = None) -> None:
        self.config = config
        self.reload_config = reload
        self.master_pid = 0
        self.started_at = 0.0
        self.signals: SignalQueue | None = None
        #: the worker slots, made at start, when the master's pid that names them is known
        self.slots: Slots | None = None
        self.generation = 0
        self.halting = False
        #: a second TERM/INT arrived: children are SIGKILLed instead of waited for
        self.forced = False
        #: every child was told to stop (``shutdown``): HUP and TSTP have nothing left to act on
        self.stopping = False
        self.quiet = False
        self.failure: str | None = None
        self.announced_ready = False
        #: the private redis-server this master runs when no ``redis_url`` is configured
        self.embedded_redis = None
        #: the ``forkq.metrics`` module when the exporter runs, else None
        self.metrics = None
        #: helper children (the metrics exporter), supervised like the worker slots
        self.helpers: list[Helper] = []
        self.periodic: MasterPeriodic | None = None
        self.files = MasterFiles(config.data_dir, config.pidfile)

    def run(self) -> int:
        """Run until TERM/INT; 0 after a clean stop, ``ForkqError`` after a crash loop."""
        try:
            self.start()
            try:
                self.loop()
            finally:
                self.shutdown()
        finally:
            self.cleanup()
        if self.failure:
            raise ForkqError(self.failure)
        return 0

    def start(self) -> None:
        config = self.config
        stop_while_starting()  # until the loop's handlers: ``cleanup`` runs on TERM or INT
        log.setup_from(config)
        self.master_pid = os.getpid()
        self.slots = Slots(f"{hostname()}:{self.master_pid}")
        self.started_at = time.time()
        self.files.claim()
        # Before the preload, so that the application's own metrics join the children's.
        self.metrics = metrics_module(config)
        if self.metrics is not None:
            self.metrics.prepare(config)
            self.helpers.append(Helper("metrics exporter",
                                       lambda: run_exporter(self.metrics, self.config)))
        if not config.redis_url:
            from ..connection.embedded import EmbeddedRedis

            self.embedded_redis = EmbeddedRedis(config.data_dir).start()
        check_redis(config)
        client.default().use_config(config)
        worker.import_required(config.require)
        # A module that enqueued at import opened the client's connection: close it, so that
        # no Redis socket is shared with the children.
        client.default().close()
        self.periodic = periodic_scheduler(config, self.master_pid)
        self.signals = SignalQueue()
        self.signals.install(MASTER_SIGNALS)
        if threading.active_count() > 1:
            # Named, so that a library that re-creates its threads after a fork (the
            # OpenTelemetry SDK's span processors) is told apart from one that does not.
            logger.warning("the preloaded application started threads (%s); they do not exist "
                           "in the forked children unless their library starts them again "
                           "after a fork", ", ".join(sorted(
                               t.name for t in threading.enumerate()
                               if t is not threading.main_thread())))
        self.files.show(config.tag, 0)
        logger.info("forkq %s master started: pid=%d processes=%d concurrency=%d", __version__,
                    self.master_pid, config.processes, config.concurrency)

    def loop(self) -> None:
        while not self.halting:
            self.watch()
            self.slots.replace_unwanted(self.config, self.generation, self.quiet)
            self.spawn_missing()
            self.run_periodic()

    def shutdown(self) -> None:
        """TERM every child, SIGKILL survivors at deadline + GRACE, requeue what they left."""
        if self.signals is None:
            return
        systemd.notify("STOPPING=1")
        self.stopping = True
        if self.periodic is not None:
            self.periodic.stop()
        now = time.monotonic()
        for child in self.live_children():
            child.stop(now + child.timeout)
        while self.live_children():
            self.watch()
        requeue_leftovers(self.config, self.slots.names())
        logger.info("master stopped")

    def watch(self) -> None:
        """The steps of the loop that the shutdown drives too, until no child is left."""
        for signum in self.signals.wait(TICK):
            self.handle(signum)
        self.read_reports()
        self.reap_children()
        self.kill_stale()

    # --- signals

    def handle(self, signum: int) -> None:
        """Act on a recorded signal (DESIGN.md §2), then relay it to the children whose
        ``relays`` name it. CHLD only wakes the loop: ``reap_children`` follows."""
        if self.stopping and signum in (signal.SIGHUP, signal.SIGTSTP):
            return
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_requested(signal.Signals(signum).name)
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGTSTP:
            # Quiet means nothing new starts, so children that exit are not replaced either.
            logger.info("TSTP: quiet; children that exit are not replaced")
            self.quiet = True
        elif signum == signal.SIGUSR2:
            log.reopen()
        for child in self.live_children():
            if signum in child.relays:
                child.signal(signum)

    def stop_requested(self, name: str) -> None:
        """The first TERM/INT stops gracefully; the next one forces the stop."""
        if not self.halting:
            logger.info("%s: stopping; running jobs have %.0f s to finish, then go back to their "
                        "queues; TERM or INT (Ctrl-C) again stops at once", name,
                        self.config.timeout)
            self.halting = True
        elif not self.forced:
            logger.warning("%s again: stopping at once: SIGKILL to every child; the master then "
                           "pushes their unfinished jobs back to their queues", name)
            self.forced = True
            for child in self.live_children():
                child.kill()
        else:
            logger.info("%s: already stopping at once", name)

    def reload(self) -> None:
        if self.reload_config is None:
            logger.warning("HUP: there is no config file to re-read")
            return
        try:
            config = self.reload_config()
        except ForkqError as exc:
            logger.error("HUP: keeping the current config: %s", exc)
            return
        if config.require != self.config.require:
            logger.warning("HUP: 'require' changed, but the application is preloaded by the "
                           "master: restart the master to load new code")
        read_at_start = ("periodic", "periodic_lease", "redis_url", "namespace")
        changed = [key for key in read_at_start
                   if getattr(config, key) != getattr(self.config, key)]
        if changed:
            logger.warning("HUP: %s changed, but the master's periodic scheduler reads them at "
                           "start: restart the master to apply them to it",
                           ", ".join(repr(key) for key in changed))
        log.setup_from(config)
        self.config = config
        self.generation += 1
        logger.info("HUP: config re-read from %s; replacing children one at a time",
                    config.source)

    # --- children's reports and exits

    def read_reports(self) -> None:
        """Read the children's pipes; tell systemd once every wanted child is ready."""
        for slot in self.slots.read_reports(time.monotonic()):
            logger.info("%s is ready", slot)
            self.publish()
            if not self.announced_ready and self.slots.all_ready(self.config.processes):
                self.announced_ready = True
                logger.info("all %d children are ready", self.config.processes)
                systemd.notify("READY=1")

    def reap_children(self) -> None:
        """Reap every exited child, including orphans inherited as PID 1 in a container."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.exited(pid, os.waitstatus_to_exitcode(status))

    def exited(self, pid: int, code: int) -> None:
        child = next((c for c in self.live_children() if c.pid == pid), None)
        server = self.embedded_redis
        if isinstance(child, WorkerSlot):
            self.slot_exited(child, code)
        elif child is not None:
            child.exited(code, time.monotonic())
        elif server is not None and server.process and pid == server.process.pid:
            self.halt(f"the embedded redis-server exited ({describe_exit(code)}); see "
                      f"{self.config.data_dir}/redis.log")

    def slot_exited(self, slot: WorkerSlot, code: int) -> None:
        pid, now = slot.pid, time.monotonic()
        if self.metrics is not None:
            self.metrics.mark_dead(pid)
        logger.log(slot.exit_level(code), "%s %s", slot, describe_exit(code))
        if not self.halting and self.slots.crash_loop(slot, code):
            self.halt(f"children exited with status {code} before becoming ready "
                      f"{self.slots.early_exits} times in a row (an import error, a bad "
                      f"config, Redis refusing them?); see the log above")
        slot.exited(code, now)
        if not self.halting and slot.failures > 1:
            logger.warning("slot %d failed %d times in a row: restarting it in %.2f s",
                           slot.index, slot.failures, restart_delay(slot.failures))
        self.publish()

    def halt(self, message: str) -> None:
        logger.error("%s; the master stops", message)
        self.failure = message
        self.halting = True

    # --- keeping children healthy

    def kill_stale(self) -> None:
        """SIGKILL children past their stop deadline, and worker slots whose loop went silent.

        A long job is legal: the child's main loop reports while its threads run jobs."""
        now = time.monotonic()
        for child in self.live_children():
            if child.overdue(now):
                logger.warning("%s did not stop %.0f s after its deadline: SIGKILL", child, GRACE)
                child.kill()
        for slot in self.slots.live():
            silent = slot.silent_for(now)
            if slot.kill_at is None and silent > self.config.liveness_timeout:
                logger.error("%s has not reported for %.0f s (liveness_timeout): SIGKILL; its "
                             "replacement recovers its jobs", slot, silent)
                slot.kill()

    def live_children(self) -> list[Child]:
        return [*self.slots.live(), *(helper for helper in self.helpers if helper.alive)]

    # --- forking

    def spawn_missing(self) -> None:
        if self.halting or self.quiet:
            return
        now = time.monotonic()
        for slot in self.slots.due(self.config.processes, now):
            self.spawn(slot)
        for helper in self.helpers:
            if not helper.alive and now >= helper.respawn_at:
                helper.fork(self)
                logger.info("forked %s", helper)

    def spawn(self, slot: WorkerSlot) -> None:
        config = self.config
        max_jobs = jittered(config.max_jobs, random)

        def main(pipe: int) -> None:
            if config.cpu_affinity is True:
                logger.info("slot %d keeps to CPU %s (cpu_affinity)", slot.index,
                            keep_to_one_cpu(slot.index))
            tick = ChildTick(pipe, self.master_pid, max_jobs, config.tag)
            exit_child(lambda: worker.run(config, slot.name, parent=tick,
                                          observer=self.child_observer()))

        slot.fork_worker(self, main, config.timeout, self.generation)
        logger.info("forked child %d for slot %d", slot.pid, slot.index)
        self.publish()

    def child_observer(self):
        return self.metrics.JobObserver() if self.metrics is not None else None

    def fork(self) -> int:
        """Fork; in the child, drop what belongs to the master before anything else runs."""
        sys.stdout.flush()
        sys.stderr.flush()
        # What the master holds now (the preloaded application, forkq) moves out of the
        # collector's sight, so the child's collections don't write to those pages and they
        # stay shared with the master instead of being copied into each child.
        gc.collect()
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            for signum in MASTER_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            # The master owns HUP; one sent to the whole process group (a closed terminal)
            # must not kill children in the middle of jobs.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            self.signals.close()
            for slot in self.slots.live():
                os.close(slot.pipe)
        return pid

    # --- periodic jobs and what the outside sees

    def run_periodic(self) -> None:
        """Enqueue due periodic ticks while this master leads (``periodic/master.py``)."""
        if self.periodic is not None and self.periodic.run(time.monotonic()):
            self.publish()

    def publish(self) -> None:
        """Title and status file, after a change to the children or the periodic counts."""
        self.files.show(self.config.tag, len(self.slots.live()))
        periodic = self.periodic.status() if self.periodic is not None else None
        self.files.write_status(master_status(self.config, self.master_pid, self.started_at,
                                              self.slots, periodic))

    def cleanup(self) -> None:
        self.files.release()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
