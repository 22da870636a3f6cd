"""The manager owns a worker child's processor threads: ``start``, ``quiet``, ``stop(deadline)``.

Runs in the worker child's main thread. ``stop`` quiets the processors, waits for running jobs
until the deadline, then abandons the ones still running (Sidekiq's ``Manager#hard_shutdown``):
each hands over what it held (``Processor.abandon``), those jobs go back to the front of their
queues and the finished ones are acknowledged *before* the process ends (``bulk_requeue``),
then ``Shutdown`` is raised in their threads so the jobs' ``finally`` blocks run. The event
loop of coroutine jobs (``aio_runner.py``) stops last, under the same deadline, so that no
thread hands it a job while it pushes back its own. It is worse to lose a job than to run it
twice.
"""

from __future__ import annotations

import time

from .coroutines import CoroutineRunner
from .fetch import IDLE_TIMEOUT, Held, bulk_requeue
from ..log import logger
from .processor import Processor


class Manager:
    def __init__(self, context) -> None:
        self.context = context
        self.processors = [Processor(i, context) for i in range(context.config.concurrency)]
        #: the event loop of coroutine jobs, which processors hand them to
        self.coroutines = context.coroutines = CoroutineRunner(context)

    def start(self) -> None:
        for processor in self.processors:
            processor.start()

    def quiet(self) -> None:
        if not self.context.quiet.is_set():
            logger.info("quiet: no new jobs will start")
            self.context.quiet.set()

    @property
    def busy(self) -> int:
        return sum(1 for p in self.processors if p.current is not None) + self.coroutines.busy

    @property
    def jobs_done(self) -> int:
        return sum(p.jobs_done for p in self.processors) + self.coroutines.jobs_done

    def running(self) -> list[tuple[Processor, object]]:
        """(processor, fetched job) for every job running now, a coroutine job's record
        standing for its processor; read by the heartbeat."""
        running = [(p, p.current) for p in self.processors]
        running += [(job, job.fetched) for job in list(self.coroutines.running.values())
                    if job.started]
        return [(p, job) for p, job in running if job is not None and type(job.text) is str]

    def stop(self, deadline: float) -> int:
        """Quiet, wait for running jobs until ``deadline`` (monotonic), then requeue the rest.

        Returns how many jobs were pushed back at the deadline."""
        self.quiet()
        for processor in self.processors:
            if not processor.abandoned:  # a thread stuck past its time_limit is not waited for
                processor.join(max(0.0, deadline - time.monotonic()))
        for processor in self.processors:
            if processor.is_alive() and processor.current is None and not processor.abandoned:
                # Idle in a blocking fetch: let it return and release what it holds, so that
                # no thread is left fetching when the running jobs are pushed back below.
                processor.join(IDLE_TIMEOUT + 1.0)
        survivors = [p for p in self.processors if p.is_alive()]
        requeued = self._requeue([p.abandon() for p in survivors])
        for processor in survivors:
            processor.kill()
        # After the threads: none hands over a coroutine job any more.
        requeued += self.coroutines.stop(deadline)
        self.context.stopped.set()
        if survivors:
            logger.warning("shutdown deadline reached: %d running job(s) pushed back to their "
                           "queues", requeued)
        return requeued

    def _requeue(self, held: list[Held]) -> int:
        if not held:
            return 0
        redis = self.context.make_redis()
        try:
            return bulk_requeue(redis, self.context.keys, held)
        except Exception as exc:
            logger.error("could not requeue the jobs of %d abandoned thread(s) (%s); they stay "
                         "in their private lists and will be recovered", len(held), exc)
            return 0
        finally:
            redis.close()
