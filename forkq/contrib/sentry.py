"""Sentry error tracking of forkq jobs: ``ForkqIntegration``, a sentry-sdk integration.

Installed with ``pip install 'forkq[sentry]'``; used as sentry-sdk's own integrations for
Celery, RQ, arq and Dramatiq are::

    sentry_sdk.init(dsn=..., integrations=[ForkqIntegration()], traces_sample_rate=...)

Called before the master forks (in a module under ``require:``), it covers every worker
child. ``setup_once`` registers three generic hooks in the process's hooks (``forkq.hooks``),
each a pass-through while the current Sentry client lacks the integration:

- client middleware: carries the enqueuing code's Sentry trace (``sentry-trace`` and
  ``baggage``) in the payload's ``sentry`` field, which Ruby Sidekiq ignores, so that a job's
  transaction joins the trace of the request that enqueued it;
- server middleware, around each run of a job (retries and coroutine jobs included): an
  isolation scope with the job's context, one transaction named after the job's class
  (op ``queue.task.forkq``), and the job's exception, if it raises, sent as an unhandled
  event. A postponed job (over a limiter's limit) and a job abandoned at shutdown are not
  errors: nothing is sent and the transaction's status is ``aborted``;
- child-exit hook: a worker child ends with ``os._exit``, which skips sentry-sdk's
  ``atexit`` flush, so it flushes its events first.

Events get the tags ``forkq.class``, ``forkq.jid``, ``forkq.queue`` and ``forkq.retry_count``
(absent on a job's first run, 0 on its first retry) and a ``forkq`` context holding them, with
the job's ``args`` only where sentry-sdk sends personal data (``send_default_pii``).
"""

from __future__ import annotations

from typing import Any, Callable

try:
    import sentry_sdk
except ImportError as missing:
    raise ImportError(f"forkq.contrib.sentry needs sentry-sdk ({missing}); install it with "
                      f"pip install 'forkq[sentry]'") from missing
if not sentry_sdk.VERSION.startswith("2."):
    # 3.0 replaced the transactions this integration builds on with a new span API
    raise ImportError(f"forkq.contrib.sentry needs sentry-sdk 2.x, not {sentry_sdk.VERSION}; "
                      f"install it with pip install 'forkq[sentry]'")
from sentry_sdk.api import continue_trace, get_baggage, get_traceparent
from sentry_sdk.consts import OP, SPANDATA, SPANSTATUS
from sentry_sdk.integrations import Integration
from sentry_sdk.scope import should_send_default_pii
from sentry_sdk.tracing import TransactionSource
from sentry_sdk.utils import capture_internal_exceptions, event_from_exception

from .. import hooks

#: the payload field that carries the enqueuing code's Sentry trace headers
TRACE_FIELD = "sentry"
#: ``op`` of a job's transaction, in sentry-sdk's ``queue.task.<system>`` naming
TASK_OP = "queue.task.forkq"


class ForkqIntegration(Integration):
    identifier = "forkq"
    origin = f"auto.queue.{identifier}"

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
    with sentry_sdk.start_span(op=OP.QUEUE_PUBLISH, name=payload["class"],
                               origin=ForkqIntegration.origin) as span:
        span.set_data(SPANDATA.MESSAGING_DESTINATION_NAME, queue)
        span.set_data(SPANDATA.MESSAGING_MESSAGE_ID, payload["jid"])
        payload[TRACE_FIELD] = {"sentry-trace": get_traceparent(), "baggage": get_baggage()}
        return call_next()


def run(job, payload: dict, queue: str, call_next: Callable[[], Any]) -> Any:
    """Server middleware: the job's scope and transaction; its exception sent."""
    if not _enabled():
        return call_next()
    if getattr(job, "coroutine", False):
        return _run_coroutine(payload, queue, call_next)
    with _JobTransaction(payload, queue) as transaction:
        try:
            value = call_next()
        except BaseException as exc:
            _failed(transaction, exc)
            raise
        transaction.set_status(SPANSTATUS.OK)
        return value


async def _run_coroutine(payload: dict, queue: str, call_next: Callable[[], Any]) -> Any:
    with _JobTransaction(payload, queue) as transaction:
        try:
            value = await call_next()
        except BaseException as exc:
            _failed(transaction, exc)
            raise
        transaction.set_status(SPANSTATUS.OK)
        return value


class _JobTransaction:
    """An isolation scope with the job's context, and the job's transaction in it."""

    def __init__(self, payload: dict, queue: str) -> None:
        self.payload, self.queue = payload, queue

    def __enter__(self):
        payload = self.payload
        self.scope = sentry_sdk.isolation_scope()
        scope = self.scope.__enter__()
        scope.clear_breadcrumbs()
        scope.add_event_processor(_event_processor(job_context(payload, self.queue)))
        transaction = continue_trace(
            payload.get(TRACE_FIELD) or {}, op=TASK_OP, name=payload["class"],
            source=TransactionSource.TASK, origin=ForkqIntegration.origin)
        self.transaction = sentry_sdk.start_transaction(transaction)
        self.transaction.__enter__()
        for key, value in ((SPANDATA.MESSAGING_DESTINATION_NAME, self.queue),
                           (SPANDATA.MESSAGING_MESSAGE_ID, payload.get("jid")),
                           (SPANDATA.MESSAGING_MESSAGE_RETRY_COUNT,
                            payload.get("retry_count"))):
            if value is not None:
                self.transaction.set_data(key, value)
        return self.transaction

    def __exit__(self, *exc_info) -> None:
        try:
            self.transaction.__exit__(*exc_info)
        finally:
            self.scope.__exit__(*exc_info)


def _failed(transaction, exc: BaseException) -> None:
    """A failure is sent as an unhandled event; a postponement or shutdown is not an error."""
    if not isinstance(exc, Exception):  # OverLimit, Shutdown: the job runs again
        transaction.set_status(SPANSTATUS.ABORTED)
        return
    transaction.set_status(SPANSTATUS.INTERNAL_ERROR)
    event, hint = event_from_exception(
        exc, client_options=sentry_sdk.get_client().options,
        mechanism={"type": ForkqIntegration.identifier, "handled": False})
    sentry_sdk.capture_event(event, hint=hint)


def job_context(payload: dict, queue: str) -> dict[str, Any]:
    """What an event says about the job: class, jid, queue, retry count (and args, where
    personal data is sent)."""
    context = {"class": payload["class"], "jid": payload.get("jid"), "queue": queue}
    if "retry_count" in payload:
        context["retry_count"] = payload["retry_count"]
    if should_send_default_pii():
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
