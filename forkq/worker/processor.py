"""One processor thread: fetch, run through the server middleware, acknowledge, repeat.

Owned by the manager; runs in a worker child. Each processor has its own Redis connection and
private lists, so the busy path shares no lock with other threads. Steps of a batch:
take each fetched job in order (stop taking when the process is quieting; the unstarted ones
go back to the front of their queues), parse it (a malformed payload goes straight to the dead
set, ``payload.py``), resolve its class (an unknown class is an ordinary, retried error), run
it (writing its result record when the payload asks, ``results.py``), and on failure hand it
to the retry writer. A coroutine job is handed to the process's event loop instead
(``aio_runner.py``), which takes it out of this thread's private list first. The batch is
acknowledged by the next fetch.

The batch is a unit of work with one owner, this thread: no other thread reads or clears it.
Whatever goes wrong while handling one job (a bug, a payload that breaks the retry writer)
buries *that* job with the reason and the batch goes on; an error that escapes a batch puts
its unfinished jobs back before the thread fetches again. Nothing is acknowledged while a
job of the batch is neither finished nor back in a queue.

Flow control around a job is ``flow.py``'s: an expired job is discarded before it starts, a
unique lock released at start or success, a job over a limiter's limit rescheduled (not failed),
and time limits watched by the process's watchdog thread, which at a hard limit takes the batch
from this thread (``time_limit_hit``) as the manager does at shutdown:

At the shutdown deadline the manager *abandons* a processor still running a job (Sidekiq's
``Processor#kill``): ``abandon()`` hands over what the thread held, which the manager pushes
back (``fetch.bulk_requeue``), then ``kill()`` raises ``Shutdown`` in the thread, which from
then on writes nothing.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any, Callable

import redis as redis_py

from ..client import new_jid
from ..dead import envelope
from ..errors import MalformedJobError, Shutdown, SoftTimeLimitExceeded, UnknownJobError
from .fetch import Fetched, Fetcher, Held, bulk_requeue
from ..flow import Flow, time_limit_error
from ..connection.health import retrying
from ..job import hooks_of, resolve
from ..limiter import OverLimit
from ..log import job_log, logger, thread_tag
from ..payload import parse
from ..payload import error_class_name
from .retry import ISOLATE_KEY, error_message
from ..flow.timelimit import raise_in

_ISOLATE_MARK = f'"{ISOLATE_KEY}"'


class Processor(threading.Thread):
    def __init__(self, index: int, context) -> None:
        super().__init__(name=f"processor-{index}", daemon=True)
        self.index = index
        self.context = context
        #: guards the unit of work against ``abandon`` (the only call from another thread)
        self.lock = threading.Lock()
        #: the job running now (read by the heartbeat)
        self.current: Fetched | None = None
        self.run_at = 0.0
        #: the batch being run and the index of its first job not yet started
        self.batch: list[Fetched] = []
        self.next_index = 0
        self.abandoned = False
        self.jobs_done = 0
        self.redis = context.make_redis()
        self.fetcher = Fetcher(self.redis, context.keys, context.config.queues,
                               context.config.strict, context.private_lists(index),
                               context.config.fetch == "reliable", index, context.idle_plan)
        self.flow = Flow(self)
        #: the time-limit watch of the running job, if it has limits
        self.limited = None

    # --- the loop

    def run(self) -> None:
        quiet = self.context.quiet
        self.tid = thread_tag()
        self.observer = self.context.observer
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
        jobs = self._retrying(self.fetcher.fetch)
        if not jobs and not self.context.quiet.is_set():
            jobs = self._retrying(self.fetcher.wait)
        if jobs:
            self._run_batch(jobs)

    def _run_batch(self, jobs: list[Fetched]) -> None:
        self.batch, self.next_index = jobs, 0
        started = time.perf_counter()
        try:
            self._run_jobs(jobs)
        finally:
            self.fetcher.seconds_per_job = (time.perf_counter() - started) / len(jobs)

    def _run_jobs(self, jobs: list[Fetched]) -> None:
        quiet = self.context.quiet
        for position, fetched in enumerate(jobs):
            with self.lock:
                if self.abandoned or quiet.is_set():
                    return
                self.current, self.next_index = fetched, position + 1
                self.run_at = time.time()
            isolated = len(jobs) > 1 and type(fetched.text) is str and \
                _ISOLATE_MARK in fetched.text
            if isolated:
                self._isolate(fetched)
            try:
                self._process(fetched)
            except Shutdown:
                raise
            except BaseException as exc:
                self._bury_unhandled(fetched, exc)
            with self.lock:
                self.current = None
                if self.abandoned or isolated:
                    return
        self.batch = []

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
        self._retrying(lambda: self.fetcher.release(held), until_stopped=False)

    def _take_unfinished(self) -> list[Fetched]:
        """Detach the running and unstarted jobs of the batch (the caller holds ``lock``)."""
        jobs = ([self.current] if self.current else []) + self.batch[self.next_index:]
        self.batch, self.current = [], None
        return jobs

    def _finish(self) -> None:
        with self.lock:
            if self.abandoned:
                return
            unfinished = self._take_unfinished()
        self._retrying(lambda: self.fetcher.release(unfinished), until_stopped=False)
        self._retrying(self.fetcher.flush_stats, until_stopped=False)
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
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident),
                                                       ctypes.py_object(Shutdown))

    # --- one job

    def _process(self, fetched: Fetched) -> None:
        counters = self.fetcher.counters
        try:
            payload = parse(fetched.text)
        except MalformedJobError as exc:
            self._bury(fetched, str(exc))
            counters.processed += 1
            counters.failed += 1
            return
        job_class = resolve(payload["class"])
        if "expires_in" in payload and self.flow.expired(fetched, payload):
            return
        if job_class is not None and job_class.coroutine:
            self.context.coroutines.hand_over(self, fetched, payload, job_class)
            return
        verbose = job_log.enabled
        context = f"class={payload['class']} jid={payload.get('jid')}"
        if verbose:
            job_log.write(self.tid, context, "start")
        keeps_result = self.context.results.keeps(job_class, payload)
        if keeps_result:
            started_record = self._record_result("started", payload, self.context.identity)
        if job_class is not None and "unique_digest" in payload:
            self.flow.release(payload, "start")
        limited = self.flow.watch(fetched, payload, job_class) if (
            "time_limit" in payload or "soft_time_limit" in payload) else None
        started = time.perf_counter()
        failed = False
        try:
            self.limited = limited
            try:
                value = self._perform(job_class, payload, fetched.queue)
            finally:
                if limited is not None:
                    # Under the lock: time_limit_hit checks it there, and must not take a job
                    # whose perform has returned.
                    with self.lock:
                        self.limited = None
                    self.flow.unwatch(limited)
        except Shutdown:
            raise
        except OverLimit as over:
            if not self.abandoned:
                self.flow.postpone(fetched, payload, over)
            return
        except BaseException as exc:
            elapsed = time.perf_counter() - started
            if self.abandoned:
                return
            failed = True
            outcome = self._handle_failure(job_class, payload, fetched.queue, exc,
                                           f"{context} elapsed={elapsed:.3f}")
            if keeps_result:
                self._record_result("failed", payload, exc, outcome.decision.action == "retry",
                                    started_record)
        else:
            elapsed = time.perf_counter() - started
            if keeps_result:
                self._record_result("succeeded", payload, value, started_record)
            if verbose:
                job_log.write(self.tid, context, "done", elapsed)
            if "unique_digest" in payload and not self.abandoned:
                self.flow.release(payload, "success")
        if self.abandoned:
            return
        counters.processed += 1
        counters.failed += failed
        self.jobs_done += 1
        self.observer.job_finished(fetched.queue, payload["class"] if job_class else "unknown",
                                   elapsed, failed)

    def _perform(self, job_class, payload: dict[str, Any], queue: str) -> Any:
        """Run the job through the server middleware; return what ``perform`` returned."""
        if job_class is None:
            raise UnknownJobError(
                f"unknown job class {payload['class']!r}: no module listed under 'require:' "
                f"registers it (a producer may be deployed ahead of this worker)")
        instance = job_class()
        instance.jid = payload.get("jid")
        instance.payload = payload
        chain = self.context.middleware
        if not chain.server:
            return instance.perform(*payload["args"])
        # perform's own value, whether or not each middleware passes it on
        returned = []

        def run() -> Any:
            returned.append(instance.perform(*payload["args"]))
            return returned[0]

        chain.invoke_server(instance, payload, queue, run)
        return returned[0] if returned else None

    def _handle_failure(self, job_class, payload, queue, exc: BaseException, context):
        return handle_failure(self.context, self.redis, job_class, payload, queue, exc, context,
                              lambda write: self._retrying(write, until_stopped=False))

    def _record_result(self, step: str, payload: dict[str, Any], *details: Any) -> dict | None:
        """Write the job's result record (``results.ResultRecorder``); retried while Redis is
        away, like every write about a job. Returns the record as written."""
        write = getattr(self.context.results, step)
        return self._retrying(lambda: write(self.redis, payload, *details), until_stopped=False)

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
        tell_error_handlers(self.context.error_handlers, exc, payload, fetched.queue)
        summary = self._write_time_limited(held, payload, job_class, exc)
        self.observer.job_finished(fetched.queue, payload["class"] if job_class else "unknown",
                                   time.time() - self.run_at, True)
        logger.error("fail: %s: %s; %s", error_class_name(exc), exc, summary,
                     extra={"ctx": f"class={payload['class']} jid={payload.get('jid')}"})
        self.context.retire(f"jid={payload.get('jid')} ran past its time_limit of {limit:g} s")

    def _write_time_limited(self, held: Held, payload, job_class, exc) -> str:
        if not held.known:
            return "this thread's lists are left for recovery"
        hooks = hooks_of(job_class)
        redis = self.context.make_redis()
        try:
            outcome = self.context.retry_writer.handle(redis, payload, exc, hooks)
            held.jobs, held.processed, held.failed = (held.jobs[1:], held.processed + 1,
                                                      held.failed + 1)
            bulk_requeue(redis, self.context.keys, [held])
            return outcome.summary
        except redis_py.RedisError as error:
            return f"not written ({error}): this thread's lists are left for recovery"
        finally:
            redis.close()

    def _bury(self, fetched: Fetched, reason: str) -> None:
        """Send a payload forkq cannot run to the dead set, raw, with the reason."""
        bury(self.context, self.redis, fetched, reason,
             lambda call: self._retrying(call, until_stopped=False))

    def _bury_unhandled(self, fetched: Fetched, exc: BaseException) -> None:
        logger.error("could not handle a job of queue %s", fetched.queue, exc_info=exc)
        self._bury(fetched, unhandled_reason(exc))
        self.fetcher.counters.processed += 1
        self.fetcher.counters.failed += 1

    # --- Redis errors: back off, log transitions once, never drop what we hold

    def _retrying(self, call: Callable[[], Any], until_stopped: bool = True) -> Any:
        """Run ``call`` until Redis answers. Gives up (returns None) only when the process is
        quieting (``until_stopped``) or stopped, or this processor was abandoned; what it held
        stays in its private lists and is recovered or requeued."""
        stop = self.context.quiet if until_stopped else self.context.stopped
        return retrying(call, self.context.health,
                        lambda delay: stop.wait(delay) or self.abandoned)


def bury(context, redis, fetched: Fetched, reason: str,
         retrying: Callable[[Callable[[], Any]], Any]) -> None:
    """Send a payload forkq cannot run to the dead set, raw, with the reason; ``retrying``
    repeats the write while Redis is away."""
    logger.error("job in queue %s: dead: %s", fetched.queue, reason)
    text = envelope(fetched.text, reason, fetched.queue, new_jid(), time.time())
    retrying(lambda: context.dead_set.add(redis, [text]))


def unhandled_reason(exc: BaseException) -> str:
    """The dead set's reason for a job forkq failed to handle with ``exc``."""
    return f"forkq could not handle this job: {error_class_name(exc)}: {error_message(exc)}"


def tell_error_handlers(handlers, exc: BaseException, payload, queue: str) -> None:
    """Run each error handler; one that raises is logged and the others still run."""
    for handler in handlers:
        try:
            handler(exc, {"job": payload, "queue": queue})
        except Exception:
            logger.exception("error handler %r failed", handler)


def handle_failure(context, redis, job_class, payload, queue, exc: BaseException, where: str,
                   attempt: Callable):
    """A job raised: run the error handlers, schedule its retry or bury it (``attempt`` repeats
    the write while Redis is away), log it; returns the retry writer's ``Outcome``. Shared by
    the processor threads and the coroutine runner (``aio_runner.py``)."""
    tell_error_handlers(context.error_handlers, exc, payload, queue)
    hooks = hooks_of(job_class)
    outcome = context.retry_writer.handle(redis, payload, exc, hooks, attempt=attempt)
    logger.warning("fail: %s: %s; %s", error_class_name(exc), error_message(exc),
                   outcome.summary, exc_info=exc, extra={"ctx": where})
    return outcome
