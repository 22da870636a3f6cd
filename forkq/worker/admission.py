"""How many of a worker process's processor threads take work at once (``adaptive_concurrency``).

Python runs one thread's bytecode at a time. Short jobs on many threads hand the interpreter
lock over at every socket call, often to a thread on another CPU, and those hand-overs cost
more than the jobs' own work: one process of 10 threads draining one-``INCR`` jobs spends
about twice the CPU a job of one thread, and drains slower (docs/reference/performance.md,
"Threads and the GIL"). So a processor enters here before it fetches and leaves after its
batch, and at most ``limit`` threads are inside at once.

The limit follows what the process does, measured over windows of ``WINDOW`` seconds (longer
while they hold fewer than ``WINDOW_JOBS`` jobs, up to ``LONGEST_WINDOW``); the first window
after a change is left out, since threads above the new limit are still ending their turns.
Each change but one is a trial, kept only if the jobs go no slower:

- while the process keeps from ``BUSY`` to ``SEVERAL`` CPUs busy (one CPU's worth of Python,
  and the hand-overs' own system time), the limit is halved (down to 1), and kept unless the
  jobs a second on trial fall ``MARGIN`` below the mean of the windows before: then the jobs
  were gaining from the threads (code outside the interpreter lock, NumPy or compression, on
  several CPUs at once). Jobs that go as fast with fewer threads keep the lower limit, which
  costs less CPU a job;
- while threads wait outside and the process keeps less than ``BUSY`` busy (or more than
  ``SEVERAL``), the limit is doubled (up to ``concurrency``), and kept only if the jobs go
  ``MARGIN`` faster.

A trial is judged on its first window measured when that window is ``MARGIN`` clear of the
rate that keeps it, either way, else on the mean of its first ``TRIAL_WINDOWS``: windows of a
tenth of a second scatter by 10 % and more (jobs that take turns on a database lock), and one
of them against the best of several would put back a limit that costs nothing in speed.

A trial of the limit that fails puts it back, and no trial is made for ``HOLD`` windows. The one
change made without a trial: below ``SPARE`` of a CPU, with threads waiting outside, the
limit doubles, since the threads then wait on something else (Redis, HTTP, a database). Above
``SEVERAL`` the jobs evidently run on several CPUs at once: no lower limit is tried, and
while threads wait outside a higher one is, as below ``BUSY``.

With ``cpu_affinity: auto`` (the default) the threads' CPU mask is tried the same way
(``affinity.py``). While the process keeps one CPU's worth busy, its threads are kept to the
CPU it runs on, before any lower limit is tried, and stay kept only if the jobs go ``MARGIN``
faster. Kept to one CPU, they are let go on trial once the process no longer keeps that CPU
busy (its jobs wait on something else, or another process shares the CPU), and every
``PIN_HOLD`` windows (jobs that now run outside the interpreter lock cannot show it on one
CPU); let go, they stay so unless the jobs lose ``MARGIN``. A mask that fails its trial
holds back only the next mask trial (``PIN_HOLD``), not the limit's: a process whose threads
gain nothing from one CPU may still gain from fewer threads (jobs that wait on a database
lock, where each thread more only adds hand-overs).

A thread inside for longer than ``STALLED`` seconds (a long job, an idle fetch waiting for
work) does not count against the limit, so a slow or stuck job never keeps the others out,
and an idle worker has every thread waiting on Redis as before. With
``adaptive_concurrency: false`` every thread is always admitted.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, NamedTuple

from ..log import logger
from .affinity import Affinity

#: seconds of measurement behind each change of the limit, once it holds ``WINDOW_JOBS``
#: jobs (a rate of a few jobs is noise), and at most ``LONGEST_WINDOW``
WINDOW = 0.1
WINDOW_JOBS = 50
LONGEST_WINDOW = 1.0
#: CPUs of use from which fewer threads are tried
BUSY = 0.85
#: CPUs of use above which no fewer threads are tried (10 threads handing the lock over
#: between two CPUs keep about 1.2 busy)
SEVERAL = 1.5
#: share of jobs a second a lower limit on trial may not lose, and a higher one must gain
MARGIN = 0.05
#: windows measured (after the one left out) before a trial is judged, on their mean
TRIAL_WINDOWS = 2
#: windows without a trial after one put the limit back
HOLD = 100
#: CPUs of use below which more threads may help
SPARE = 0.5
#: windows at a limit (the first left out) before a trial from it, and how far apart the
#: jobs a second of the last two may be: a burst's first windows run fewer jobs while its
#: threads start, and a trial measured against them would keep a limit that slows the rest
SETTLED = 3
STEADY = 0.15
#: seconds inside after which a thread no longer counts against the limit
STALLED = 0.1
#: windows from one trial of the threads' CPU mask (``cpu_affinity: auto``) to the next:
#: kept to one CPU, the threads are let go on trial this often, since jobs that turned to
#: running on several CPUs cannot show it while they have one
PIN_HOLD = 300


class Trial(NamedTuple):
    """A setting on trial."""

    #: puts the setting before back (given why)
    undo: Callable[[str], None]
    #: jobs a second before the trial
    before: float
    #: the share of ``before`` that keeps the setting on trial
    keep_at: float
    #: windows without a trial after one that fails
    hold: int


class Admission:
    """The gate before a processor's fetch. ``enter`` blocks while ``limit`` threads that
    entered less than ``STALLED`` seconds ago are inside; ``leave`` ends a thread's turn and,
    once a ``WINDOW`` has passed, moves the limit. A thread waiting outside looks again every
    ``STALLED`` seconds, and at once when the limit grows; a thread leaving wakes no one, since
    it takes its next turn itself and its connection is the warm one."""

    def __init__(self, most: int, adaptive: bool = True, *, affinity: Affinity | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self.most = most
        self.adaptive = adaptive and most > 1
        #: the threads' CPU mask, tried like the limit (``cpu_affinity: auto``), or None
        self.affinity = affinity if self.adaptive and Affinity.possible() else None
        self.limit = most
        self.clock, self.cpu = clock, cpu
        self.condition = threading.Condition()
        #: thread ident → monotonic time it entered
        self.inside: dict[int, float] = {}
        self.waiting = 0
        #: the window being measured: when it began, the process's CPU seconds then, its jobs
        self.window_at, self.window_cpu, self.jobs = clock(), cpu(), 0
        #: windows at this setting (the first left out of the rest), the jobs a second of those
        #: measured, summed and counted, and the last one's
        self.windows, self.summed, self.counted, self.last = 0, 0.0, 0, 0.0
        #: the setting on trial, if any
        self.trial: Trial | None = None
        #: windows left without a trial, after one that put its setting back
        self.hold = 0
        #: windows left before the CPU mask may be tried again
        self.pin_wait = 0

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
            elapsed = now - self.window_at
            if elapsed >= WINDOW and (self.jobs >= WINDOW_JOBS or elapsed >= LONGEST_WINDOW):
                self._adjust(now)

    def _room(self) -> bool:
        if len(self.inside) < self.limit:  # at the full limit, without a look at each thread
            return True
        fresh = self.clock() - STALLED
        return sum(1 for entered in self.inside.values() if entered > fresh) < self.limit

    def _adjust(self, now: float) -> None:
        used, seconds = self.cpu(), now - self.window_at
        share, rate = (used - self.window_cpu) / seconds, self.jobs / seconds
        full = self.jobs >= WINDOW_JOBS
        self.window_at, self.window_cpu, self.jobs = now, used, 0
        self.hold = max(0, self.hold - 1)
        self.pin_wait = max(0, self.pin_wait - 1)
        self.windows += 1
        if self.windows == 1:
            return  # threads above a new limit were still ending their turns: not a measure
        steady = abs(rate - self.last) <= STEADY * max(rate, self.last)
        self.summed, self.counted, self.last = self.summed + rate, self.counted + 1, rate
        if self.trial is not None:
            if self.counted >= TRIAL_WINDOWS or self._clear(rate):
                self._judge()
            return  # the next change comes a window after the verdict, as after any change
        wanted = self.waiting and self.limit < self.most
        grown, why = min(self.most, self.limit * 2), f"{share:.2f} CPUs busy"
        bound = BUSY <= share <= SEVERAL
        if wanted and share < SPARE:
            self._set(grown, why)
        elif self.windows < SETTLED or not steady or self.hold:
            return
        elif full and self._pin_due(bound):
            self._try_pin(why)
        elif bound and self.limit > 1:
            self._try_limit(max(1, self.limit // 2), why)
        elif wanted and not bound:
            self._try_limit(grown, why)

    def _pin_due(self, bound: bool) -> bool:
        """Threads on any CPU and the process bound by Python: keep them to one, unless a
        change of the mask was tried less than ``PIN_HOLD`` windows ago. Kept to one: let
        them go once the process no longer keeps that CPU busy, or ``PIN_HOLD`` windows on.
        Asked only after a window of ``WINDOW_JOBS`` jobs or more: an idle process's mask
        costs nothing, and the next burst finds its threads where the last one left them."""
        if self.affinity is None:
            return False
        if self.affinity.cpu is None:
            return bound and not self.pin_wait
        return not bound or not self.pin_wait

    def _try_pin(self, why: str) -> None:
        """Kept to one CPU on trial the jobs must gain ``MARGIN``; let go, they may not lose
        that much. Both against the last window, not the mean at this setting: a change of
        what the process does (its share of a CPU) calls for the trial, and the windows before
        that change ran other work."""
        self.pin_wait, before = PIN_HOLD, self.last
        if self.affinity.cpu is None:
            if self._mask(self.affinity.keep):
                self._start_trial(self._release, before, 1 + MARGIN,
                                  f"threads kept to CPU {self.affinity.cpu}", why, hold=0)
        elif self._mask(self.affinity.release):
            self._start_trial(self._keep, before, 1 - MARGIN, "threads on any CPU", why, hold=0)

    def _keep(self, why: str) -> None:
        if self._mask(self.affinity.keep):
            self._anew(f"threads kept to CPU {self.affinity.cpu}", why)

    def _release(self, why: str) -> None:
        if self._mask(self.affinity.release):
            self._anew("threads on any CPU", why)

    def _mask(self, change: Callable[[], object]) -> bool:
        """Make a change of the threads' CPU mask; if Linux refuses it, say so and try no
        mask again."""
        try:
            change()
            return True
        except OSError as exc:
            logger.warning("cpu_affinity: auto: the worker's threads stay on the CPUs they "
                           "have, since Linux refused a change of them (%s)", exc)
            self.affinity = None
            return False

    def _try_limit(self, limit: int, why: str) -> None:
        """A lower limit on trial may not lose ``MARGIN``, a higher one must gain that much."""
        before, rate = self.limit, self.summed / self.counted
        self._limit_to(limit)
        self._start_trial(lambda undo_why: self._set(before, undo_why), rate,
                          1 - MARGIN if limit < before else 1 + MARGIN, self._taking(), why)

    def _start_trial(self, undo: Callable[[str], None], before: float, keep_at: float,
                     what: str, why: str, hold: int = HOLD) -> None:
        self.trial = Trial(undo, before, keep_at, hold)
        self._anew(what, f"{why}, on trial")

    def _clear(self, rate: float) -> bool:
        """Whether one window decides the trial: ``MARGIN`` beyond the rate that keeps it,
        either way (fewer threads running jobs much faster, or much slower)."""
        keeps, band = self.trial.before * self.trial.keep_at, self.trial.before * MARGIN
        return not keeps - band <= rate < keeps + band

    def _judge(self) -> None:
        """Keep the setting on trial if its windows ran ``keep_at`` times the jobs a second
        before it; else put the one before back, and make no trial for the trial's ``hold``
        windows."""
        trial, rate = self.trial, self.summed / self.counted
        self.trial = None
        if rate < trial.before * trial.keep_at:
            trial.undo(f"{rate:.0f} jobs/s on trial against {trial.before:.0f}")
            self.summed, self.counted, self.hold = trial.before, 1, trial.hold

    def _set(self, limit: int, why: str) -> None:
        self._limit_to(limit)
        self._anew(self._taking(), why)

    def _limit_to(self, limit: int) -> None:
        if limit > self.limit:
            self.condition.notify_all()
        self.limit = limit

    def _taking(self) -> str:
        return f"{self.limit} of {self.most} threads take jobs"

    def _anew(self, what: str, why: str) -> None:
        """Start measuring a new setting."""
        self.windows, self.summed, self.counted, self.last = 0, 0.0, 0, 0.0
        logger.debug("adaptive_concurrency: %s (%s)", what, why)
