"""One processor thread: fetch, run through the server middleware, acknowledge, repeat.

Owned by the manager; runs in a worker child. Each processor has its own Redis connection and
private lists, so the busy path shares no lock with other threads. Steps of a batch:
take each fetched job in order (stop taking when the process is quieting; the unstarted ones
go back to the front of their queues), parse it (a malformed payload goes straight to the dead
set, ``payload.py``), resolve its class (an unknown class is an ordinary, retried error), run
it (writing its result record when the payload asks, ``results.py``), and on failure hand it
to the retry writer; what a job leaves (result record, retry or death, unique lock, metrics) is
written by the process's ``OutcomeWriter`` (``outcome.py``), which coroutine jobs share. A
coroutine job is handed to the process's event loop instead (``coroutines.py``), which takes it
out of this thread's private list first. The batch is acknowledged by the next fetch. One job
is three steps: ``_start`` (parse, resolve, expiry, hand-over, start records), ``_run``
(perform under its time limits), then ``_succeeded`` or ``_failed``. The job running now is
published to the process's ``WorkState`` (``workstate.py``), where the heartbeat, the manager
and the worker's tick read it, instead of reading this thread's fields; what the batch's ended
jobs leave for them (the jobs done, the stat counters, the job metrics) is published once,
when it ends (``_publish``).

The batch is a unit of work with one owner, this thread: no other thread reads or clears it.
Whatever goes wrong while handling one job (a bug, a payload that breaks the retry writer)
buries *that* job with the reason and the batch goes on; an error that escapes a batch puts
its unfinished jobs back before the thread fetches again. Nothing is acknowledged while a
job of the batch is neither finished nor back in a queue.

Flow control around a job is ``flow/``'s: an expired job is discarded before it starts, a
unique lock released at start or success, a job over a limiter's limit rescheduled (not failed),
and time limits watched by the process's watchdog thread, which at a hard limit takes the batch
from this thread (``time_limit_hit``) as the manager does at shutdown.

A cancelled job (``flow/cancel.py``) is dropped before it starts when the process knows of
its cancel or the fetch flagged it; while it runs, the control watch has ``Cancelled`` raised
in this thread (``cancel_if_running``), once; a job still running ``CANCEL_GRACE`` later is
taken from the thread as at a hard time limit (``cancel_stuck``): ``cancelling.py``. Either way it is written as
cancelled, never retried.

At the shutdown deadline the manager *abandons* a processor still running a job (Sidekiq's
``Processor#kill``): ``abandon()`` hands over what the thread held, which the manager pushes
back (``fetch.bulk_requeue``), then ``kill()`` raises ``Shutdown`` in the thread, which from
then on writes nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable

from ..connection.health import retrying
from ..errors import Cancelled, MalformedJobError, Shutdown, SoftTimeLimitExceeded
from ..flow import Flow, time_limit_error
from ..flow.timelimit import clear_pending, raise_in
from ..job import resolve
from ..limiter import OverLimit
from ..log import current_job, job_context, job_extra, job_log, logger, thread_tag
from ..payload import display_class, error_class_name, parse
from .cancelling import CancelHandling
from .fetch import Fetched, Held
from .outcome import unhandled_reason, write_time_limited
from .retry import ISOLATE_KEY

_ISOLATE_MARK = f'"{ISOLATE_KEY}"'


@dataclass(eq=False, slots=True)
class Started:
    """A job this thread started: what its end needs."""

    fetched: Fetched
    payload: dict[str, Any]
    job_class: type | None
    keeps_result: bool
    #: whether its success writes anything (``OutcomeWriter.writes_at_success``)
    writes_at_success: bool
    verbose: bool
    #: what its log lines carry (``log.job_context``)
    context: tuple
    #: the name its metrics count it under
    class_name: str
    #: the result record as written at start (saves a read at the end)
    record: dict | None = None
    #: ``perf_counter`` when perform began
    began: float = 0.0
    #: its time-limit watch, if it has limits
    limited: Any = None


def metrics_class(shown: str, job_class) -> str:
    """The name a job's metrics count it under: its ``display_class`` (``shown``), or
    "unknown" when its class did not resolve."""
    return shown if job_class else "unknown"


class Processor(CancelHandling, threading.Thread):
    def __init__(self, *, index: int, services, coroutines, admission) -> None:
        super().__init__(name=f"processor-{index}", daemon=True)
        self.services = services
        self.outcome = services.outcome
        self.work_state = services.work_state
        self.cancels = services.cancels
        #: the event loop of coroutine jobs, which this thread hands them to
        self.coroutines = coroutines
        #: the gate its fetches wait at while other threads keep the interpreter busy
        self.admission = admission
        #: guards the unit of work against ``abandon`` (the only call from another thread)
        self.lock = threading.Lock()
        #: the job running now (this thread's; published to ``work_state`` for the others)
        self.current: Fetched | None = None
        #: this thread's tag in ``work_state`` (its ident, read once: a property call a job)
        self.work_tag = 0
        #: the metrics record of each job of this batch that ended (counts as done and in
        #: the stat counters), published at the batch's end (``_publish``)
        self.ended: list[tuple[str, str, float, bool]] = []
        self.run_at = 0.0
        #: the batch being run and the index of its first job not yet started
        self.batch: list[Fetched] = []
        self.next_index = 0
        self.abandoned = False
        self.redis = services.make_redis()
        self.fetcher = services.make_fetcher(self.redis, index)
        self.flow = Flow(redis=self.redis, keys=services.keys, observer=services.observer,
                         attempt=self._attempt, source=self.fetcher,
                         watchdog=services.watchdog)
        #: the time-limit watch of the running job, if it has limits
        self.limited = None
        #: a coroutine job was handed over since the last flush (which then has work to do)
        self.set_aside = False
        #: its batch handed a job over: the next fetch waits for room in the loop first
        self.handed_over = False
        #: the job in perform now, and the watch of its cancel (once a job; ended under ``lock``,
        #: see ``_run``)
        self.performing: Started | None = None
        self.cancel_watch = None
        self.cancels.listen(self.cancel_if_running)

    # --- the loop

    def run(self) -> None:
        quiet = self.services.quiet
        self.tid = thread_tag()
        self.work_tag = self.ident
        try:
            while not quiet.is_set() and not self.abandoned:
                try:
                    self._step()
                except Exception:
                    logger.exception("processor error; the jobs of its batch not finished go "
                                     "back to their queues")
                    self._put_back_unfinished()
                    quiet.wait(1.0)
        except Shutdown:
            return
        finally:
            self._finish()

    def _step(self) -> None:
        if not self.admission.enter(self._stopping):
            return
        taken = 0
        try:
            taken = self._take_turn()
        finally:
            self.admission.leave(taken)

    def _take_turn(self) -> int:
        """Fetch (or wait for) a batch and run it; how many jobs it held."""
        if self.handed_over:
            self.handed_over = False
            room = self.coroutines.room(self._stopping)
            if self._stopping():  # jobs fetched now would only go back to their queues
                return 0
            self.fetcher.batch = min(self.fetcher.batch, room)
        # A fetch refused for its data (a queue key a producer made a string) has no job to
        # fail: it is waited out, logged once, until the key is fixed.
        jobs = self._retrying(self.fetcher.fetch, refusals="fetch")
        if not jobs and not self.services.quiet.is_set():
            jobs = self._retrying(lambda: self.fetcher.wait(self.services.quiet),
                                  refusals="fetch")
        if not jobs:
            return 0
        self._run_batch(jobs)
        return len(jobs)

    def _stopping(self) -> bool:
        return self.services.quiet.is_set() or self.abandoned

    def _run_batch(self, jobs: list[Fetched]) -> None:
        self.batch, self.next_index = jobs, 0
        started = time.perf_counter()
        try:
            for position, fetched in enumerate(jobs):
                if not self._begin(fetched, position):
                    return
                isolated = len(jobs) > 1 and type(fetched.text) is str and \
                    _ISOLATE_MARK in fetched.text
                if isolated:
                    self._isolate(fetched)
                try:
                    self._process(fetched)
                except Shutdown:
                    raise
                except BaseException as exc:
                    logger.error("could not handle a job of queue %s", fetched.queue,
                                 exc_info=exc)
                    self.outcome.bury(self.redis, fetched, unhandled_reason(exc), self._attempt)
                    self._count(failed=1)
                # Without ``lock`` (a lock costs as much as a few Python calls, once a job):
                # ``abandon`` (which holds it) reads ``current`` before this write, and pushes
                # the ended job back, which then runs again as a job abandoned just before its
                # end would, or after it, and leaves it.
                self.current = None
                if self.abandoned or isolated:
                    return
            self.batch = []
        finally:
            with self.lock:
                if not self.abandoned:
                    self._publish()
            self.coroutines.flush(self.ident)
            self.fetcher.seconds_per_job = (time.perf_counter() - started) / len(jobs)

    def _begin(self, fetched: Fetched, position: int) -> bool:
        """Make ``fetched`` the running job and publish it; False when the thread must stop
        taking jobs (quieting, or abandoned)."""
        with self.lock:
            if self.abandoned or self.services.quiet.is_set():
                return False
            self.current, self.next_index = fetched, position + 1
            self.run_at = time.time()
            if position:  # the entry of the batch's previous job, kept for it (``_publish``)
                self.work_state.replaced(self.work_tag, fetched.queue, fetched.text, self.run_at)
            else:
                self.work_state.started(self.work_tag, fetched.queue, fetched.text, self.run_at)
        return True

    def _publish(self) -> None:
        """Tell the watchers what the batch's ended jobs left, once a batch rather than once a
        job (the caller holds ``lock``): the thread runs nothing now (its ``work_state`` entry,
        kept between the batch's jobs, goes), the jobs done, their stat counts (sent by the
        next fetch, which comes after the batch anyway) and their metrics. Their readers (the
        heartbeat, the worker's tick, the metrics flushes) look every second or more, and a
        batch holds about ``fetch.HOARD_SECONDS`` of work at the thread's recent pace; only
        a slow job after fast ones in one batch holds back their counts until it ends."""
        ended, self.ended = self.ended, []
        self.work_state.finished(self.work_tag, len(ended))
        if ended:
            self._count(len(ended), sum(map(itemgetter(3), ended)))  # (the failed flags)
            self.outcome.finished_many(ended)

    def _isolate(self, fetched: Fetched) -> None:
        """A job recovered from a crashed batch runs alone, so a second crash is charged to it."""
        pending = self.batch[self.next_index:]
        if self._retrying(lambda: self.fetcher.release(pending, keep=fetched)) is not None:
            with self.lock:
                self.batch, self.next_index = [fetched], 1

    def _put_back_unfinished(self) -> None:
        """After an error escaped a batch: its running and unstarted jobs go back to the queues
        (the release pushes back only what is still in the private list)."""
        with self.lock:
            held = self._take_unfinished()
        self._attempt(lambda: self.fetcher.release(held))

    def _take_unfinished(self) -> list[Fetched]:
        """Detach the running and unstarted jobs of the batch (the caller holds ``lock``)."""
        jobs = (self.coroutines.take_pending(self.ident) + ([self.current] if self.current else [])
                + self.batch[self.next_index:])
        self.batch, self.current = [], None
        self._publish()
        return jobs

    def _finish(self) -> None:
        with self.lock:
            if self.abandoned:
                return
            unfinished = self._take_unfinished()
        self._attempt(lambda: self.fetcher.release(unfinished))
        self._attempt(self.fetcher.flush_stats)
        self.fetcher.close()

    # --- the manager's side, at the shutdown deadline

    def abandon(self) -> Held:
        """Stop owning the batch: return the running and unstarted jobs and the stat deltas,
        for the caller to push back. The thread writes nothing after this."""
        with self.lock:
            return self._abandon()

    def _abandon(self) -> Held:
        self.abandoned = True
        jobs = self._take_unfinished()
        return self.fetcher.held(jobs, known=bool(jobs))

    def kill(self) -> None:
        """Raise ``Shutdown`` in the thread at its next bytecode (a job in C code sees it
        later), so that the job's ``finally`` blocks run."""
        if self.ident is not None:
            raise_in(self.ident, Shutdown)

    # --- one job: start, run, finish

    def _process(self, fetched: Fetched) -> None:
        """Run one job to its end. While it runs, the lines logged in this thread carry its
        context (``log.current_job``)."""
        job = self._start(fetched)
        if job is None:
            return
        running = current_job.set(job.context)
        try:
            value = self._run(job)
        except Shutdown:
            raise
        except Cancelled:
            self._cancelled(job)
        except OverLimit as over:
            if not self.abandoned:
                self.outcome.postponed(self.redis, job.payload, self._attempt,
                                       keeps_result=job.keeps_result, record=job.record)
                self.flow.postpone(fetched, job.payload, over)
        except BaseException as exc:
            self._failed(job, exc)
        else:
            self._succeeded(job, value)
        finally:
            current_job.reset(running)

    def _start(self, fetched: Fetched) -> Started | None:
        """Parse and resolve the job, and do what comes before perform; None when it does not
        run in this thread (malformed, expired, or a coroutine job handed over)."""
        try:
            payload = parse(fetched.text)
        except MalformedJobError as exc:
            self.outcome.bury(self.redis, fetched, str(exc), self._attempt)
            self._count(failed=1)
            return None
        # (the first two: what ``_cancel_requested`` looks at, without its two calls a job)
        if (self.cancels.known or fetched.maybe_cancelled) and \
                self._cancel_requested(fetched, payload):
            self.outcome.cancelled(self.redis, payload, fetched.queue, self._attempt,
                                   started=False)
            return None
        job_class = resolve(payload["class"])
        if "expires_in" in payload and self.flow.expired(fetched, payload):
            return None
        if job_class is not None and job_class.coroutine:
            self.coroutines.hand_over(fetched, payload, job_class, redis=self.redis,
                                      private_key=self.fetcher.private_key,
                                      attempt=self._attempt, abandoned=lambda: self.abandoned)
            self.set_aside = self.handed_over = True
            return None
        if self.set_aside:  # coroutine jobs set aside don't wait for this one
            self.set_aside = False
            self.coroutines.flush(self.ident)
        # log.job_context's tuple, built here without the call: a tenth of a µs a job
        shown = display_class(payload)
        context = (shown, payload.get("jid"), fetched.queue)
        keeps_result = self.outcome.keeps_result(job_class, payload)
        job = Started(fetched, payload, job_class, keeps_result,
                      self.outcome.writes_at_success(payload, keeps_result), job_log.enabled,
                      context, metrics_class(shown, job_class))
        if job.verbose:
            job_log.write(self.tid, job.context, "start")
        if job.keeps_result:
            job.record = self.outcome.started(self.redis, payload, self._attempt)
        if job_class is not None and "unique_digest" in payload:
            self.outcome.unlock(self.redis, payload, "start", self._attempt)
        return job

    def _run(self, job: Started) -> Any:
        """Perform the job under its time limits, if it has any."""
        payload = job.payload
        limited = None
        if "time_limit" in payload or "soft_time_limit" in payload:
            limited = self.flow.watch(payload, self.soft_limit_hit, lambda limit, entry: (
                self.time_limit_hit(job.fetched, payload, job.job_class, limit, entry)))
        job.began = time.perf_counter()
        # Written without ``lock``, which its readers (``cancel_if_running``, ``cancel_stuck``)
        # hold: one write, seen or not; a ``Cancelled`` raised before the ``try`` below is
        # handled by ``_process`` as any cancel. Only the end must be atomic (``_stop_performing``).
        self.limited = job.limited = limited
        self.performing = job
        try:
            return self.outcome.perform(job.job_class, payload, job.fetched.queue)
        finally:
            if self._stop_performing(job):
                raise Cancelled(f"cancelled while running (jid={payload.get('jid')})")

    def _stop_performing(self, job: Started) -> bool:
        """The job left perform (repeatable: a cancel's exception may arrive in the middle):
        no watch calls back any more. True when a cancel was raised in this thread for it; an
        exception of it not seen yet is withdrawn (the caller ends the job as cancelled)."""
        with self.lock:
            # Under the lock: time_limit_hit and cancel_if_running check these there, and
            # must not act on a job whose perform has returned.
            self.performing = self.limited = None
            watch, self.cancel_watch = self.cancel_watch, None
        if job.limited is not None:
            self.flow.unwatch(job.limited, self.ident)
        if watch is None:
            return False
        watch.close()
        clear_pending(self.ident)
        return True

    def _failed(self, job: Started, exc: BaseException) -> None:
        elapsed = time.perf_counter() - job.began
        if self.abandoned:
            return
        if self.cancels.requested(job.payload.get("jid")):
            self._cancelled(job)  # it failed once cancelled: not retried
            return
        self.outcome.failed(self.redis, job.job_class, job.payload, job.fetched.queue, exc,
                            job_extra(job.context, elapsed), self._attempt,
                            keeps_result=job.keeps_result, record=job.record)
        self._finished(job, elapsed, failed=True)

    def _succeeded(self, job: Started, value: Any) -> None:
        elapsed = time.perf_counter() - job.began
        if job.verbose and not self.abandoned:  # abandoned: logged as failed at its limit
            job_log.write(self.tid, job.context, "done", elapsed)
        if job.writes_at_success:
            ack = (self.fetcher.private_key, job.fetched.text) if self.fetcher.reliable \
                else ("", "")
            self.outcome.succeeded(self.redis, job.payload, value, self._attempt,
                                   keeps_result=job.keeps_result, record=job.record,
                                   owned=self._owned, ack=ack)
        self._finished(job, elapsed, failed=False)

    def _cancelled(self, job: Started) -> None:
        self._stop_performing(job)
        elapsed = time.perf_counter() - job.began
        if self.abandoned:
            return
        self.outcome.cancelled(self.redis, job.payload, job.fetched.queue, self._attempt,
                               started=True, record=job.record)
        self._finished(job, elapsed, failed=False)

    def _finished(self, job: Started, elapsed: float, failed: bool) -> None:
        """The job ran to its end (not rescheduled, expired or pushed back): its record is
        kept for ``_publish``, which counts it (as done for ``max_jobs``, in the stat counters
        and the job metrics) when the batch ends."""
        if not self.abandoned:
            self.ended.append((job.fetched.queue, job.class_name, elapsed, failed))

    def _owned(self) -> bool:
        """Whether the running job is still this thread's (not pushed back at the deadline)."""
        return not self.abandoned

    def _count(self, processed: int = 1, failed: int = 0) -> None:
        """Add to the stat counters, which the next fetch sends (``fetch.py``)."""
        counters = self.fetcher.counters
        counters.processed += processed
        counters.failed += failed

    # --- time limits: called by the watchdog thread (``timelimit.py``)

    def soft_limit_hit(self) -> None:
        """Raise ``SoftTimeLimitExceeded`` in the job (the watchdog holds its lock, so the
        job's watch is still open)."""
        raise_in(self.ident, SoftTimeLimitExceeded)

    def time_limit_hit(self, fetched: Fetched, payload, job_class, limit: float, watch) -> None:
        """At a job's hard limit: take the batch from this thread (it writes nothing more),
        write the job to retry or dead with ``TimeLimitExceeded``, put the batch's other jobs
        back, then retire the process, whose other threads stop gracefully.

        The write to retry comes before the requeue that acknowledges the private list: a
        process killed between the two leaves the job in both, and it may run twice."""
        with self.lock:
            if self.abandoned or self.current is not fetched or self.limited is not watch:
                return
            held = self._abandon()
        exc = time_limit_error(payload, limit)
        self.outcome.tell_error_handlers(exc, payload, fetched.queue)
        summary = write_time_limited(self.services, held, payload, job_class, exc)
        self.outcome.finished(fetched.queue, metrics_class(display_class(payload), job_class),
                              time.time() - self.run_at, True)
        logger.error("fail: %s: %s; %s", error_class_name(exc), exc, summary,
                     extra=job_extra(job_context(payload, fetched.queue)))
        self.services.retire(f"jid={payload.get('jid')} ran past its time_limit of {limit:g} s")

    # --- Redis errors: back off, log transitions once, never drop what we hold

    def _retrying(self, call: Callable[[], Any], until_stopped: bool = True,
                  refusals: str = "") -> Any:
        """Run ``call`` until Redis answers. Gives up (returns None) only when the process is
        quieting (``until_stopped``) or stopped, or this processor was abandoned; what it held
        stays in its private lists and is recovered or requeued. A command Redis refuses for
        its data is raised (the caller fails that job), unless ``refusals``."""
        services = self.services
        stop = services.quiet if until_stopped else services.stopped
        return retrying(call, services.health, lambda delay: stop.wait(delay) or self.abandoned,
                        refusals)

    def _attempt(self, call: Callable[[], Any]) -> Any:
        """A write about a job: retried past the quiet, until the process stops."""
        return self._retrying(call, until_stopped=False)