"""Time limits: one watchdog thread per worker process calls back at running jobs' deadlines.

Runs in a worker process (``Watchdog``, a daemon thread started with the worker); processor
threads register each job that has limits (``watch``) and close the entry when it ends. No
thread per job: the watchdog sleeps until the earliest deadline of the entries it holds (at
most one per processor thread), fires what is due, and sleeps again.

Payload fields (seconds, any positive number; Celery's names): ``soft_time_limit`` and
``time_limit``. What happens at each, decided by the caller's callbacks (``processor.py``):
at the soft limit ``SoftTimeLimitExceeded`` is raised in the job's thread (``raise_in``), which
a job blocked in a system call sees only when the call returns; at the hard limit the job is
written to retry with ``TimeLimitExceeded`` and its process is replaced.

Callbacks run in the watchdog thread, each at most once; a soft one never after
``Entry.close`` returned, a hard one possibly just after (its owner checks the job still
runs). Any runner can use the interface: a coroutine runner passes callbacks that cancel its
task through its loop (``loop.call_soon_threadsafe(task.cancel)``).
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from typing import Any, Callable

from ..log import logger
from ..values import is_positive_seconds

#: longest the watchdog sleeps with nothing due, seconds (it is woken by ``watch`` anyway)
IDLE_WAIT = 5.0


def limits(payload: dict[str, Any]) -> tuple[float | None, float | None]:
    """``(soft, hard)`` seconds from the payload; a value that is not a positive number is
    ignored with a warning (a producer's mistake must not stop the job)."""
    found = []
    for name in ("soft_time_limit", "time_limit"):
        value = payload.get(name)
        usable = is_positive_seconds(value)
        if value is not None and not usable:
            logger.warning("jid=%s: %s %r is not a positive number of seconds; ignored",
                           payload.get("jid"), name, value)
        found.append(float(value) if usable else None)
    return found[0], found[1]


def raise_in(thread_id: int, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` in a thread at its next bytecode (``Processor.kill``'s mechanism)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc_type))


def clear_pending(thread_id: int) -> None:
    """Withdraw an exception ``raise_in`` set and the thread has not seen yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


class Entry:
    """One job's deadlines (monotonic seconds) and what to call at each."""

    def __init__(self, watchdog: "Watchdog", soft_at: float | None, hard_at: float | None,
                 on_soft: Callable[[], None] | None, on_hard: Callable[[], None] | None) -> None:
        self.watchdog = watchdog
        self.soft_at, self.hard_at = soft_at, hard_at
        self.on_soft, self.on_hard = on_soft, on_hard
        #: the soft callback ran (its exception may still be pending in the thread)
        self.soft_fired = False
        self.closed = False

    def next_deadline(self) -> float:
        pending = [at for at, fired in ((self.soft_at, self.soft_fired), (self.hard_at, False))
                   if at is not None and not fired]
        return min(pending) if pending else math.inf

    def close(self) -> bool:
        """End the watch (the job ended); True when the soft callback had run. No callback
        runs after this returns."""
        return self.watchdog.close(self)


class Watchdog(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="time-limits", daemon=True)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.entries: list[Entry] = []
        self.halted = False

    def watch(self, soft: float | None, hard: float | None,
              on_soft: Callable[[], None] | None = None,
              on_hard: Callable[[], None] | None = None) -> Entry:
        """Watch a job that starts now: ``on_soft`` after ``soft`` seconds, ``on_hard`` after
        ``hard`` (either may be None)."""
        now = time.monotonic()
        entry = Entry(self, now + soft if soft else None, now + hard if hard else None,
                      on_soft, on_hard)
        with self.lock:
            self.entries.append(entry)
            self.changed.notify()
        return entry

    def close(self, entry: Entry) -> bool:
        with self.lock:
            entry.closed = True
            if entry in self.entries:
                self.entries.remove(entry)
            return entry.soft_fired

    def halt(self) -> None:
        with self.lock:
            self.halted = True
            self.changed.notify()

    def run(self) -> None:
        while True:
            with self.lock:
                if self.halted:
                    return
                hard = self._fire_due(time.monotonic())
                if not hard:
                    upcoming = min((e.next_deadline() for e in self.entries), default=math.inf)
                    self.changed.wait(min(IDLE_WAIT, max(0.0, upcoming - time.monotonic())))
            for callback in hard:
                self._call(callback)

    def _fire_due(self, now: float) -> list[Callable[[], None] | None]:
        """Run the soft callbacks due (under ``lock``, so that ``close`` waits for one running:
        a soft exception is raised or withdrawn, never left behind); return the hard ones due,
        removed from the watch, for the caller to run outside the lock (they write to Redis,
        and their owner checks that the job is still the one running)."""
        hard = []
        for entry in list(self.entries):
            if entry.soft_at is not None and not entry.soft_fired and entry.soft_at <= now:
                entry.soft_fired = True
                self._call(entry.on_soft)
            if entry.hard_at is not None and entry.hard_at <= now:
                self.entries.remove(entry)
                hard.append(entry.on_hard)
        return hard

    @staticmethod
    def _call(callback: Callable[[], None] | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            logger.exception("time-limit callback %r failed", callback)
