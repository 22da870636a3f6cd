"""The manager owns a worker child's processor threads: ``start``, ``quiet``, ``stop(deadline)``.

Runs in the worker child's main thread. ``stop`` quiets the processors, waits for running jobs
until the deadline, then abandons the ones still running: their jobs go back to the front of
their queues and their finished jobs are acknowledged *before* the process ends, and
``Shutdown`` is raised in their threads so the jobs' ``finally`` blocks run. It is worse to lose
a job than to run it twice.
"""

from __future__ import annotations

import ctypes
import time

from .errors import Shutdown
from .fetch import IDLE_TIMEOUT
from .log import logger
from .processor import Processor


class Manager:
    def __init__(self, context) -> None:
        self.context = context
        self.processors = [Processor(i, context) for i in range(context.config.concurrency)]

    def start(self) -> None:
        for processor in self.processors:
            processor.start()

    def quiet(self) -> None:
        if not self.context.quiet.is_set():
            logger.info("quiet: no new jobs will start")
            self.context.quiet.set()

    @property
    def busy(self) -> int:
        return sum(1 for p in self.processors if p.current is not None)

    @property
    def jobs_done(self) -> int:
        return sum(p.jobs_done for p in self.processors)

    def running(self) -> list[tuple[Processor, object]]:
        """(processor, fetched job) for every job running now; read by the heartbeat."""
        return [(p, p.current) for p in self.processors if p.current is not None]

    def stop(self, deadline: float) -> int:
        """Quiet, wait for running jobs until ``deadline`` (monotonic), then requeue the rest.

        Returns how many jobs were pushed back at the deadline."""
        self.quiet()
        for processor in self.processors:
            processor.join(max(0.0, deadline - time.monotonic()))
        for processor in self.processors:
            if processor.is_alive() and processor.current is None:
                # Idle in a blocking fetch: let it return and release what it holds, so that
                # no thread is left fetching when the running jobs are pushed back below.
                processor.join(IDLE_TIMEOUT + 1.0)
        survivors = [p for p in self.processors if p.is_alive()]
        requeued = sum(self._abandon(p) for p in survivors)
        self.context.stopped.set()
        if survivors:
            logger.warning("shutdown deadline reached: %d running job(s) pushed back to their "
                           "queues", requeued)
        return requeued

    def _abandon(self, processor: Processor) -> int:
        with processor.lock:
            processor.abandoned = True
            held = ([processor.current] if processor.current else []) + processor.pending
            processor.batch = []
        try:
            processor.fetcher.release(held)
            processor.fetcher.flush_stats()
        except Exception as exc:
            logger.error("could not requeue %d job(s) of %s (%s); they stay in its private "
                         "list and will be recovered", len(held), processor.name, exc)
            return 0
        _raise_in_thread(processor, Shutdown)
        return len(held)


def _raise_in_thread(thread, exception: type[BaseException]) -> None:
    """Raise ``exception`` in ``thread`` at its next bytecode (a job in C code sees it later)."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                   ctypes.py_object(exception))
