"""The master process of ``forkq start``: forks worker children and keeps them running.

Runs in the master, single-threaded. Signal handlers only record the signal; the loop acts on
it. The master imports the application once (``require:``) so children share it copy-on-write,
and it holds no Redis connection and no thread when it forks: each child sets itself up after
the fork (here: signal dispositions, the master's file descriptors, process title; then
``worker.run``: Redis pool, logging, random seed).

Children are ``children.Child`` objects with one set of verbs (fork, stop, kill, retire,
exited): the worker slots and the metrics exporter alike. Each worker child owns a *slot*,
``host:master-pid:index``, which keys its private lists in Redis, so a replacement in the same
slot recovers its predecessor's jobs at boot. A pipe runs from each worker child to the master:
the child writes a byte from its main loop at least once a second. The first byte says it is
ready, every byte that its loop is alive, ``S`` that it is stopping by itself, ``R`` that it
asks to be retired: the master stops it gracefully and forks its replacement at once.

Steps of the loop: handle signals, read the pipes, reap exited children, kill hung or overdue
ones, recycle one that uses too much memory, roll out a re-read config, fork what is missing,
enqueue due periodic jobs while this master leads (``periodic_master.py``, on a connection
opened and closed within the step).

Shutdown: TERM every child; each finishes its jobs until ``timeout``, requeues the rest and
exits 0. Survivors are SIGKILLed ``GRACE`` seconds after the deadline; then, with no child left,
the master opens a short-lived Redis connection and pushes whatever their private lists still
hold back to the front of the queues. It is worse to lose a job than to run it twice.
A second TERM or INT (Ctrl-C) during the shutdown forces it: every child is SIGKILLed at once,
skipping the rest of the timeout, and the same sweep pushes their unfinished jobs back.

The master always writes ``<data_dir>/master.pid`` (and the configured ``pidfile``), the pid
with its start time, by which ``forkqctl`` finds and verifies it (``pidfile.py``), and
``<data_dir>/status.json``, from which the metrics exporter learns its children (``status.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import signal
import sys
import threading
import time
from typing import Callable

from setproctitle import setproctitle

from .. import __version__, client, connection, log, worker
from .child import ChildTick, die_with_master, exit_child, title
from .children import GRACE, Child, Helper, WorkerSlot, describe_exit, restart_delay
from ..errors import ForkqError
from ..worker.heartbeat import hostname
from ..keys import Keys
from ..log import logger
from .notify import notify
from ..periodic.master import MasterPeriodic
from .pidfile import claim_pidfile, default_pidfile, release_pidfile
from ..worker.recovery import requeue_slots
from ..signals import SignalQueue
from ..status import StatusFile, master_status

#: signals the master acts on in its loop; a child resets them after the fork
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGUSR2,
                  signal.SIGHUP, signal.SIGCHLD)
#: seconds between looks at the children's pipes; a signal (CHLD included) wakes the loop at once
TICK = 0.2
#: children exiting non-zero before they are ready, in a row, that stop the master
CRASH_LIMIT = 5
#: seconds between reads of the children's memory
MEMORY_CHECK_EVERY = 1.0
#: relative spread of ``max_jobs`` per child, so children do not recycle in lockstep
MAX_JOBS_JITTER = 0.1


# --- pure helpers

def jittered(limit: int | None, rng: random.Random) -> int | None:
    """One child's ``max_jobs``: ``limit`` spread by ``MAX_JOBS_JITTER``; None for no limit."""
    if not limit:
        return None
    return max(1, round(limit * rng.uniform(1 - MAX_JOBS_JITTER, 1 + MAX_JOBS_JITTER)))


def master_title(tag: str, children: int) -> str:
    return title("forkq", "master", tag, f"[{children} children]")


# --- process-level effects of the master

def rss_mb(pid: int) -> float:
    """Current resident memory (not the peak) of a process, in MB; 0 when it is gone."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def metrics_module(config):
    """``forkq.metrics`` when it exists and metrics are enabled, else None."""
    if config.metrics.port is None or importlib.util.find_spec("forkq.metrics") is None:
        return None
    from .. import metrics

    return metrics


# --- the master

class Supervisor:
    def __init__(self, config, reload: Callable[[], object] | None = None) -> None:
        self.config = config
        self.reload_config = reload
        self.master_pid = 0
        self.started_at = 0.0
        self.signals: SignalQueue | None = None
        self.slots: dict[int, WorkerSlot] = {}
        self.generation = 0
        self.halting = False
        #: a second TERM/INT arrived: children are SIGKILLed instead of waited for
        self.forced = False
        self.quiet = False
        self.failure: str | None = None
        self.early_exits = 0
        self.announced_ready = False
        #: the private redis-server this master runs when no ``redis_url`` is configured
        self.embedded_redis = None
        #: the ``forkq.metrics`` module when the exporter runs, else None
        self.metrics = None
        #: helper children (the metrics exporter), supervised like the worker slots
        self.helpers: list[Helper] = []
        self.periodic: MasterPeriodic | None = None
        self.next_memory_check = 0.0
        #: the files this master wrote, removed as it stops (a reload may change the config's paths)
        self.pidfiles: list[str] = []
        self.status_file: StatusFile | None = None

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
        log.setup(config.loglevel, config.logfile)
        self.master_pid = os.getpid()
        self.started_at = time.time()
        os.makedirs(config.data_dir, exist_ok=True)
        self.claim_pidfiles()
        self.status_file = StatusFile(config.data_dir)
        # Before the preload, so that the application's own metrics join the children's.
        self.metrics = metrics_module(config)
        if self.metrics is not None:
            self.metrics.prepare(config)
            self.helpers.append(Helper("metrics exporter", self.run_exporter))
        if not config.redis_url:
            from ..connection.embedded import EmbeddedRedis

            self.embedded_redis = EmbeddedRedis(config.data_dir).start()
        client.default().use_config(config)
        worker.import_required(config.require)
        # A module that enqueued at import opened the client's connection: close it, so that
        # no Redis socket is shared with the children.
        client.default().close()
        self.periodic = MasterPeriodic.from_config(config, self.master_pid)
        self.signals = SignalQueue()
        self.signals.install(MASTER_SIGNALS)
        if threading.active_count() > 1:
            logger.warning("the preloaded application started threads; they do not exist in "
                           "the forked children")
        setproctitle(master_title(config.tag, 0))
        logger.info("forkq %s master started: pid=%d processes=%d concurrency=%d", __version__,
                    self.master_pid, config.processes, config.concurrency)

    def claim_pidfiles(self) -> None:
        """``<data_dir>/master.pid`` always, so forkqctl finds a master with no ``pidfile``."""
        config = self.config
        for path, setting in ((default_pidfile(config.data_dir), "data_dir"),
                              (config.pidfile, "pidfile")):
            if path and path not in self.pidfiles:
                claim_pidfile(path, setting)
                self.pidfiles.append(path)

    def loop(self) -> None:
        while not self.halting:
            for signum in self.signals.wait(TICK):
                self.handle(signum)
            self.read_reports()
            self.reap_children()
            self.kill_stale()
            self.retire_requested()
            self.recycle_bloated()
            self.roll_reloaded()
            self.spawn_missing()
            self.run_periodic()

    # --- signals

    def handle(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_requested(signal.Signals(signum).name)
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGTSTP:
            # Quiet means nothing new starts, so children that exit are not replaced either.
            logger.info("TSTP: quiet; children that exit are not replaced")
            self.quiet = True
            self.relay(signum)
        elif signum == signal.SIGUSR2:
            log.reopen()
            self.relay(signum)
        elif signum == signal.SIGTTIN:
            self.relay(signum)
        # CHLD only wakes the loop: reap_children follows.

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

    def relay(self, signum: int) -> None:
        for child in self.live_children():
            if signum in child.relays:
                child.signal(signum)

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
        log.setup(config.loglevel, config.logfile)
        self.config = config
        self.generation += 1
        logger.info("HUP: config re-read from %s; replacing children one at a time",
                    config.source)

    # --- children's reports and exits

    def read_reports(self) -> None:
        now = time.monotonic()
        for slot in self.live_slots():
            if slot.read_report(now):
                self.child_ready(slot)

    def child_ready(self, slot: WorkerSlot) -> None:
        self.early_exits = 0
        logger.info("%s is ready", slot)
        self.write_status()
        wanted = [self.slots.get(i) for i in range(self.config.processes)]
        if not self.announced_ready and all(s and s.ready for s in wanted):
            self.announced_ready = True
            logger.info("all %d children are ready", len(wanted))
            notify("READY=1")

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
        if isinstance(child, WorkerSlot):
            self.slot_exited(child, code)
        elif child is not None:
            child.exited(code, time.monotonic())
        elif pid == self.embedded_redis_pid():
            self.halt(f"the embedded redis-server exited ({describe_exit(code)}); see "
                      f"{self.config.data_dir}/redis.log")

    def embedded_redis_pid(self) -> int | None:
        server = self.embedded_redis
        return server.process.pid if server is not None and server.process else None

    def slot_exited(self, slot: WorkerSlot, code: int) -> None:
        pid, now = slot.pid, time.monotonic()
        if self.metrics is not None:
            self.metrics.mark_dead(pid)
        logger.log(slot.exit_level(code), "%s %s", slot, describe_exit(code))
        if not self.halting:
            self.count_early_exit(slot, code)
        slot.exited(code, now)
        if not self.halting and slot.failures > 1:
            logger.warning("slot %d failed %d times in a row: restarting it in %.2f s",
                           slot.index, slot.failures, restart_delay(slot.failures))
        self.set_master_title()
        self.write_status()

    def count_early_exit(self, slot: WorkerSlot, code: int) -> None:
        if code > 0 and not slot.ready:
            self.early_exits += 1
            if self.early_exits >= CRASH_LIMIT:
                self.halt(f"children exited with status {code} before becoming ready "
                          f"{self.early_exits} times in a row (an import error, a bad config, "
                          f"Redis refusing them?); see the log above")

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
        for slot in self.live_slots():
            silent = slot.silent_for(now)
            if slot.kill_at is None and silent > self.config.liveness_timeout:
                logger.error("%s has not reported for %.0f s (liveness_timeout): SIGKILL; its "
                             "replacement recovers its jobs", slot, silent)
                slot.kill()

    def retire_requested(self) -> None:
        """Replace the children that asked for it (one whose job outlived its hard limit)."""
        for slot in self.live_slots():
            if slot.wants_retirement and not slot.retiring and slot.kill_at is None:
                self.retire(slot, "asked to be replaced")

    def recycle_bloated(self) -> None:
        limit, now = self.config.max_memory_mb, time.monotonic()
        if not limit or now < self.next_memory_check or self.retiring() or self.quiet:
            return
        self.next_memory_check = now + MEMORY_CHECK_EVERY
        for slot in self.live_slots():
            if slot.ready and slot.kill_at is None:
                used = rss_mb(slot.pid)
                if used > limit:
                    self.retire(slot, f"uses {used:.0f} MB, over max_memory_mb {limit}")
                    return

    def roll_reloaded(self) -> None:
        """After HUP, stop one outdated child at a time, once every wanted child is up."""
        if self.retiring() or self.quiet or not self.all_ready():
            return
        for slot in self.live_slots():
            if slot.generation < self.generation or slot.index >= self.config.processes:
                self.retire(slot, "runs an old config" if slot.index < self.config.processes
                            else "is beyond 'processes'")
                return

    def retire(self, child: Child, reason: str) -> None:
        """Replace a child at once: it stops gracefully (a worker requeues what it held)."""
        child.retire(reason, time.monotonic() + child.timeout)

    def retiring(self) -> bool:
        return any(slot.retiring for slot in self.live_slots())

    def all_ready(self) -> bool:
        return all(self.slots.get(i) and self.slots[i].ready for i in range(self.config.processes))

    def live_slots(self) -> list[WorkerSlot]:
        return [slot for slot in self.slots.values() if slot.alive]

    def live_children(self) -> list[Child]:
        return [*self.live_slots(), *(helper for helper in self.helpers if helper.alive)]

    # --- forking

    def spawn_missing(self) -> None:
        if self.halting or self.quiet:
            return
        now = time.monotonic()
        for index in range(self.config.processes):
            slot = self.slots.setdefault(index, WorkerSlot(index, self.slot_name(index)))
            if not slot.alive and now >= slot.respawn_at:
                self.spawn(slot)
        for helper in self.helpers:
            if not helper.alive and now >= helper.respawn_at:
                helper.fork(self)
                logger.info("forked %s", helper)

    def slot_name(self, index: int) -> str:
        return f"{hostname()}:{self.master_pid}:{index}"

    def spawn(self, slot: WorkerSlot) -> None:
        config = self.config
        max_jobs = jittered(config.max_jobs, random)

        def main(pipe: int) -> None:
            tick = ChildTick(pipe, self.master_pid, max_jobs, config.tag)
            exit_child(lambda: worker.run(config, slot.name, parent=tick,
                                          observer=self.child_observer()))

        slot.fork_worker(self, main, config.timeout, self.generation)
        logger.info("forked child %d for slot %d", slot.pid, slot.index)
        self.set_master_title()
        self.write_status()

    def run_exporter(self) -> None:
        die_with_master()
        setproctitle(title("forkq", "metrics", self.config.tag))
        exit_child(lambda: self.metrics.run_exporter(self.config) or 0)

    def fork(self) -> int:
        """Fork; in the child, drop what belongs to the master before anything else runs."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.forget_master_state()
        return pid

    def forget_master_state(self) -> None:
        for signum in MASTER_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        # The master owns HUP; one sent to the whole process group (a closed terminal) must not
        # kill children in the middle of jobs.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.signals.close()
        for slot in self.live_slots():
            os.close(slot.pipe)

    def child_observer(self):
        return self.metrics.JobObserver() if self.metrics is not None else None

    # --- periodic jobs

    def run_periodic(self) -> None:
        """Enqueue due periodic ticks while this master leads (``periodic_master.py``)."""
        if self.periodic is not None and self.periodic.run(time.monotonic()):
            self.write_status()

    # --- status

    def set_master_title(self) -> None:
        setproctitle(master_title(self.config.tag, len(self.live_slots())))

    def write_status(self) -> None:
        periodic = self.periodic.status() if self.periodic is not None else None
        self.status_file.write(master_status(self.config, self.master_pid, self.started_at,
                                             self.slots.values(), periodic))

    # --- shutdown

    def shutdown(self) -> None:
        """TERM every child, SIGKILL survivors at deadline + GRACE, requeue what they left."""
        if self.signals is None:
            return
        notify("STOPPING=1")
        if self.periodic is not None:
            self.periodic.stop()
        now = time.monotonic()
        for child in self.live_children():
            child.stop(now + child.timeout)
        while self.live_children():
            for signum in self.signals.wait(TICK):
                if signum in (signal.SIGTTIN, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
                    self.handle(signum)
            self.read_reports()
            self.reap_children()
            self.kill_stale()
        self.requeue_leftovers()
        logger.info("master stopped")

    def requeue_leftovers(self) -> None:
        """With every child gone, push back what killed ones left in their private lists."""
        if not self.slots:
            return
        config = self.config
        names = [slot.name for slot in self.slots.values()]
        redis = None
        try:
            redis = connection.make_client(connection.resolve_url(config.redis_url,
                                                                  config.data_dir))
            moved = requeue_slots(redis, Keys(config.namespace), names, config.concurrency)
        except Exception as exc:
            logger.error("could not check the children's private lists (%s): jobs left there "
                         "are recovered once their heartbeats expire", exc)
            return
        finally:
            if redis is not None:
                redis.close()
        if moved:
            logger.warning("pushed %d job(s) left by killed children back to their queues", moved)

    def cleanup(self) -> None:
        for path in self.pidfiles:
            with contextlib.suppress(OSError):
                release_pidfile(path)
        if self.status_file is not None:
            self.status_file.remove()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
