"""One processor thread: fetch, run through the server middleware, acknowledge, repeat.

Owned by the manager; runs in a worker child. Each processor has its own Redis connection and
private list, so the busy path shares no lock with other threads. Steps of a batch:
take each fetched job in order (stop taking when the process is quieting; the unstarted ones
go back to the front of their queues), parse it (bad data goes straight to the dead set),
resolve its class (an unknown class is an ordinary, retried error), run it, and on failure
hand it to the retry writer. The batch is acknowledged by the next fetch.

At the shutdown deadline the manager may *abandon* a processor: it requeues the processor's
jobs itself and the processor, when its job returns, writes nothing more.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import redis as redis_py

from .client import new_jid
from .errors import MalformedJobError, Shutdown, UnknownJobError
from .fetch import Fetched, Fetcher
from .health import next_backoff
from .job import HOOK_OPTIONS, resolve
from .log import job_log, logger, thread_tag
from .retry import ISOLATE_KEY, error_class_name

_ISOLATE_MARK = f'"{ISOLATE_KEY}"'


def parse(text: str) -> dict[str, Any]:
    """A job hash from queue text, or ``MalformedJobError`` saying what is wrong with it."""
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise MalformedJobError(f"payload is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise MalformedJobError(f"payload is a JSON {type(payload).__name__}, not an object")
    if not isinstance(payload.get("class"), str) or not payload["class"]:
        raise MalformedJobError("payload has no 'class' string naming the job")
    if not isinstance(payload.get("args"), list):
        raise MalformedJobError(f"payload's 'args' is {type(payload.get('args')).__name__}, "
                                f"not a list")
    return payload


class Processor(threading.Thread):
    def __init__(self, index: int, context) -> None:
        super().__init__(name=f"processor-{index}", daemon=True)
        self.index = index
        self.context = context
        self.lock = threading.Lock()
        self.current: Fetched | None = None
        self.run_at = 0.0
        #: the batch being run and the index of its first job not yet started
        self.batch: list[Fetched] = []
        self.next_index = 0
        self.abandoned = False
        self.jobs_done = 0
        self.redis = context.make_redis()
        self.fetcher = Fetcher(self.redis, context.keys, context.config.queues,
                               context.config.strict, context.private_key(index),
                               context.config.fetch == "reliable", index, context.idle_plan)

    # --- the loop

    def run(self) -> None:
        quiet = self.context.quiet
        self.tid = thread_tag()
        self.observer = self.context.observer
        try:
            while not quiet.is_set():
                try:
                    self._step()
                except Exception:
                    logger.exception("processor error; the jobs it held stay in its private "
                                     "list and are recovered")
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

    @property
    def pending(self) -> list[Fetched]:
        """Jobs of the batch not started yet (read under ``lock``)."""
        return self.batch[self.next_index:]

    def _run_batch(self, jobs: list[Fetched]) -> None:
        self.batch, self.next_index = jobs, 0
        started = time.perf_counter()
        try:
            self._run_jobs(jobs)
        finally:
            self.fetcher.seconds_per_job = (time.perf_counter() - started) / len(jobs)

    def _run_jobs(self, jobs: list[Fetched]) -> None:
        for position, fetched in enumerate(jobs):
            with self.lock:
                if self.abandoned or self.context.quiet.is_set():
                    return
                self.current, self.next_index = fetched, position + 1
                self.run_at = time.time()
            isolated = len(jobs) > 1 and _ISOLATE_MARK in fetched.text
            if isolated:
                self._isolate(fetched)
            self._process(fetched)
            with self.lock:
                self.current = None
                if self.abandoned or isolated:
                    return
        self.batch = []

    def _isolate(self, fetched: Fetched) -> None:
        """A job recovered from a crashed batch runs alone, so a second crash is charged to it."""
        self._retrying(lambda: self.fetcher.release(self.pending, keep=fetched))
        self.batch = []

    def _finish(self) -> None:
        with self.lock:
            if self.abandoned:
                return
            unstarted, self.batch = self.pending, []
        self._retrying(lambda: self.fetcher.release(unstarted), until_stopped=False)
        self._retrying(self.fetcher.flush_stats, until_stopped=False)
        self.fetcher.close()

    # --- one job

    def _process(self, fetched: Fetched) -> None:
        counters = self.fetcher.counters
        try:
            payload = parse(fetched.text)
        except MalformedJobError as exc:
            self._bury_malformed(fetched, exc)
            counters.processed += 1
            counters.failed += 1
            return
        job_class = resolve(payload["class"])
        verbose = job_log.enabled
        context = f"class={payload['class']} jid={payload.get('jid')}"
        if verbose:
            job_log.write(self.tid, context, "start")
        started = time.perf_counter()
        failed = False
        try:
            self._perform(job_class, payload, fetched.queue)
        except Shutdown:
            raise
        except BaseException as exc:
            elapsed = time.perf_counter() - started
            if self.abandoned:
                return
            failed = True
            counters.failed += 1
            logger.warning("fail: %s: %s", error_class_name(exc), exc, exc_info=exc,
                           extra={"ctx": f"{context} elapsed={elapsed:.3f}"})
            self._handle_failure(job_class, payload, fetched.queue, exc)
        else:
            elapsed = time.perf_counter() - started
            if verbose:
                job_log.write(self.tid, context, "done", elapsed)
        counters.processed += 1
        self.jobs_done += 1
        self.observer.job_finished(fetched.queue, payload["class"] if job_class else "unknown",
                                   elapsed, failed)

    def _perform(self, job_class, payload: dict[str, Any], queue: str) -> None:
        if job_class is None:
            raise UnknownJobError(
                f"unknown job class {payload['class']!r}: no module listed under 'require:' "
                f"registers it (a producer may be deployed ahead of this worker)")
        instance = job_class()
        instance.jid = payload.get("jid")
        instance.payload = payload
        chain = self.context.middleware
        if chain.server:
            chain.invoke_server(instance, payload, queue, lambda: instance.perform(*payload["args"]))
        else:
            instance.perform(*payload["args"])

    def _handle_failure(self, job_class, payload, queue, exc: BaseException) -> None:
        for handler in self.context.error_handlers:
            try:
                handler(exc, {"job": payload, "queue": queue})
            except Exception:
                logger.exception("error handler %r failed", handler)
        hooks = {name: job_class.options.get(name) for name in HOOK_OPTIONS} if job_class else {}
        writer = self.context.retry_writer
        self._retrying(lambda: writer.handle(self.redis, payload, exc, hooks), until_stopped=False)

    def _bury_malformed(self, fetched: Fetched, exc: MalformedJobError) -> None:
        logger.error("malformed job in queue %r sent to the dead set: %s", fetched.queue, exc)
        now = time.time()
        envelope = {"class": "forkq.MalformedJob", "args": [], "queue": fetched.queue,
                    "jid": new_jid(), "created_at": now, "failed_at": now,
                    "retry_count": 0, "error_class": "forkq.errors.MalformedJobError",
                    "error_message": str(exc), "raw": fetched.text}
        text = json.dumps(envelope, separators=(",", ":"))
        self._retrying(lambda: self.context.dead_set.add(self.redis, [text], now),
                       until_stopped=False)

    # --- Redis errors: back off, log transitions once, never drop what we hold

    def _retrying(self, call: Callable[[], Any], until_stopped: bool = True) -> Any:
        """Run ``call`` until Redis answers. Gives up only when the process is quieting
        (``until_stopped``) or abandoned; what it held is then recovered or requeued."""
        health, delay = self.context.health, 0.0
        while True:
            try:
                result = call()
                health.succeeded()
                return result
            except redis_py.RedisError as exc:
                health.failed(exc)
            delay = next_backoff(delay)
            stop = self.context.quiet if until_stopped else self.context.stopped
            if stop.wait(delay) or self.abandoned:
                return None
