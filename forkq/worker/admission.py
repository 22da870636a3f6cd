"""How many of a worker process's processor threads take work at once (``adaptive_concurrency``).

Python runs one thread's bytecode at a time. Short jobs on many threads hand the interpreter
lock over at every socket call, often to a thread on another CPU, and those hand-overs cost
more than the jobs' own work: one process of 10 threads draining one-``INCR`` jobs spends
about twice the CPU a job of one thread, and drains slower (docs/reference/performance.md,
"Threads and the GIL"). So a processor enters here before it fetches and leaves after its
batch, and at most ``limit`` threads are inside at once.

The limit follows what the process does, measured over windows of ``WINDOW`` seconds. While
it keeps from ``BUSY`` to ``SEVERAL`` CPUs busy (one CPU's worth of Python, and the hand-overs'
own system time), the limit is halved (down to 1) on trial: if the next window runs ``WORSE``
fewer jobs a second, the jobs were gaining from the threads (code outside the interpreter
lock, NumPy or compression, on several CPUs at once), the limit goes back, and no trial is
made for ``HOLD`` windows. Above ``SEVERAL`` the jobs evidently run on several CPUs at once,
and no trial is made. Below ``SPARE`` of a CPU the threads wait on something else (Redis,
HTTP, a database): while some stand outside, the limit doubles (up to ``concurrency``).

A thread inside for longer than ``STALLED`` seconds (a long job, an idle fetch waiting for
work) does not count against the limit, so a slow or stuck job never keeps the others out,
and an idle worker has every thread waiting on Redis as before. With
``adaptive_concurrency: false`` every thread is always admitted.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..log import logger

#: seconds of measurement behind each change of the limit
WINDOW = 0.25
#: CPUs of use from which fewer threads are tried
BUSY = 0.85
#: CPUs of use above which no fewer threads are tried (10 threads handing the lock over
#: between two CPUs keep about 1.2 busy)
SEVERAL = 1.5
#: share of jobs a second lost on a trial that puts the limit back
WORSE = 0.1
#: windows without a trial after one put the limit back
HOLD = 40
#: CPUs of use below which more threads may help
SPARE = 0.5
#: seconds inside after which a thread no longer counts against the limit
STALLED = 0.1


class Admission:
    """The gate before a processor's fetch. ``enter`` blocks while ``limit`` threads that
    entered less than ``STALLED`` seconds ago are inside; ``leave`` ends a thread's turn and,
    once a ``WINDOW`` has passed, moves the limit. A thread waiting outside looks again every
    ``STALLED`` seconds, and at once when the limit grows; a thread leaving wakes no one, since
    it takes its next turn itself and its connection is the warm one."""

    def __init__(self, most: int, adaptive: bool = True, *,
                 clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self.most = most
        self.adaptive = adaptive and most > 1
        self.limit = most
        self.clock, self.cpu = clock, cpu
        self.condition = threading.Condition()
        #: thread ident → monotonic time it entered
        self.inside: dict[int, float] = {}
        self.waiting = 0
        #: the window being measured: when it began, the process's CPU seconds then, its jobs
        self.window_at, self.window_cpu, self.jobs = clock(), cpu(), 0
        #: (the limit before, the jobs a second then) while a lower limit is on trial
        self.trial: tuple[int, float] | None = None
        self.hold = 0

    def enter(self, stopping: Callable[[], bool]) -> bool:
        """Wait for a turn; False when ``stopping()`` became true meanwhile."""
        if not self.adaptive:
            return True
        ident = threading.get_ident()
        with self.condition:
            while not stopping():
                if self._room():
                    self.inside[ident] = self.clock()
                    return True
                self.waiting += 1
                try:
                    self.condition.wait(STALLED)
                finally:
                    self.waiting -= 1
        return False

    def leave(self, jobs: int) -> None:
        """End this thread's turn, in which it took ``jobs`` jobs."""
        if not self.adaptive:
            return
        with self.condition:
            self.inside.pop(threading.get_ident(), None)
            self.jobs += jobs
            now = self.clock()
            if now - self.window_at >= WINDOW:
                self._adjust(now)

    def _room(self) -> bool:
        if len(self.inside) < self.limit:  # at the full limit, without a look at each thread
            return True
        fresh = self.clock() - STALLED
        return sum(1 for entered in self.inside.values() if entered > fresh) < self.limit

    def _adjust(self, now: float) -> None:
        used, seconds = self.cpu(), now - self.window_at
        share, rate = (used - self.window_cpu) / seconds, self.jobs / seconds
        self.window_at, self.window_cpu, self.jobs = now, used, 0
        self.hold = max(0, self.hold - 1)
        if self.trial is not None:
            before, before_rate = self.trial
            self.trial = None
            if rate < before_rate * (1 - WORSE):
                self._set(before, f"{rate:.0f} jobs/s against {before_rate:.0f} with it")
                self.hold = HOLD
                return
        if BUSY <= share <= SEVERAL and self.limit > 1 and not self.hold:
            self.trial = (self.limit, rate)
            self._set(max(1, self.limit // 2), f"{share:.2f} CPUs busy, on trial")
        elif share < SPARE and self.waiting:
            self._set(min(self.most, self.limit * 2), f"{share:.2f} CPUs busy")

    def _set(self, limit: int, why: str) -> None:
        if limit > self.limit:
            self.condition.notify_all()
        self.limit = limit
        logger.debug("adaptive_concurrency: %d of %d threads take jobs (%s)", limit, self.most,
                     why)
