"""What a unique lock or a limiter adds to a job: worker CPU and Redis round trips per job.

Not a test: it prints figures. Drains the same ``INCR`` body four ways (plain, unique until
success, inside a window limiter, inside a concurrent limiter; limits high enough never to
refuse), each from a queue filled beforehand, on a private redis-server on loopback TCP, one
worker process of 10 threads; and enqueues the plain and the unique job one at a time.

    python bench/flow_cost.py                  # 20,000 jobs each way, median of 3 runs
    python bench/flow_cost.py --jobs 5000 --runs 1

Round trips are the server's reads (``INFO``'s ``total_reads_processed``: a command, a
pipeline or a script call is one, whatever the script runs inside Redis), less the harness's
own: its rename that starts a drain, its polls of the counter and its closing ``INFO``. They
include the body's one ``INCR`` a job and the worker's heartbeats.
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
from forkq import limiter  # noqa: E402

from harness import Server, start_drain_bench, drain_worker, server_reads, staged_drain  # noqa: E402

#: admits everything: the cost measured is the check, not a wait
WIDE_WINDOW = limiter.window("bench-window", 10**9, 60)
WIDE_SLOTS = limiter.concurrent("bench-slots", 10**6)


class Plain(forkq.Job):
    def perform(self, n):
        forkq.redis().incr("bench:counter")


class Unique(forkq.Job):
    options = {"unique_for": 600}

    def perform(self, n):
        forkq.redis().incr("bench:counter")


class Windowed(forkq.Job):
    def perform(self, n):
        with WIDE_WINDOW:
            forkq.redis().incr("bench:counter")


class Slotted(forkq.Job):
    def perform(self, n):
        with WIDE_SLOTS:
            forkq.redis().incr("bench:counter")


KINDS = {"plain": Plain, "unique": Unique, "window": Windowed, "concurrent": Slotted}


def enqueue_once(server: Server, kind: str, jobs: int) -> dict:
    server.client.flushall()
    job = KINDS[kind]
    before, started = server_reads(server.client), time.perf_counter()
    for n in range(jobs):
        job.perform_async(n)
    elapsed = time.perf_counter() - started
    return {"us": elapsed / jobs * 1e6,
            "trips": (server_reads(server.client) - before - 1) / jobs}  # less the closing INFO


def drain_once(server: Server, kind: str, jobs: int) -> dict:
    client = server.client
    client.flushall()
    KINDS[kind].set(queue="staging").perform_bulk([[n] for n in range(jobs)])
    with tempfile.TemporaryDirectory() as tmp:
        worker = drain_worker(server.url, tmp, "flow_cost", [ROOT, HERE])
        try:
            drain = staged_drain(client, worker, jobs)
        finally:
            worker.terminate()
            worker.wait(60)
    if kind == "unique":
        assert not client.keys("forkq:unique:*"), "unique locks left after success"
    return drain


def main() -> None:
    parser = argparse.ArgumentParser()
    args, server = start_drain_bench(parser)
    try:
        print("\nWorker drain (INCR body, 1 process, 10 threads):")
        base = None
        for kind in KINDS:
            runs = [drain_once(server, kind, args.jobs) for _ in range(args.runs)]
            cpu = statistics.median(r["cpu_us"] for r in runs)
            trips = statistics.median(r["trips"] for r in runs)
            base = base or (cpu, trips)
            print(f"  {kind:<10} CPU {cpu:6.1f} µs/job (+{cpu - base[0]:5.1f})  round trips "
                  f"{trips:.2f}/job (+{trips - base[1]:.2f})")
        print("\nEnqueue one at a time (client process):")
        for kind in ("plain", "unique"):
            runs = [enqueue_once(server, kind, args.jobs) for _ in range(args.runs)]
            print(f"  {kind:<10} {statistics.median(r['us'] for r in runs):6.1f} µs/job  round "
                  f"trips {statistics.median(r['trips'] for r in runs):.2f}/job")
    finally:
        server.stop()


if __name__ == "__main__":
    import flow_cost  # the job classes as the worker names them (not ``__main__.Plain``)

    flow_cost.main()
