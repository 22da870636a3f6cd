"""What becomes of a job: performing it through the server middleware, then its success,
failure or burial, for processor threads and coroutine jobs alike.

One ``OutcomeWriter`` per worker process (``Services.outcome``), called by the processor
threads and by the coroutine runner's loop and finisher threads; it holds no state of its own.
Each write gets the caller's Redis connection and ``attempt``, which repeats the write while
Redis is away (the caller decides until when). Steps:

- ``perform`` / ``perform_coroutine``: run the job through the server middleware (which is
  synchronous: for a coroutine job ``call_next()`` returns the job's coroutine, awaited once
  the chain has returned).
- ``started``: the result record, when the payload keeps one (``results.py``).
- ``succeeded``: the result record, then a batch or chain member's count and next step
  (``flow/chain.py``), then the unique lock released at success.
- ``failed``: the error handlers, the result record of a job that will not be retried, the
  retry writer's retry or death (``retry.py``), one log line saying what happens next, and
  the result record of a job that will be retried.
- ``cancelled``: a job cancelled before or while it ran (``flow/cancel.py``): result record,
  unique lock, counter; never retried, never dead.
- ``bury``: a payload forkq cannot run, or a job it failed to handle, goes to the dead set
  raw, with the reason.
- ``finished`` / ``finished_many``: the observer (metrics) counts the job, or a processor
  thread's batch of them.
- ``write_time_limited`` / ``write_cancel_stuck``: a job whose thread was taken from it (past
  its hard time limit, or ignoring its cancel) is written, and what its thread held put back.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable

import redis as redis_py

from ..client import new_jid
from ..dead import envelope
from ..errors import UnknownJobError
from ..flow import batch_scripts
from ..flow import chain as workflow
from ..flow import unique
from ..flow.cancel import ended_cancelled
from ..job import hooks_of
from ..log import job_context, job_extra, logger
from ..payload import batch_member, error_class_name
from .fetch import Fetched, Held, bulk_requeue
from .retry import error_message

#: ``attempt(write)``: run ``write`` until Redis answers, or give up (returns None)
Attempt = Callable[[Callable[[], Any]], Any]


def unhandled_reason(exc: BaseException) -> str:
    """The dead set's reason for a job forkq failed to handle with ``exc``."""
    if isinstance(exc, redis_py.ResponseError):
        return (f"Redis refused a command about this job: {error_message(exc)} (fix the key, "
                f"then retry the job)")
    return f"forkq could not handle this job: {error_class_name(exc)}: {error_message(exc)}"


class OutcomeWriter:
    def __init__(self, *, keys, identity: str, cancels, middleware, error_handlers, results,
                 retry_writer, dead_set, observer, quiet=None) -> None:
        self.keys = keys
        self.identity = identity
        #: the process's copy of the cancels, which each job instance can ask (``cancelled()``)
        self.cancels = cancels
        self.middleware = middleware
        self.error_handlers = error_handlers
        self.results = results
        #: ``keeps_result(job_class, payload)``, whether the worker records the job's result:
        #: the recorder's own rule, bound once (``ResultRecorder.keeps``)
        self.keeps_result = results.keeps
        self.retry_writer = retry_writer
        self.dead_set = dead_set
        self.observer = observer
        #: the process's quiet event, which a job reads as ``self.stopping`` (``Job``)
        self.quiet = quiet

    # --- running the job

    def perform(self, job_class, payload: dict[str, Any], queue: str) -> Any:
        """Run the job through the server middleware; return what ``perform`` returned."""
        instance = self._instance(job_class, payload)
        if workflow.member(payload):
            return workflow.checked(payload, lambda: self._perform(instance, payload, queue))
        if not self.middleware.server:  # ``_perform``'s first step, inline: most jobs, once each
            return instance.perform(*payload["args"])
        return self._perform(instance, payload, queue)

    def _perform(self, instance, payload: dict[str, Any], queue: str) -> Any:
        chain = self.middleware
        if not chain.server:
            return instance.perform(*payload["args"])
        # perform's own value, whether or not each middleware passes it on
        returned = []

        def run() -> Any:
            returned.append(instance.perform(*payload["args"]))
            return returned[0]

        chain.invoke_server(instance, payload, queue, run)
        return returned[0] if returned else None

    def coroutine(self, job_class, payload: dict[str, Any], queue: str):
        """The awaitable of a coroutine job (``perform_coroutine``'s, in the event loop's
        thread): without server middleware and outside a workflow, the job's own coroutine,
        one frame fewer at each of its resumptions."""
        if self.middleware.server or workflow.member(payload):
            return self.perform_coroutine(job_class, payload, queue)
        return self._instance(job_class, payload).perform(*payload["args"])

    async def perform_coroutine(self, job_class, payload: dict[str, Any], queue: str) -> Any:
        """Await a coroutine job through the server middleware (in the event loop's thread)."""
        instance = self._instance(job_class, payload)
        if workflow.member(payload):
            return await workflow.checked_async(
                payload, lambda: self._perform_coroutine(instance, payload, queue))
        return await self._perform_coroutine(instance, payload, queue)

    async def _perform_coroutine(self, instance, payload: dict[str, Any], queue: str) -> Any:
        chain = self.middleware
        if not chain.server:
            return await instance.perform(*payload["args"])
        inner = _Inner(instance.perform(*payload["args"]))
        try:
            returned = chain.invoke_server(instance, payload, queue, inner.call_next)
        except BaseException:
            if not inner.called:
                inner.coroutine.close()  # the chain failed before the job: never awaited
            raise
        if inspect.isawaitable(returned):
            await returned
        if inner.called and not inner.started:
            await inner.pending  # a middleware called call_next() but did not return its result
        elif not inner.called:
            inner.coroutine.close()  # a middleware skipped the job
        return inner.value

    def _instance(self, job_class, payload: dict[str, Any]):
        if job_class is None:
            raise UnknownJobError(
                f"unknown job class {payload['class']!r}: no module listed under 'require:' "
                f"registers it (a producer may be deployed ahead of this worker)")
        instance = job_class()
        instance.jid = payload.get("jid")
        instance.payload = payload
        instance.quiet = self.quiet
        instance.cancels = self.cancels
        return instance

    # --- what it left

    def started(self, redis, payload: dict[str, Any], attempt: Attempt) -> dict | None:
        """Write the result record as running; returns it, for the end's write."""
        return self._record(payload, attempt,
                            lambda: self.results.started(redis, payload, self.identity))

    @staticmethod
    def writes_at_success(payload: dict[str, Any], keeps_result: bool) -> bool:
        """Whether ``succeeded`` has anything to write for the job (its steps' conditions),
        asked once at its start: most jobs have nothing, and skip the call."""
        return keeps_result or "unique_digest" in payload or workflow.member(payload)

    def succeeded(self, redis, payload: dict[str, Any], value: Any, attempt: Attempt, *,
                  keeps_result: bool, record: dict | None = None,
                  owned: Callable[[], bool] = lambda: True,
                  ack: tuple[str, str] = ("", "")) -> None:
        """The result record; then a batch or chain member's success, counted with its
        acknowledgement ``ack`` (private list, job text; ``("", "")`` without a private list)
        in one script (``flow/chain.py``), after the record so that the callbacks and next
        step it pushes find the member's result written; then the unique lock released at
        success unless the job is no longer ``owned`` (pushed back at the shutdown deadline:
        it will run again).

        Its steps' conditions are also ``writes_at_success``'s, by which a processor thread
        skips this call: a step added here is added there."""
        if keeps_result:
            self._record(payload, attempt,
                         lambda: self.results.succeeded(redis, payload, value, record))
        if workflow.member(payload):
            attempt(lambda: workflow.succeeded(redis, self.keys, payload, value, ack))
        if "unique_digest" in payload and owned():
            self.unlock(redis, payload, "success", attempt)

    def postponed(self, redis, payload: dict[str, Any], attempt: Attempt, *,
                  keeps_result: bool, record: dict | None = None) -> None:
        """The result record back to ``queued`` before a limiter's postponement puts the job
        back in ``schedule`` (``Flow.postpone``)."""
        if keeps_result:
            self._record(payload, attempt,
                         lambda: self.results.postponed(redis, payload, record))

    @staticmethod
    def _record(payload: dict[str, Any], attempt: Attempt, write: Callable[[], Any]) -> Any:
        """A result record's write; one Redis refuses for its data (its TTL, a key a producer
        overwrote) is logged and the job goes on: a record is not worth the job."""
        try:
            return attempt(write)
        except redis_py.ResponseError as refused:
            logger.error("jid=%s: result record not written (%s: %s); the job goes on",
                         payload.get("jid"), error_class_name(refused), refused)
            return None

    def unlock(self, redis, payload: dict[str, Any], event: str, attempt: Attempt) -> None:
        """Free the job's unique lock if it is released at ``event`` (``unique.py``); a release
        Redis refuses for its data is logged: the lock's TTL frees it."""
        try:
            attempt(lambda: unique.release_at(redis, self.keys, payload, event))
        except redis_py.ResponseError as refused:
            logger.error("jid=%s: unique lock not released at %s (%s: %s); it frees itself "
                         "at its TTL", payload.get("jid"), event, error_class_name(refused),
                         refused)

    def failed(self, redis, job_class, payload: dict[str, Any], queue: str, exc: BaseException,
               about: dict, attempt: Attempt, *, keeps_result: bool,
               record: dict | None = None) -> None:
        """A job raised: run the error handlers, write the result record, schedule its retry
        or bury it, log it (with ``about``, ``log.job_extra``). The record comes first: a
        retry due at once may run in another thread before this one goes on, and its start
        must find this failure in the record; a burial may push a batch's callbacks, which
        then find the record final."""
        written: list[dict | None] = []

        def record_result(will_retry: bool) -> None:
            if not keeps_result:
                return
            # called again when Redis refused the retry: the same failure, now final
            again = bool(written)
            previous = written[-1] if again and written[-1] is not None else record
            written.append(self._record(payload, attempt, lambda: self.results.failed(
                redis, payload, exc, will_retry, previous, counted=again)))

        self.tell_error_handlers(exc, payload, queue)
        decided = self.retry_or_bury(redis, job_class, payload, exc, attempt,
                                     before_write=record_result)
        logger.warning("fail: %s: %s; %s", error_class_name(exc), error_message(exc),
                       decided.summary, exc_info=exc, extra=about)
        if decided.decision.action != "retry" and workflow.member(payload):
            attempt(lambda: workflow.stopped(redis, self.keys, payload, exc))

    def retry_or_bury(self, redis, job_class, payload: dict[str, Any], exc: BaseException,
                      attempt: Attempt = lambda write: write(),
                      before_write: Callable[[bool], None] = lambda will_retry: None):
        """Schedule the job's retry or kill it (``retry.py``), calling ``before_write`` first
        with whether it will be retried; returns the retry writer's ``Outcome``, which says
        what happens next."""
        return self.retry_writer.handle(redis, payload, exc, hooks_of(job_class),
                                        attempt=attempt, before_write=before_write)

    def tell_error_handlers(self, exc: BaseException, payload: dict[str, Any],
                            queue: str) -> None:
        """Run each error handler; one that raises is logged and the others still run."""
        for handler in self.error_handlers:
            try:
                handler(exc, {"job": payload, "queue": queue})
            except Exception:
                logger.exception("error handler %r failed", handler)

    def cancelled(self, redis, payload: dict[str, Any], queue: str, attempt: Attempt, *,
                  started: bool, record: dict | None = None) -> None:
        """End a cancelled job (``started``: interrupted while it ran, else dropped before)."""
        logger.info("cancelled %s in queue %s", "while running" if started else "before it "
                    "started", queue,
                    extra=job_extra(job_context(payload, queue)))
        attempt(lambda: ended_cancelled(redis, self.keys, payload, record))

    def bury(self, redis, fetched: Fetched, reason: str, attempt: Attempt) -> None:
        """Send a payload forkq cannot run to the dead set, raw, with the reason; one that
        names its batch (``payload.batch_member``) is counted there as dead in the same call,
        so that the batch completes instead of waiting for it."""
        logger.error("job in queue %s: dead: %s", fetched.queue, reason)
        now = time.time()
        text = envelope(fetched.text, reason, fetched.queue, new_jid(), now)
        member = batch_member(fetched.text)
        if member is None:
            attempt(lambda: self.dead_set.add(redis, [text], now))
            return
        attempt(lambda: batch_scripts.malformed(redis, self.keys, member, reason,
                                                (text, now, self.dead_set.trim_args(now))))

    def finished(self, queue: str, class_name: str, seconds: float, failed: bool) -> None:
        self.observer.job_finished(queue, class_name, seconds, failed)

    def finished_many(self, ended: list[tuple[str, str, float, bool]]) -> None:
        """``finished`` for each ``(queue, class_name, seconds, failed)``: a processor
        thread's batch, counted at its end."""
        self.observer.jobs_finished(ended)


def write_cancel_stuck(services, held: Held, payload, queue: str) -> str:
    """End a cancelled job that did not stop, then put back what its thread held but that job
    (``Processor.cancel_stuck``); returns what happened, for the log."""
    if not held.known:
        return "this thread's lists are left for recovery (its mark drops the job there)"
    redis = services.make_redis()
    try:
        services.outcome.cancelled(redis, payload, queue, lambda write: write(), started=True)
        held.jobs, held.processed = held.jobs[1:], held.processed + 1
        bulk_requeue(redis, services.keys, [held])
        return "ended as cancelled; this process is replaced"
    except redis_py.RedisError as error:
        return f"not written ({error}): this thread's lists are left for recovery"
    finally:
        redis.close()


def write_time_limited(services, held: Held, payload, job_class, exc) -> str:
    """Write a job past its hard limit to retry or dead, then put back what its thread held
    but that job (``Processor.time_limit_hit``); returns what happened, for the log."""
    if not held.known:
        return "this thread's lists are left for recovery"
    redis = services.make_redis()
    try:
        decided = services.outcome.retry_or_bury(redis, job_class, payload, exc)
        held.jobs, held.processed, held.failed = (held.jobs[1:], held.processed + 1,
                                                  held.failed + 1)
        bulk_requeue(redis, services.keys, [held])
        return decided.summary
    except redis_py.RedisError as error:
        return f"not written ({error}): this thread's lists are left for recovery"
    finally:
        redis.close()


class _Inner:
    """The job's coroutine as a middleware chain's ``call_next`` sees it."""

    def __init__(self, coroutine) -> None:
        self.coroutine = coroutine
        self.pending = None
        self.started = False
        self.value = None

    @property
    def called(self) -> bool:
        return self.pending is not None

    def call_next(self):
        self.pending = self._run()
        return self.pending

    async def _run(self) -> Any:
        self.started = True
        self.value = await self.coroutine
        return self.value
