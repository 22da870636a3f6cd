"""Tracing (``forkq/contrib/otel``): spans of enqueues and runs, in one trace, across processes.

In-process tests use the SDK with an in-memory exporter and a worker of this process; the
end-to-end test runs a real ``forkq start`` under ``opentelemetry-instrument``, whose children
print their spans with the SDK's console exporter.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from forkq import hooks
from forkq.contrib.otel import ForkqInstrumentor
from helpers import wait_for
from jobs import Record
from otel_jobs import AsyncFailsOnce, FailsOnce, Traced

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def spans():
    """Instrument this process into an in-memory exporter; the spans it finished so far."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = ForkqInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield exporter.get_finished_spans
    instrumentor.uninstrument()
    provider.shutdown()


def named(finished, name):
    return [span for span in finished() if span.name == name]


def queued(redis, queue="default"):
    return [json.loads(text) for text in redis.lrange(f"queue:{queue}", 0, -1)]


def traceparent(span) -> str:
    """The W3C ``traceparent`` of ``span`` without its flags."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}"


def test_enqueue_makes_a_producer_span_whose_context_the_payload_carries(redis, spans):
    tracer = trace.get_tracer("test", tracer_provider=TracerProvider())
    with tracer.start_as_current_span("request") as request:
        jid = Traced.perform_async(1)
    (send,) = named(spans, "send default")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent.span_id == request.get_span_context().span_id
    assert dict(send.attributes) == {
        "messaging.system": "forkq", "messaging.operation.name": "send",
        "messaging.operation.type": "send", "messaging.destination.name": "default",
        "messaging.message.id": jid, "messaging.forkq.job.class": "otel_jobs.Traced"}
    (payload,) = queued(redis)
    assert payload["traceparent"][:-3] == traceparent(send)


def test_a_bulk_push_is_one_send_span_that_every_job_carries(redis, spans):
    jids = Record.perform_bulk([[i] for i in range(2500)], batch_size=1000)
    (send,) = spans()
    assert send.name == "send default" and send.kind is SpanKind.PRODUCER
    assert send.attributes["messaging.batch.message_count"] == 2500
    assert "messaging.message.id" not in send.attributes
    payloads = queued(redis)
    assert sorted(p["jid"] for p in payloads) == sorted(jids)
    assert {p["traceparent"][:-3] for p in payloads} == {traceparent(send)}


def test_a_run_is_a_consumer_span_child_of_the_enqueue_and_a_retry_too(redis, spans,
                                                                       start_worker):
    jid = FailsOnce.perform_async()
    start_worker()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 15, message="the retry's end")
    (send,) = named(spans, "send default")
    first, retry = wait_for(lambda: len(named(spans, "process default")) == 2 and
                            named(spans, "process default"), 5, message="two process spans")
    for run in (first, retry):
        assert run.kind is SpanKind.CONSUMER
        assert run.context.trace_id == send.context.trace_id
        assert run.parent.span_id == send.context.span_id
        assert [link.context.span_id for link in run.links] == [send.context.span_id]
        assert run.attributes["messaging.message.id"] == jid
        assert run.attributes["messaging.forkq.job.class"] == "otel_jobs.FailsOnce"
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ValueError: the first run fails"
    assert first.attributes["error.type"] == "ValueError"
    assert "messaging.forkq.job.retry_count" not in first.attributes
    (event,) = first.events
    assert event.name == "exception"
    assert event.attributes["exception.message"] == "the first run fails"
    assert retry.status.status_code is StatusCode.UNSET
    assert retry.attributes["messaging.forkq.job.retry_count"] == 0


def test_a_coroutine_job_is_traced_the_same_way(redis, spans, start_worker):
    jid = AsyncFailsOnce.perform_async()
    start_worker()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 15, message="the retry's end")
    (send,) = named(spans, "send default")
    first, retry = wait_for(lambda: len(named(spans, "process default")) == 2 and
                            named(spans, "process default"), 5, message="two process spans")
    assert {first.parent.span_id, retry.parent.span_id} == {send.context.span_id}
    assert first.status.status_code is StatusCode.ERROR
    assert first.events[0].attributes["exception.message"] == "the first coroutine run fails"
    assert retry.status.status_code is StatusCode.UNSET
    assert retry.end_time > retry.start_time


def test_not_instrumented_forkq_registers_nothing(spans):
    chain = hooks.registry.middleware
    assert (len(chain.client), len(chain.bulk), len(chain.server)) == (1, 1, 1)
    ForkqInstrumentor().uninstrument()
    assert (chain.client, chain.bulk, chain.server, hooks.registry.child_exit) == \
        ([], [], [], [])
