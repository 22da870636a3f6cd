"""Sentry error tracking of forkq jobs: ``ForkqIntegration``, a sentry-sdk integration.

Installed with ``pip install 'forkq[sentry]'``; used as sentry-sdk's own integrations for
Celery, RQ, arq and Dramatiq are::

    sentry_sdk.init(dsn=..., integrations=[ForkqIntegration()], traces_sample_rate=...)

Called before the master forks (in a module under ``require:``), it covers every worker
child. ``setup_once`` registers three generic hooks in the process's hooks (``forkq.hooks``),
each a pass-through while the current Sentry client lacks the integration:

- client middleware: carries the enqueuing code's Sentry trace (``sentry-trace`` and
  ``baggage``) in the payload's ``sentry`` field, which Ruby Sidekiq ignores, so that a job's
  run joins the trace of the request that enqueued it;
- server middleware, around each run of a job (retries and coroutine jobs included): an
  isolation scope with the job's context, one root span named after the job's class
  (op ``queue.task.forkq``), and the job's exception, if it raises, sent as an unhandled
  event. A postponed job (over a limiter's limit) and a job abandoned at shutdown are not
  errors: nothing is sent;
- child-exit hook: a worker child ends with ``os._exit``, which skips sentry-sdk's
  ``atexit`` flush, so it flushes its events first.

sentry-sdk 2.x and 3.x trace differently: 2.x in transactions (``transactions.py``), 3.x in
spans it streams (``spans.py``); the version installed picks the module, the rest is shared.

Events get the tags ``forkq.class``, ``forkq.jid``, ``forkq.queue`` and ``forkq.retry_count``
(absent on a job's first run, 0 on its first retry) and a ``forkq`` context holding them, with
the job's ``args`` where that sentry-sdk version sends such data (``sends_job_args``).
"""

from __future__ import annotations

from typing import Any, Callable

try:
    import sentry_sdk
except ImportError as missing:
    raise ImportError(f"forkq.contrib.sentry needs sentry-sdk ({missing}); install it with "
                      f"pip install 'forkq[sentry]'") from missing
if sentry_sdk.VERSION.startswith("2."):
    from . import transactions as tracing
elif sentry_sdk.VERSION.startswith("3."):
    from . import spans as tracing
else:
    raise ImportError(f"forkq.contrib.sentry needs sentry-sdk 2.x or 3.x, not "
                      f"{sentry_sdk.VERSION}; install it with pip install 'forkq[sentry]'")
from sentry_sdk.api import get_baggage, get_traceparent
from sentry_sdk.integrations import Integration
from sentry_sdk.utils import capture_internal_exceptions

from ... import hooks
from .naming import IDENTIFIER, ORIGIN, TASK_OP, TRACE_FIELD

__all__ = ["ForkqIntegration", "TASK_OP", "TRACE_FIELD"]


class ForkqIntegration(Integration):
    identifier = IDENTIFIER
    origin = ORIGIN

    @staticmethod
    def setup_once() -> None:
        registry = hooks.registry
        for chain, hook in ((registry.middleware.client, enqueue),
                            (registry.middleware.server, run),
                            (registry.child_exit, flush)):
            if hook not in chain:
                chain.append(hook)


def _enabled() -> bool:
    return sentry_sdk.get_client().get_integration(ForkqIntegration) is not None


def enqueue(job_class, payload: dict, queue: str, call_next: Callable[[], Any]) -> Any:
    """Client middleware: a ``queue.publish`` span, whose trace the payload carries."""
    if not _enabled():
        return call_next()
    with tracing.publish_span(payload["class"], queue, payload["jid"]):
        payload[TRACE_FIELD] = {"sentry-trace": get_traceparent(), "baggage": get_baggage()}
        return call_next()


def run(job, payload: dict, queue: str, call_next: Callable[[], Any]) -> Any:
    """Server middleware: the job's scope and span; its exception sent."""
    if not _enabled():
        return call_next()
    if getattr(job, "coroutine", False):
        return _run_coroutine(payload, queue, call_next)
    with _JobRun(payload, queue) as span:
        try:
            value = call_next()
        except BaseException as exc:
            _failed(span, exc)
            raise
        span.succeeded()
        return value


async def _run_coroutine(payload: dict, queue: str, call_next: Callable[[], Any]) -> Any:
    with _JobRun(payload, queue) as span:
        try:
            value = await call_next()
        except BaseException as exc:
            _failed(span, exc)
            raise
        span.succeeded()
        return value


class _JobRun:
    """An isolation scope with the job's context, and the job's span in it."""

    def __init__(self, payload: dict, queue: str) -> None:
        self.payload, self.queue = payload, queue

    def __enter__(self):
        self.scope = sentry_sdk.isolation_scope()
        scope = self.scope.__enter__()
        scope.clear_breadcrumbs()
        scope.add_event_processor(_event_processor(job_context(self.payload, self.queue)))
        try:
            self.span = tracing.JobSpan(self.payload, self.queue, trace_headers(self.payload))
        except BaseException:
            self.scope.__exit__(None, None, None)
            raise
        return self.span

    def __exit__(self, *exc_info) -> None:
        try:
            self.span.end()
        finally:
            self.scope.__exit__(*exc_info)


def trace_headers(payload: dict) -> dict[str, str]:
    """The trace the payload carries (``enqueue``), or none when its field is not what
    ``enqueue`` writes: another producer's payload starts a trace of its own."""
    carried = payload.get(TRACE_FIELD)
    if not isinstance(carried, dict):
        return {}
    return {key: value for key, value in carried.items()
            if key in ("sentry-trace", "baggage") and isinstance(value, str)}


def _failed(span, exc: BaseException) -> None:
    """A failure is sent as an unhandled event; a postponement or shutdown is not an error."""
    if not isinstance(exc, Exception):  # OverLimit, Shutdown: the job runs again
        span.aborted()
        return
    span.failed()
    event, hint = tracing.exception_event(exc)
    sentry_sdk.capture_event(event, hint=hint)


def job_context(payload: dict, queue: str) -> dict[str, Any]:
    """What an event says about the job: class, jid, queue, retry count (and args, where
    sentry-sdk sends such data)."""
    context = {"class": payload["class"], "jid": payload.get("jid"), "queue": queue}
    if "retry_count" in payload:
        context["retry_count"] = payload["retry_count"]
    if tracing.sends_job_args():
        context["args"] = payload.get("args")
    return context


def _event_processor(context: dict[str, Any]):
    def process(event: dict, hint: dict) -> dict:
        with capture_internal_exceptions():
            tags = event.setdefault("tags", {})
            for key in ("class", "jid", "queue", "retry_count"):
                if key in context:
                    tags[f"forkq.{key}"] = str(context[key])
            event.setdefault("contexts", {})["forkq"] = context
        return event
    return process


def flush() -> None:
    """Child-exit hook: send what the client still holds before ``os._exit``."""
    sentry_sdk.get_client().flush()
