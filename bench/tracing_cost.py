"""What tracing adds to a job: worker CPU per job, and client time per enqueue, side by side.

Not a test: it prints figures. Drains the same ``INCR`` body four ways, each from a queue
filled beforehand, on a private redis-server on loopback TCP, one worker process of 10
threads:

- ``today``: the worker imports no OpenTelemetry module;
- ``off``: ``forkq.contrib.otel`` and the SDK imported, not instrumented (forkq registers no
  middleware: this must match ``today`` within noise);
- ``api``: instrumented with no SDK (the API's no-op tracer: what an application pays that
  installs the instrumentation but exports nothing);
- ``sdk``: instrumented, the SDK's ``BatchSpanProcessor`` with an exporter that drops what it
  is given (span creation, attributes, context extraction and the batch thread, no I/O).

Then enqueues one job at a time from this process, not instrumented and instrumented with the
SDK (the ``send`` span and the injection of its context).

    python bench/tracing_cost.py                  # 20,000 jobs each way, median of 3 runs
    python bench/tracing_cost.py --jobs 5000 --runs 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

from harness import Server, start_drain_bench, drain_worker, staged_drain  # noqa: E402

#: how the worker sets tracing up, read when it imports this module (``require:``)
MODE = os.environ.get("BENCH_TRACING_MODE", "today")
MODES = ("today", "off", "api", "sdk")


class Plain(forkq.Job):
    def perform(self, n):
        forkq.redis().incr("bench:counter")


def sdk_provider():
    """A provider whose batch processor hands spans to an exporter that drops them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SpanExporter,
                                                SpanExportResult)

    class Dropping(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return provider


def set_up(mode: str):
    """Trace this process as ``mode`` says; the instrumentor, when it was instrumented."""
    if mode == "today":
        return None
    import opentelemetry.sdk.trace  # noqa: F401 (imported, as an application would)

    from forkq.contrib.otel import ForkqInstrumentor
    if mode == "off":
        return None
    instrumentor = ForkqInstrumentor()
    if mode == "api":
        from opentelemetry.trace import NoOpTracerProvider
        instrumentor.instrument(tracer_provider=NoOpTracerProvider())
    else:
        instrumentor.instrument(tracer_provider=sdk_provider())
    return instrumentor


def drain_once(server: Server, mode: str, jobs: int) -> float:
    """Worker CPU µs per job of one drain of ``jobs`` jobs, traced as ``mode`` says."""
    client = server.client
    client.flushall()
    Plain.set(queue="staging").perform_bulk([[n] for n in range(jobs)])
    os.environ["BENCH_TRACING_MODE"] = mode
    with tempfile.TemporaryDirectory() as tmp:
        worker = drain_worker(server.url, tmp, "tracing_cost", [ROOT, HERE])
        try:
            return staged_drain(client, worker, jobs)["cpu_us"]
        finally:
            worker.terminate()
            worker.wait(60)


def enqueue_once(server: Server, jobs: int) -> float:
    server.client.flushall()
    started = time.perf_counter()
    for n in range(jobs):
        Plain.perform_async(n)
    return (time.perf_counter() - started) / jobs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    args, server = start_drain_bench(parser)
    try:
        print("\nWorker CPU per job (INCR body, 1 process, 10 threads), runs interleaved:")
        cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(args.runs):
            for mode in MODES:
                cpu[mode].append(drain_once(server, mode, args.jobs))
        today = statistics.median(cpu["today"])
        for mode in MODES:
            median = statistics.median(cpu[mode])
            print(f"  {mode:<6} {median:6.1f} µs/job ({median - today:+5.1f}; runs "
                  f"{', '.join(f'{value:.1f}' for value in cpu[mode])})")
        print("\nEnqueue one at a time (this process):")
        plain = statistics.median(enqueue_once(server, args.jobs) for _ in range(args.runs))
        instrumentor = set_up("sdk")
        traced = statistics.median(enqueue_once(server, args.jobs) for _ in range(args.runs))
        instrumentor.uninstrument()
        print(f"  off    {plain:6.1f} µs/job\n  sdk    {traced:6.1f} µs/job "
              f"({traced - plain:+5.1f})")
    finally:
        server.stop()


if __name__ == "__main__":
    import tracing_cost  # the job class as the worker names it (not ``__main__.Plain``)

    tracing_cost.main()
else:
    _instrumentor = set_up(MODE)
