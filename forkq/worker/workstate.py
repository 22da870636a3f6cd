"""What a worker process runs now, published for the threads that watch it (Sidekiq's
``Processor::WORK_STATE``).

One ``WorkState`` per worker process (``Services.work_state``), guarded by its own lock. The
runners write: a processor thread when a job of its batch starts and ends, the coroutine
runner when a coroutine job starts on the loop and when its end is acknowledged. The watchers
read a copy: the heartbeat (busy count, ``:work`` entries), the manager (which threads are
idle at shutdown) and the worker's tick (busy count, jobs done, for the child's title and
``max_jobs``). No watcher reads a runner's own fields.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Work:
    """One running job as the watchers see it; never changed once made."""

    queue: str
    #: the job's JSON text; the raw ``bytes`` when they are not valid UTF-8
    text: str | bytes
    #: epoch seconds at which it started
    run_at: float


class WorkState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: tag of the runner (a thread's ident, a coroutine job's tag) -> its running job,
        #: as ``Work``'s fields
        self._work: dict[int, tuple[str, str | bytes, float]] = {}
        self._jobs_done = 0

    def started(self, tag: int, queue: str, text: str | bytes,
                run_at: float | None = None) -> None:
        # A plain tuple, made a ``Work`` only when read: a job starts far more often than a
        # watcher looks (the heartbeat, every few seconds).
        work = (queue, text, time.time() if run_at is None else run_at)
        with self._lock:
            self._work[tag] = work

    def replaced(self, tag: int, queue: str, text: str | bytes, run_at: float) -> None:
        """``started`` for a runner whose entry exists and which no other thread ends
        meanwhile (a processor thread between the jobs of a batch: it and ``finished`` run
        under its own lock). Without this lock, which costs as much as a few Python calls: a
        value replaced in place is one store, and neither resizes the dict nor breaks a copy
        being made."""
        self._work[tag] = (queue, text, run_at)

    def finished(self, tag: int, done: int = 0) -> None:
        """The runner ``tag`` runs nothing now; ``done`` counts the jobs it ran to their end
        (not rescheduled, expired or pushed back), as ``max_jobs`` counts them."""
        self.finished_many((tag,), done)

    def finished_many(self, tags, done: int) -> None:
        """``finished`` for each of ``tags`` (coroutine jobs acknowledged together), ``done``
        of which count."""
        with self._lock:
            for tag in tags:
                self._work.pop(tag, None)
            self._jobs_done += done

    def running(self) -> dict[int, Work]:
        """A copy: runner tag -> the job it runs."""
        with self._lock:
            work = list(self._work.items())
        return {tag: Work(*entry) for tag, entry in work}

    def runs(self, tag: int) -> bool:
        with self._lock:
            return tag in self._work

    @property
    def jobs_done(self) -> int:
        with self._lock:
            return self._jobs_done
