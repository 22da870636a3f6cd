"""The manager owns a worker child's processor threads: ``start``, ``quiet``, ``stop(deadline)``.

Runs in the worker child's main thread. ``stop`` quiets the processors, waits for running jobs
until the deadline, then abandons the ones still running (Sidekiq's ``Manager#hard_shutdown``):
each hands over what it held (``Processor.abandon``), those jobs go back to the front of their
queues and the finished ones are acknowledged *before* the process ends (``bulk_requeue``),
then ``Shutdown`` is raised in their threads so the jobs' ``finally`` blocks run. The event
loop of coroutine jobs (``coroutines.py``) stops last, under the same deadline, so that no
thread hands it a job while it pushes back its own. It is worse to lose a job than to run it
twice.

Which threads run a job is read from the process's ``WorkState`` (``workstate.py``), where
the processors publish it, not from their fields; so is how many of its running jobs are
coroutine jobs (``coroutines_among``), for the process title and the heartbeat.
"""

from __future__ import annotations

import time

from .admission import Admission
from .affinity import Affinity
from .coroutines import CoroutineRunner
from .fetch import IDLE_TIMEOUT, Held, bulk_requeue
from ..log import logger
from .processor import Processor


class Manager:
    def __init__(self, *, services) -> None:
        self.services = services
        #: the event loop of coroutine jobs, which processors hand them to
        self.coroutines = CoroutineRunner(services=services)
        config = services.config
        #: how many processors take work at once (``admission.py``)
        self.admission = Admission(
            config.concurrency, config.adaptive_concurrency,
            affinity=Affinity() if config.cpu_affinity == "auto" else None)
        self.processors = [Processor(index=i, services=services, coroutines=self.coroutines,
                                     admission=self.admission)
                           for i in range(config.concurrency)]

    def start(self) -> None:
        for processor in self.processors:
            processor.start()

    def coroutines_among(self, tags) -> int:
        """How many of ``tags`` (runners in the ``WorkState``) are coroutine jobs: those that
        are no processor thread's ident. Counted from one copy of the ``WorkState``, so thread
        jobs (the rest) never read above ``concurrency``."""
        threads = {processor.ident for processor in self.processors}
        return sum(1 for tag in tags if tag not in threads)

    def quiet(self) -> None:
        if not self.services.quiet.is_set():
            logger.info("quiet: no new jobs will start")
            self.services.quiet.set()

    def stop(self, deadline: float) -> int:
        """Quiet, wait for running jobs until ``deadline`` (monotonic), then requeue the rest.

        Returns how many jobs were pushed back at the deadline."""
        self.quiet()
        for processor in self.processors:
            if not processor.abandoned:  # a thread stuck past its time_limit is not waited for
                processor.join(max(0.0, deadline - time.monotonic()))
        work_state = self.services.work_state
        for processor in self.processors:
            if (processor.is_alive() and not work_state.runs(processor.ident)
                    and not processor.abandoned):
                # Idle in a blocking fetch: let it return and release what it holds, so that
                # no thread is left fetching when the running jobs are pushed back below.
                processor.join(IDLE_TIMEOUT + 1.0)
        survivors = [p for p in self.processors if p.is_alive()]
        requeued = self._requeue([p.abandon() for p in survivors])
        for processor in survivors:
            processor.kill()
        # After the threads: none hands over a coroutine job any more.
        requeued += self.coroutines.stop(deadline)
        self.services.stopped.set()
        if survivors:
            logger.warning("shutdown deadline reached: %d running job(s) pushed back to their "
                           "queues", requeued)
        return requeued

    def _requeue(self, held: list[Held]) -> int:
        if not held:
            return 0
        redis = self.services.make_redis()
        try:
            return bulk_requeue(redis, self.services.keys, held)
        except Exception as exc:
            logger.error("could not requeue the jobs of %d abandoned thread(s) (%s); they stay "
                         "in their private lists and will be recovered", len(held), exc)
            return 0
        finally:
            redis.close()
