"""forkq's processor thread beside the minimal loop's thread (``floor_loop.py``), CPU per job
with a body that does nothing: what each does around a job, without the body's own cost.

Not a test: it prints figures.

    python bench/floor_thread.py                      # 20,000 jobs a drain, 7 runs
    python bench/floor_thread.py --other /tmp/old     # also an older checkout of forkq

One runner thread each: a ``python -m forkq.worker`` of one thread at WARN (no line per job),
and ``floor_loop.py``'s loop in one thread, both on a private redis-server. The body
(``Noop``) reads ``time.thread_time()`` at the first job and at the last one, in the thread
that runs them, so the figure is that thread's own CPU (its fetches included) over the jobs
between: no service thread, no master, no Redis and no body in it. ``--other`` adds a worker
run from another checkout of forkq (old code against new, in the same run). Each run goes
through every runner once, in alternating order, so a change in the machine's speed hits them
all alike; figures are the median with the min–max beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

from harness import Server, spawn_worker, wait_until  # noqa: E402

CPU = "bench:thread-cpu"
DONE = "bench:counter"
_count = itertools.count(1)
_first = [0.0]


def body(total: int) -> None:
    """Nothing, but at the first and the last of ``total`` jobs: the thread's CPU between."""
    count = next(_count)
    if count == 1:
        _first[0] = time.thread_time()
    elif count == total:
        import compare_jobs
        compare_jobs.REDIS.set(CPU, time.thread_time() - _first[0])
        compare_jobs.REDIS.set(DONE, total)


class Noop(forkq.Job):
    name = "BenchThreadNoop"

    def perform(self, total):
        body(total)


def floor_thread() -> None:
    """``floor_loop.py``'s loop, one thread, with ``body``."""
    import redis

    import compare_jobs
    from floor_loop import BATCH, FETCH
    own = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], single_connection_client=True)
    fetch = own.register_script(FETCH)
    lists = [f"bench:floor:{os.getpid()}:{side}" for side in "ab"]
    compare_jobs.REDIS.blpop(compare_jobs.GO)
    side = 0
    while True:
        jobs = fetch(keys=["queue:default", lists[side], lists[1 - side]], args=[BATCH])
        side = 1 - side
        if not jobs:
            return
        for text in jobs:
            body(*json.loads(text)["args"])


def drain(server, runner: str, root: str, jobs: int) -> float:
    """µs of the runner thread's CPU a job."""
    client = server.client
    client.flushall()
    Noop.set(queue="staging").perform_bulk([[jobs]] * jobs)
    with tempfile.TemporaryDirectory(prefix="forkq-floor-thread-") as tmp:
        if runner == "floor":
            process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--floor"],
                                       env=dict(os.environ, PYTHONPATH=HERE))
        else:
            config = {"redis_url": server.url, "require": ["floor_thread"], "concurrency": 1,
                      "loglevel": "warning", "metrics": {"port": None}, "data_dir": tmp}
            process = spawn_worker(config, tmp, [root, HERE])
        try:
            wait_until(lambda: int(client.info("clients")["blocked_clients"]) >= 1, timeout=60,
                       what=f"{runner} waiting")
            client.rename("queue:staging", "queue:default")
            client.rpush("bench:go", "go")
            wait_until(lambda: int(client.get(DONE) or 0) >= jobs, interval=0.01)
        finally:
            process.terminate()
            process.wait(30)
    return float(client.get(CPU)) / (jobs - 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--other", help="another checkout of forkq, run as a third runner")
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        return floor_thread()
    runners = {"forkq": ROOT, "floor": ""}
    if args.other:
        runners = {"forkq": ROOT, f"forkq at {args.other}": args.other, "floor": ""}
    server = Server()
    os.environ["BENCH_REDIS_URL"] = server.url
    forkq.configure(redis_url=server.url)
    load = os.getloadavg()[0]
    found: dict[str, list[float]] = {name: [] for name in runners}
    try:
        for number in range(args.runs):
            order = list(runners) if number % 2 == 0 else list(reversed(runners))
            for name in order:
                found[name].append(drain(server, "floor" if name == "floor" else "forkq",
                                         runners[name], args.jobs))
    finally:
        server.stop()
    print(f"{args.jobs:,} no-op jobs a drain, one runner thread, median of {args.runs} runs "
          f"(min–max), load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    floor = statistics.median(found["floor"])
    for name, values in found.items():
        ratio = statistics.median(values) / floor
        print(f"| {name} | {statistics.median(values):.1f} µs ({min(values):.1f}–"
              f"{max(values):.1f}) | {ratio:.2f}× the floor's |")


if __name__ == "__main__":
    main()
