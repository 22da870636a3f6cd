"""What priority levels and fair shares add to a job: worker CPU and Redis CPU per job.

Not a test: it prints figures. Drains the same ``INCR`` body from one queue filled
beforehand, on a private redis-server on loopback TCP, one worker process of 10 threads
(``harness.staged_drain``), four ways in the same run:

- ``plain``: every job in ``queue:default`` (Sidekiq's list), no queue with levels or tenants;
- ``plain, guarded``: the same, but the queue is in ``forkq:prioritized`` and ``forkq:fair``
  (it had levels and tenants once), so every fetch looks for them and finds none;
- ``priority``: the jobs spread evenly over the levels 10, 5, 0, -5;
- ``fair``: the jobs spread evenly over ``--tenants`` tenants (``fair_key``);
- ``fair, limited``: the same with ``fair_limit=10``, a cap the 10 threads never reach, so
  the figures are the cost of counting (``flow/fairlimit.py``), not of waiting.

    python bench/placement_cost.py                  # 20,000 jobs each way, median of 3 runs
    python bench/placement_cost.py --jobs 5000 --runs 1 --tenants 1000

The staged jobs wait under the queue name ``staging`` (every key naming it: the list, the
level and tenant lists, their sorted sets) and are renamed to ``default`` in one MULTI once
the worker idles. Redis CPU is ``INFO cpu``'s user + system of the server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import os
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

from harness import Server, drain_worker, staged_drain, start_drain_bench  # noqa: E402

LEVELS = (10, 5, 0, -5)


class Plain(forkq.Job):
    options = {"queue": "staging"}

    def perform(self, n):
        forkq.redis().incr("bench:counter")


def stage(kind: str, jobs: int, tenants: int) -> int:
    """Push the jobs of ``kind`` under the queue name ``staging``; how many."""
    if kind == "priority":
        for level in LEVELS:
            Plain.set(priority=level).perform_bulk([[n] for n in range(jobs // len(LEVELS))])
        return jobs // len(LEVELS) * len(LEVELS)
    if kind.startswith("fair"):
        limit = {"fair_limit": 10} if kind == "fair, limited" else {}
        for tenant in range(tenants):
            Plain.set(fair_key=f"t{tenant}", **limit).perform_bulk(
                [[n] for n in range(jobs // tenants)])
        return jobs // tenants * tenants
    Plain.perform_bulk([[n] for n in range(jobs)])
    return jobs


def release(client) -> None:
    """Every key naming ``staging`` renamed to name ``default``, in one MULTI."""
    pipe = client.pipeline(transaction=True)
    for key in client.keys("*staging*"):
        pipe.rename(key, key.replace("staging", "default"))
    pipe.execute()


def drain_once(server: Server, kind: str, jobs: int, tenants: int) -> dict:
    client = server.client
    client.flushall()
    total = stage(kind, jobs, tenants)
    client.delete("forkq:bell:staging")
    if kind != "plain":  # the worker knows the queue had levels or tenants (its guard is on)
        client.sadd("forkq:prioritized", "default")
        client.sadd("forkq:fair", "default")
    with tempfile.TemporaryDirectory() as tmp:
        worker = drain_worker(server.url, tmp, "placement_cost", [ROOT, HERE])
        try:
            drain = staged_drain(client, worker, total, release)
        finally:
            worker.terminate()
            worker.wait(60)
    return drain


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=100)
    args, server = start_drain_bench(parser)
    try:
        print(f"\nWorker drain (INCR body, 1 process, 10 threads; fair: {args.tenants} tenants):")
        kinds = ("plain", "plain, guarded", "priority", "fair", "fair, limited")
        # Interleaved, so that the machine's load drifting during the run weighs on every kind.
        results = {kind: [] for kind in kinds}
        for _ in range(args.runs):
            for kind in kinds:
                results[kind].append(drain_once(server, kind, args.jobs, args.tenants))
        base = None
        for kind, runs in results.items():
            cpu = statistics.median(r["cpu_us"] for r in runs)
            redis_cpu = statistics.median(r["redis_us"] for r in runs)
            trips = statistics.median(r["trips"] for r in runs)
            base = base or (cpu, redis_cpu)
            print(f"  {kind:<15} worker CPU {cpu:6.1f} µs/job ({cpu / base[0]:.2f}×)  Redis CPU "
                  f"{redis_cpu:5.1f} µs/job ({redis_cpu / base[1]:.2f}×)  round trips "
                  f"{trips:.2f}/job")
    finally:
        server.stop()


if __name__ == "__main__":
    import placement_cost  # the job class as the worker names it (not ``__main__.Plain``)

    placement_cost.main()
