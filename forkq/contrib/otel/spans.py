"""The spans forkq makes, by the OpenTelemetry messaging semantic conventions.

Runs where the middleware runs: ``Tracing.send`` and ``Tracing.send_bulk`` in any process that
enqueues (client and bulk middleware, ``hooks.py``), ``Tracing.process`` in a worker's
processor threads and its coroutine loop (server middleware). Steps of one job's trace:

- enqueue: a PRODUCER span ``send <queue>``; its context is the job's *creation context*,
  injected into the payload by the process's propagator (W3C ``traceparent``/``tracestate``
  by default) as top-level fields, the carrier Ruby Sidekiq's OpenTelemetry instrumentation
  also uses; Sidekiq itself ignores them, and a retry keeps them.
- a bulk push (``perform_bulk``, synchronous or asyncio): one PRODUCER span ``send <queue>``
  for the whole push, with ``messaging.batch.message_count``; its context is the creation
  context of every job of the push (the conventions' rule when there are no per-message
  "create" spans), so a bulk push of 10,000 jobs makes one span, not 10,000.
- each run, retries included: a CONSUMER span ``process <queue>``, child of the creation
  context and linked to it (the conventions' parent option for single messages), with the
  job's class and retry count; a failure is recorded on it (exception event, status ERROR,
  ``error.type``). A job over a limiter's limit is postponed, not failed: the span gets a
  ``postponed`` event and no error. A payload that already carries a creation context when
  it is enqueued (one a caller put there) keeps it, and no span is made for its push.

With no SDK configured (the API's default provider, or its no-op one), the middleware passes
straight through: no span, no context extracted or injected (``Tracing.live``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ...errors import Shutdown
from ...limiter import OverLimit
from ...payload import error_class_name

#: ``messaging.system`` of forkq's spans (a system the conventions do not list names itself)
SYSTEM = "forkq"
#: forkq's own attributes, in the ``messaging.<system>`` namespace the conventions reserve
JOB_CLASS = "messaging.forkq.job.class"
#: the payload's ``retry_count``: absent on a job's first run, 0 on its first retry
RETRY_COUNT = "messaging.forkq.job.retry_count"
#: the field whose presence tells that a payload carries a creation context
TRACEPARENT = "traceparent"


def _attributes(operation: str, queue: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.operation.name": operation,
            "messaging.operation.type": operation, "messaging.destination.name": queue}


class Tracing:
    """forkq's middleware, making spans with ``tracer``, from ``provider`` (None: the global
    one, looked up at each span, since an application may configure the SDK after it
    instrumented forkq)."""

    def __init__(self, tracer: trace.Tracer, provider: trace.TracerProvider | None) -> None:
        self.tracer = tracer
        self.provider = provider

    def live(self) -> bool:
        """Whether an SDK makes the spans. Without one (the API's default provider), the
        middleware passes straight through: its spans would record nothing, and extracting
        and injecting contexts would cost a job about what forkq itself costs."""
        provider = self.provider if self.provider is not None else trace.get_tracer_provider()
        return not isinstance(provider, _NO_SDK)

    # --- enqueue

    def send(self, job_class, payload: dict, queue: str, call_next: Callable[[], Any]) -> Any:
        """Client middleware: one job's ``send`` span around its push."""
        if TRACEPARENT in payload or not self.live():
            return call_next()
        attributes = _attributes("send", queue)
        attributes["messaging.message.id"] = payload["jid"]
        attributes[JOB_CLASS] = payload["class"]
        span = self.tracer.start_span(f"send {queue}", kind=SpanKind.PRODUCER,
                                      attributes=attributes)
        within = trace.set_span_in_context(span)
        propagate.inject(payload, context=within)
        return _around(span, within, call_next)

    def send_bulk(self, job_class, fields: dict, queue: str,
                  call_next: Callable[[], Any]) -> Any:
        """Bulk middleware: one ``send`` span around a whole bulk push, whose context every
        job of the push carries."""
        if not self.live():
            return call_next()
        attributes = _attributes("send", queue)
        attributes[JOB_CLASS] = job_class.wire_name()
        span = self.tracer.start_span(f"send {queue}", kind=SpanKind.PRODUCER,
                                      attributes=attributes)
        within = trace.set_span_in_context(span)
        propagate.inject(fields, context=within)
        jids = _around(span, within, call_next, end=False)
        if inspect.isawaitable(jids):  # an asyncio push, not started yet
            return _sent_later(span, within, jids)
        _sent(span, jids)
        return jids

    # --- a run

    def process(self, job, payload: dict, queue: str, call_next: Callable[[], Any]) -> Any:
        """Server middleware: the ``process`` span around one run of a job (for a coroutine
        job, around the awaiting of its coroutine, in the job's own task)."""
        if not self.live():
            return call_next()
        if getattr(job, "coroutine", False):
            return self._process_coroutine(payload, queue, call_next)
        return _around(*self._processing(payload, queue), call_next)

    async def _process_coroutine(self, payload: dict, queue: str,
                                 call_next: Callable[[], Any]) -> Any:
        span, within = self._processing(payload, queue)
        token = context.attach(within)
        try:
            return await call_next()
        except BaseException as exc:
            _record(span, exc)
            raise
        finally:
            context.detach(token)
            span.end()

    def _processing(self, payload: dict, queue: str):
        """The started ``process`` span, and the context the job runs in (the span, in the
        creation context, whose baggage the job sees)."""
        created = propagate.extract(payload, getter=TEXT_FIELDS)
        creation = trace.get_current_span(created).get_span_context()
        attributes = _attributes("process", queue)
        if "jid" in payload:
            attributes["messaging.message.id"] = payload["jid"]
        attributes[JOB_CLASS] = payload["class"]
        if "retry_count" in payload:
            attributes[RETRY_COUNT] = payload["retry_count"]
        span = self.tracer.start_span(
            f"process {queue}", context=created, kind=SpanKind.CONSUMER, attributes=attributes,
            links=[Link(creation)] if creation.is_valid else None)
        return span, trace.set_span_in_context(span, created)


class _TextFields(Getter):
    """The payload's fields as a propagator reads a carrier, text ones only: another
    producer's ``traceparent`` or ``baggage`` that is not a string (a number, a list) is
    absent, and the run starts a trace of its own, where the propagator would raise on it
    and fail the job."""

    def get(self, carrier: dict, key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: dict) -> list[str]:
        return [key for key, value in carrier.items() if isinstance(value, str)]


TEXT_FIELDS = _TextFields()


def _sent(span, jids: list[str]) -> None:
    span.set_attribute("messaging.batch.message_count", len(jids))
    span.end()


async def _sent_later(span, within, push) -> list[str]:
    """Await an asyncio bulk push with its ``send`` span current, then end the span."""
    token = context.attach(within)
    try:
        jids = await push
    except BaseException as exc:
        _record(span, exc)
        span.end()
        raise
    finally:
        context.detach(token)
    _sent(span, jids)
    return jids


#: providers that make no spans: the API's default (no SDK set) and its no-op one
_NO_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def _around(span, within, call: Callable[[], Any], end: bool = True) -> Any:
    """Run ``call`` with ``within`` as the current context; record how it failed, if it did,
    and end ``span`` (unless told not to: the caller ends it)."""
    token = context.attach(within)
    try:
        return call()
    except BaseException as exc:
        _record(span, exc)
        if not end:
            span.end()
        raise
    finally:
        context.detach(token)
        if end:
            span.end()


def _record(span, exc: BaseException) -> None:
    """Record how a run ended early: a failure, or a postponement or shutdown (no error: the
    job runs again)."""
    if isinstance(exc, OverLimit):
        span.add_event("postponed", {"forkq.retry_in": float(exc.retry_in)})
    elif isinstance(exc, Shutdown):
        span.add_event("abandoned at shutdown: the job goes back to its queue")
    else:
        span.record_exception(exc)
        span.set_attribute("error.type", error_class_name(exc))
        span.set_status(Status(StatusCode.ERROR, f"{error_class_name(exc)}: {exc}"))
