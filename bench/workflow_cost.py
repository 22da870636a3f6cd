"""What a batch adds to a job, and how long a chain step takes, side by side with plain jobs.

Not a test: it prints figures. On a private redis-server on loopback TCP, one worker process
of 10 threads:

- drain: the same ``INCR`` body drained from a queue filled beforehand, as plain jobs and as
  the members of one batch (with a success callback); worker CPU, Redis server CPU (``INFO
  cpu`` deltas) and Redis round trips per job;
- latency: a chain of ``--steps`` steps of the same body, from ``perform_async`` to its last
  step's result, per step; beside it a plain job's enqueue → result, one job at a time.

    python bench/workflow_cost.py                  # 20,000 jobs, median of 3 runs
    python bench/workflow_cost.py --jobs 5000 --runs 1

Round trips are the server's reads (``INFO``'s ``total_reads_processed``), less the harness's
own (its rename that starts a drain, its polls, its closing ``INFO``); they include the body's
one ``INCR`` a job and the worker's heartbeats.
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

from harness import Server, start_drain_bench, drain_worker, staged_drain, wait_until  # noqa: E402


class Body(forkq.Job):
    def perform(self, *args):
        forkq.redis().incr("bench:counter")
        return 1


class Done(forkq.Job):
    def perform(self, bid, event, data):
        forkq.redis().set("bench:callback", event)


def start_worker(url: str, tmp: str):
    return drain_worker(url, tmp, "workflow_cost", [ROOT, HERE])


def fill(kind: str, jobs: int) -> None:
    args = [[n] for n in range(jobs)]
    if kind == "plain":
        Body.set(queue="staging").perform_bulk(args)
        return
    with forkq.batch(on_success=Done, callback_queue="default"):
        Body.set(queue="staging").perform_bulk(args)


def drain_once(server: Server, kind: str, jobs: int) -> dict:
    client = server.client
    client.flushall()
    fill(kind, jobs)
    with tempfile.TemporaryDirectory() as tmp:
        worker = start_worker(server.url, tmp)
        try:
            drain = staged_drain(client, worker, jobs)
            if kind == "batch":
                wait_until(lambda: client.get("bench:callback") == "success", timeout=30)
        finally:
            worker.terminate()
            worker.wait(60)
    return drain


def latency_once(server: Server, steps: int) -> dict:
    server.client.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        worker = start_worker(server.url, tmp)
        try:
            wait_until(lambda: server.client.scard("processes") >= 1, timeout=60)
            time.sleep(1.0)
            plain = []
            for _ in range(steps):
                started = time.perf_counter()
                jid = Body.set(result_ttl=60).perform_async()
                wait_until(lambda: (r := forkq.result(jid)) and r.finished, interval=0.0005)
                plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            jid = forkq.chain(*[Body.si() for _ in range(steps)]).perform_async()
            wait_until(lambda: (r := forkq.result(jid)) and r.finished, interval=0.0005)
            chained = (time.perf_counter() - started) / steps
        finally:
            worker.terminate()
            worker.wait(60)
    return {"plain_ms": statistics.median(plain) * 1e3, "step_ms": chained * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    args, server = start_drain_bench(parser)
    try:
        print("\nWorker drain (INCR body, 1 process, 10 threads):")
        base = None
        for kind in ("plain", "batch"):
            runs = [drain_once(server, kind, args.jobs) for _ in range(args.runs)]
            cpu, redis_us, trips = (statistics.median(r[name] for r in runs)
                                    for name in ("cpu_us", "redis_us", "trips"))
            base = base or (cpu, redis_us, trips)
            print(f"  {kind:<6} worker CPU {cpu:6.1f} µs/job (+{cpu - base[0]:5.1f})  Redis CPU "
                  f"{redis_us:5.1f} µs/job (+{redis_us - base[1]:5.1f})  round trips "
                  f"{trips:.2f}/job (+{trips - base[2]:.2f})")
        print(f"\nLatency ({args.steps} steps, 1 process, 10 threads):")
        runs = [latency_once(server, args.steps) for _ in range(args.runs)]
        print(f"  plain job, enqueue → result (median): "
              f"{statistics.median(r['plain_ms'] for r in runs):.2f} ms")
        print(f"  chain step, per step:                 "
              f"{statistics.median(r['step_ms'] for r in runs):.2f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    import workflow_cost  # the job classes as the worker names them (not ``__main__.Body``)

    workflow_cost.main()
