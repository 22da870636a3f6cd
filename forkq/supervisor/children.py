"""The master's view of its children: one kind of object, whatever the child runs, and the
policy that keeps the worker slots filled.

Runs in the master, single-threaded (``supervisor/__init__.py`` owns the loop). A ``Child`` is a
process the master forks and keeps running: a worker slot (``WorkerSlot``) or a helper such as
the metrics exporter (``Helper``). Every child answers the same verbs:

- ``fork(supervisor)``: fork and, in the new process, run its main (never returns there);
- ``stop(deadline)``: SIGTERM; SIGKILL once ``deadline + GRACE`` passes (``overdue``, ``kill``);
- ``kill()``: SIGKILL now;
- ``retire(reason, deadline)``: stop it on purpose so that the master replaces it at once,
  gracefully: a worker finishes its jobs until the deadline and requeues the rest;
- ``exited(code, now)``: the master reaped it; the child plans its own restart.

Signals relayed by the master go to the children whose ``relays`` name them.

``Slots`` holds a master's worker slots by index: it names the slots due a fork, retires the
children to replace, and counts early exits in a row; the master forks, and halts on a crash
loop.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Callable, Iterator

from ..log import logger

#: seconds after a child's stop deadline before it is SIGKILLed
GRACE = 5.0
#: seconds before the second restart of a failing child; doubles with each failure after it
BACKOFF_FIRST = 0.25
#: seconds: the longest wait before restarting a failing child
BACKOFF_CAP = 10.0
#: seconds a child must have run for its death to count as a first failure again
STABLE_AFTER = 10.0
#: seconds between reads of the children's memory
MEMORY_CHECK_EVERY = 1.0
#: children exiting non-zero before they are ready, in a row, that stop the master
CRASH_LIMIT = 5


def restart_delay(failures: int) -> float:
    """Seconds before restarting a child that failed ``failures`` times in a row."""
    if failures <= 1:
        return 0.0
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 2))


def send_signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # already exited; the reaper will see it


def describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


class Child:
    """A supervised process. ``pid`` is None while no process runs for it."""

    #: signals the master relays to this child
    relays: frozenset[int] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name
        self.pid: int | None = None
        #: monotonic time of the fork
        self.forked = 0.0
        #: monotonic: SIGKILL if the process is still alive then; set once it is stopping
        self.kill_at: float | None = None
        #: stopped on purpose (memory, reload, surplus, a time limit): replaced at once
        self.retiring = False
        #: seconds the child gets to finish its work once told to stop
        self.timeout = 0.0
        #: consecutive abnormal exits, for the backoff
        self.failures = 0
        #: monotonic time from which the master may fork it again
        self.respawn_at = 0.0

    def __str__(self) -> str:
        return f"{self.name} {self.pid}"

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def fork(self, supervisor) -> None:
        pid = supervisor.fork()
        if pid == 0:
            self.run_child(supervisor)
        self.pid, self.forked, self.kill_at, self.retiring = pid, time.monotonic(), None, False

    def run_child(self, supervisor) -> None:
        """In the forked process: run its main and exit (``child.exit_child``)."""
        raise NotImplementedError

    def signal(self, signum: int) -> None:
        send_signal(self.pid, signum)

    def stop(self, deadline: float) -> None:
        """SIGTERM; SIGKILL if it still runs ``GRACE`` seconds after ``deadline``."""
        self.signal(signal.SIGTERM)
        kill_at = deadline + GRACE
        self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.kill_at = float("inf")

    def overdue(self, now: float) -> bool:
        return self.kill_at is not None and now >= self.kill_at

    def retire(self, reason: str, deadline: float) -> None:
        """Stop it gracefully to be replaced at once (no backoff, not a failure)."""
        logger.warning("%s %s: stopping it gracefully to replace it", self, reason)
        self.retiring = True
        self.stop(deadline)

    def exited(self, code: int, now: float) -> None:
        """Reaped: forget the process and plan the next fork with the failure backoff."""
        if code == 0 or self.retiring:
            self.failures = 0
        elif now - self.forked >= STABLE_AFTER and self.was_healthy():
            self.failures = 1
        else:
            self.failures += 1
        self.respawn_at = now + restart_delay(self.failures)
        self.pid, self.kill_at, self.retiring = None, None, False

    def was_healthy(self) -> bool:
        return True


class WorkerSlot(Child):
    """One worker child position. Its name, ``host:master-pid:index``, keys the child's private
    lists in Redis, so a replacement in the same slot recovers its predecessor's jobs."""

    relays = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGUSR2})

    def __init__(self, index: int, name: str) -> None:
        super().__init__(name)
        self.index = index
        #: read end of the child's report pipe
        self.pipe: int | None = None
        #: epoch seconds, for status.json
        self.started_at = 0.0
        #: monotonic time of the last byte from the child
        self.last_seen = 0.0
        #: the child has written its first byte since its fork
        self.ready = False
        #: the master's config generation (HUPs applied) when this child was forked
        self.generation = 0
        #: forks of this slot after its first, for status.json
        self.restarts = 0
        #: the child asked to be replaced (``R`` on its pipe: ``ChildTick.request_retirement``)
        self.wants_retirement = False
        self._main: Callable[[], None] | None = None

    def __str__(self) -> str:
        return f"child {self.pid} (slot {self.index})"

    def fork_worker(self, supervisor, main: Callable[[int], None], timeout: float,
                    generation: int) -> None:
        """Fork with a fresh report pipe; ``main(write_end)`` runs in the child."""
        read_end, write_end = os.pipe()
        # Neither side may block on the other: a full pipe only loses liveness bytes.
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._main = lambda: (os.close(read_end), main(write_end))
        self.fork(supervisor)
        os.close(write_end)
        if self.started_at:
            self.restarts += 1
        self.pipe, self.started_at = read_end, time.time()
        self.last_seen, self.ready, self.wants_retirement = self.forked, False, False
        self.timeout, self.generation = timeout, generation

    def run_child(self, supervisor) -> None:
        self._main()

    def read_report(self, now: float) -> bool:
        """Read its pipe; True when this read made it ready."""
        try:
            data = os.read(self.pipe, 4096)
        except BlockingIOError:
            return False
        if not data:
            return False  # the child is exiting; waitpid tells how
        self.last_seen = now
        if b"S" in data and self.kill_at is None:
            self.kill_at = now + self.timeout + GRACE
        if b"R" in data:
            self.wants_retirement = True
        if self.ready:
            return False
        self.ready = True
        return True

    def silent_for(self, now: float) -> float:
        return now - self.last_seen

    def was_healthy(self) -> bool:
        return self.ready

    def exited(self, code: int, now: float) -> None:
        os.close(self.pipe)
        self.pipe = None
        super().exited(code, now)
        self.ready = False

    def exit_level(self, code: int) -> int:
        return logging.INFO if code == 0 or self.retiring else logging.WARNING


class Helper(Child):
    """A child with no jobs and no report pipe (the metrics exporter): stopped with ``GRACE``
    alone, restarted with the backoff after a crash, never after a clean exit (status 0: told
    to stop, or it decided it cannot serve, and logged why)."""

    relays = frozenset({signal.SIGUSR2})

    def __init__(self, name: str, main: Callable[[], int]) -> None:
        super().__init__(name)
        self.main = main

    def run_child(self, supervisor) -> None:
        self.main()

    def stop(self, deadline: float) -> None:
        """It has no jobs to finish: ``GRACE`` from now, whatever the deadline."""
        super().stop(min(deadline, time.monotonic()))

    def exited(self, code: int, now: float) -> None:
        logger.log(logging.WARNING if code else logging.INFO, "%s %s", self,
                   describe_exit(code))
        super().exited(code, now)
        if code == 0:
            self.respawn_at = float("inf")


def rss_mb(pid: int) -> float:
    """Current resident memory (not the peak) of a process, in MB; 0 when it is gone."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


class Slots:
    """The worker slots of one master, by index, and the policy that keeps them: which slots
    to fork, and which children to replace (asked to be, too big, outdated, beyond
    ``processes``). Every child that asks is replaced at once; the master's own reasons
    (memory, a reload) replace one child at a time, so that at most one slot is down for them."""

    def __init__(self, prefix: str) -> None:
        #: ``host:master-pid``; a slot's name adds its index
        self.prefix = prefix
        self.by_index: dict[int, WorkerSlot] = {}
        #: children that asked to be replaced and still stop, their slot already handed over
        self.leaving: list[WorkerSlot] = []
        #: names of slots handed over, whose lists the shutdown sweep checks too
        self.left_names: list[str] = []
        #: monotonic time of the next read of the children's memory
        self.next_memory_check = 0.0
        #: children that exited non-zero before becoming ready, in a row
        self.early_exits = 0

    def __iter__(self):
        return iter(self.by_index.values())

    def live(self) -> list[WorkerSlot]:
        """Every running child: the slots' and the leaving ones'."""
        return [slot for slot in (*self, *self.leaving) if slot.alive]

    def all_ready(self, processes: int) -> bool:
        return all(self.by_index.get(i) and self.by_index[i].ready for i in range(processes))

    def retiring(self) -> bool:
        return any(slot.retiring for slot in self.live())

    def read_reports(self, now: float) -> Iterator[WorkerSlot]:
        """Read every live child's pipe; yield each that this read made ready (which ends a
        run of early exits)."""
        for slot in self.live():
            if slot.read_report(now):
                self.early_exits = 0
                yield slot

    def crash_loop(self, slot: WorkerSlot, code: int) -> bool:
        """Count an exit: True once ``CRASH_LIMIT`` children in a row exited non-zero before
        becoming ready (an import error, a bad config, Redis refusing them)."""
        if code > 0 and not slot.ready:
            self.early_exits += 1
        return self.early_exits >= CRASH_LIMIT

    def names(self) -> list[str]:
        return [slot.name for slot in self] + self.left_names

    def due(self, processes: int, now: float) -> list[WorkerSlot]:
        """The slots wanted by ``processes`` that have no child and may be forked now."""
        for index in range(processes):
            if index not in self.by_index:
                self.by_index[index] = WorkerSlot(index, f"{self.prefix}:{index}")
        wanted = [self.by_index[index] for index in range(processes)]
        return [slot for slot in wanted if not slot.alive and now >= slot.respawn_at]

    def replace_unwanted(self, config, generation: int, quiet: bool) -> None:
        """Retire the children that asked for it; then, unless one is already being replaced
        or the master is quiet, one that is too big, or else one that runs an old config."""
        self.retire_asking()
        if self.retiring() or quiet:
            return
        if not self.recycle_bloated(config.max_memory_mb):
            self.roll_reloaded(config.processes, generation)

    def retire_asking(self) -> None:
        """Replace the children that asked for it (one whose job outlived its hard limit), and
        fork their successors at once: a stuck thread may hold a leaving child until its
        deadline, and with ``processes: 1`` nothing would fetch meanwhile."""
        self.leaving = [slot for slot in self.leaving if slot.alive]
        for slot in self.live():
            if slot.wants_retirement and not slot.retiring and slot.kill_at is None:
                self.retire(slot, "asked to be replaced")
                self.hand_over(slot)

    def hand_over(self, slot: WorkerSlot) -> None:
        """Give a leaving child's index to a new slot, due at once. The new slot has its own
        name, so that its boot recovery leaves alone the lists the leaving child still works
        from; the leaving child requeues them as it stops (or, killed, the shutdown sweep or
        the orphan scan does)."""
        successor = WorkerSlot(slot.index, f"{self.prefix}:{slot.index}.{len(self.left_names) + 1}")
        successor.started_at, successor.restarts = slot.started_at, slot.restarts
        self.by_index[slot.index] = successor
        self.leaving.append(slot)
        self.left_names.append(slot.name)

    def recycle_bloated(self, limit: int | None) -> bool:
        """Retire the first ready child over ``limit`` MB; True when one was."""
        now = time.monotonic()
        if not limit or now < self.next_memory_check:
            return False
        self.next_memory_check = now + MEMORY_CHECK_EVERY
        for slot in self.live():
            if slot.ready and slot.kill_at is None:
                used = rss_mb(slot.pid)
                if used > limit:
                    self.retire(slot, f"uses {used:.0f} MB, over max_memory_mb {limit}")
                    return True
        return False

    def roll_reloaded(self, processes: int, generation: int) -> None:
        """After HUP, retire one outdated child, once every wanted child is up."""
        if not self.all_ready(processes):
            return
        for slot in self.live():
            if slot.generation < generation or slot.index >= processes:
                self.retire(slot, "runs an old config" if slot.index < processes
                            else "is beyond 'processes'")
                return

    @staticmethod
    def retire(slot: WorkerSlot, reason: str) -> None:
        """Replace a child at once: it stops gracefully (a worker requeues what it held)."""
        slot.retire(reason, time.monotonic() + slot.timeout)
