"""Tracing (``forkq/contrib/otel``): spans of enqueues and runs, in one trace, across processes.

In-process tests use the SDK with an in-memory exporter and a worker of this process; the
end-to-end test runs a real ``forkq start`` under ``opentelemetry-instrument``, whose children
print their spans with the SDK's console exporter.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from forkq import aio, hooks
from forkq.contrib.otel import ForkqInstrumentor
from forkq.contrib.otel import spans as otel_spans
from forkq.errors import Shutdown
from forkq.limiter import OverLimit
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


def test_an_asyncio_bulk_push_is_one_send_span_around_its_round_trips(redis, spans):
    async def push():
        try:
            return await aio.perform_bulk(Record, [[i] for i in range(25)], batch_size=10)
        finally:
            await aio.aclose()

    jids = asyncio.run(push())
    (send,) = spans()
    assert send.attributes["messaging.batch.message_count"] == 25
    assert {p["traceparent"][:-3] for p in queued(redis)} == {traceparent(send)}
    assert sorted(p["jid"] for p in queued(redis)) == sorted(jids)


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


@pytest.mark.parametrize("fields", [
    {"traceparent": 5}, {"baggage": 7},
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": 9}],
    ids=["traceparent", "baggage", "tracestate"])
def test_another_producers_trace_fields_that_are_not_text_start_a_trace_of_its_own(
        redis, spans, start_worker, fields):
    """Before, the propagator raised on them (``object of type 'int' has no len()``) and the
    job failed at every run; a text ``traceparent`` beside a bad ``tracestate`` is followed."""
    now = time.time()
    redis.lpush("queue:default", json.dumps({
        "class": Traced.wire_name(), "args": [1], "jid": "hostile", "queue": "default",
        "retry": True, "created_at": now, "enqueued_at": now, **fields}))
    start_worker()
    wait_for(lambda: redis.lrange("obs:runs", 0, -1) == ["hostile"], 15, message="the run")
    (run,) = wait_for(lambda: named(spans, "process default"), 5, message="the process span")
    assert run.status.status_code is StatusCode.UNSET
    followed = isinstance(fields.get("traceparent"), str)
    assert (run.parent is not None) is followed
    if followed:
        assert f"{run.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"


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


def instrumented_env(directory) -> dict:
    """Environment for ``opentelemetry-instrument``: the entry points forkq's pyproject
    registers (``opentelemetry_instrumentor``) and the SDK configurator that
    ``opentelemetry-distro`` registers, as a distribution on the path; spans to stdout."""
    info = directory / "forkq_traced-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: forkq-traced\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\nforkq = forkq.contrib.otel:ForkqInstrumentor\n\n"
        "[opentelemetry_configurator]\nsdk = opentelemetry.sdk._configuration:"
        "_OTelSDKConfigurator\n")
    return {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none", "OTEL_SERVICE_NAME": "forkq-e2e",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ""}


def printed_spans(text: str) -> list[dict]:
    """The spans the console exporter printed (pretty JSON objects) among other lines."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while (index := text.find("{\n", index)) != -1:
        span, index = decoder.raw_decode(text, index)
        found.append(span)
    return found


@pytest.mark.slow
def test_opentelemetry_instrument_traces_a_job_and_its_retry_across_processes(
        redis, redis_url, spans, tmp_path):
    """The producer span here; the process spans in a worker child of ``forkq start`` run
    under ``opentelemetry-instrument``, which prints them at its exit at the latest (the
    export delay is longer than the test, so only the child-exit flush can print them)."""
    from masters import Master

    class Instrumented(Master):
        launcher = [os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")]

    directory = tmp_path / "m"
    directory.mkdir()
    env = {**instrumented_env(directory), "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    master = Instrumented(directory, env, redis_url=redis_url, require=["otel_jobs"],
                          processes=1, poll_interval=0.2)
    try:
        master.start()
        master.ready_pids(1)
        jid = FailsOnce.perform_async()
        wait_for(lambda: redis.lrange("obs:runs", 0, -1) == [jid], 45, message="the retry")
        master.send(signal.SIGTERM)
        assert master.wait_exit(20) == 0
    finally:
        master.kill_all()
    (send,) = named(spans, "send default")
    runs = [span for span in printed_spans(master.stderr())
            if span["attributes"].get("messaging.message.id") == jid]
    assert [run["name"] for run in runs] == ["process default"] * 2, master.stderr()
    for run in runs:
        assert run["kind"] == "SpanKind.CONSUMER"
        assert run["context"]["trace_id"] == f"0x{send.context.trace_id:032x}"
        assert run["parent_id"] == f"0x{send.context.span_id:016x}"
        assert run["resource"]["attributes"]["service.name"] == "forkq-e2e"
    first, retry = sorted(runs, key=lambda run: run["start_time"])
    assert first["status"]["status_code"] == "ERROR"
    assert first["events"][0]["attributes"]["exception.type"] == "ValueError"
    assert retry["status"]["status_code"] == "UNSET"
    assert retry["attributes"]["messaging.forkq.job.retry_count"] == 0


def test_without_an_sdk_the_middleware_passes_straight_through(redis):
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    instrumentor = ForkqInstrumentor()
    instrumentor.instrument()
    try:
        Traced.perform_async(1)
        Record.perform_bulk([[1], [2]])
    finally:
        instrumentor.uninstrument()
    assert [key for payload in queued(redis) for key in payload
            if key in ("traceparent", "tracestate", "baggage")] == []


def test_without_the_extra_the_import_says_what_to_install():
    script = ("import sys; sys.modules['opentelemetry'] = None\n"
              "import forkq.contrib.otel")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.path.dirname(TESTS)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith(
        "install them with pip install 'forkq[otel]'")


@pytest.mark.parametrize("exc, event, status", [
    (OverLimit("api", 1.5), "postponed", StatusCode.UNSET),
    (Shutdown(), "abandoned at shutdown: the job goes back to its queue", StatusCode.UNSET),
    (KeyError("k"), "exception", StatusCode.ERROR),
], ids=["postponed", "shutdown", "failure"])
def test_only_a_failure_is_an_error_on_the_span(exc, event, status):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("test").start_span("process default")
    otel_spans._record(span, exc)
    span.end()
    (done,) = exporter.get_finished_spans()
    assert [e.name for e in done.events] == [event]
    assert done.status.status_code is status
    assert ("error.type" in done.attributes) is (status is StatusCode.ERROR)
