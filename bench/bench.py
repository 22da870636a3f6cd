"""forkq benchmark: drain rate, enqueue rate, idle latency, RSS and Redis round trips per job.

Not a test: it prints figures, each the median of several runs (min and max beside it).
Runs against a private redis-server on a loopback TCP port, started and stopped here.

    python bench/bench.py                 # everything, 3 runs each, 100,000 jobs
    python bench/bench.py --jobs 20000 --runs 1 --only drain

The comparison with Ruby Sidekiq, side by side in one run, is ``compare.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

import bench_jobs  # noqa: E402
from harness import Server, percentile, wait_until  # noqa: E402


def commands(client) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in client.info("commandstats").items()}


def spawn_worker(url: str, fetch: str, processes: int, tmp: str, queues=None) -> subprocess.Popen:
    config = {"redis_url": url, "require": ["bench_jobs"], "concurrency": 10, "fetch": fetch,
              "loglevel": os.environ.get("BENCH_LOGLEVEL", "info"), "logfile": os.path.join(tmp, "worker.log"),
              "queues": queues or ["default"], "heartbeat_interval": 1, "poll_interval": 1,
              "processes": processes, "metrics": {"port": None}, "data_dir": tmp}
    path = os.path.join(tmp, "forkq.yml")
    with open(path, "w") as handle:
        json.dump(config, handle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE]))
    command = ([sys.executable, "-m", "forkq.cli", "start", "-c", path] if processes > 1
               else [sys.executable, "-m", "forkq.worker", "-c", path])
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tree_rss_mb(process: subprocess.Popen) -> list[float]:
    parent = psutil.Process(process.pid)
    return [round(p.memory_info().rss / 2**20, 1) for p in [parent] + parent.children()
            if "redis" not in " ".join(p.cmdline())]


def tree_cpu_seconds(process: subprocess.Popen) -> float:
    parent = psutil.Process(process.pid)
    return sum(sum(p.cpu_times()[:2]) for p in [parent] + parent.children()
               if "redis" not in " ".join(p.cmdline()))


def drain_once(server: Server, body: str, fetch: str, processes: int, jobs: int) -> dict:
    client = server.client
    client.flushall()
    job = {"empty": bench_jobs.Empty, "incr": bench_jobs.Incr}[body]
    job.perform_bulk([[i] for i in range(jobs)])
    with tempfile.TemporaryDirectory() as tmp:
        worker = spawn_worker(server.url, fetch, processes, tmp)
        try:
            wait_until(lambda: client.scard("processes") >= processes, timeout=60)
            idle_rss = tree_rss_mb(worker)
            before = commands(client)
            cpu_before = tree_cpu_seconds(worker)
            started = time.perf_counter()
            wait_until(lambda: int(client.get("stat:processed") or 0) >= jobs
                       and client.llen("queue:default") == 0)
            elapsed = time.perf_counter() - started
            after = commands(client)
            cpu = tree_cpu_seconds(worker) - cpu_before
            rss = tree_rss_mb(worker)
        finally:
            worker.terminate()
            worker.wait(60)
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    fetch_calls = sum(v for k, v in calls.items() if k in FETCH_COMMANDS)
    return {"rate": jobs / elapsed, "idle_rss": idle_rss, "rss": rss, "cpu_us": cpu / jobs * 1e6,
            "calls_per_job": fetch_calls / jobs, "commands_per_job": sum(calls.values()) / jobs}


#: the commands a worker sends to fetch (the rest run inside its Lua scripts, or in job bodies)
FETCH_COMMANDS = {"cmdstat_evalsha", "cmdstat_eval", "cmdstat_blmove", "cmdstat_brpop"}


def enqueue_rates(server: Server, jobs: int) -> dict:
    server.client.flushall()
    started = time.perf_counter()
    bench_jobs.Empty.perform_bulk([[i] for i in range(jobs)])
    bulk = jobs / (time.perf_counter() - started)
    single_jobs = max(2000, jobs // 10)
    started = time.perf_counter()
    for i in range(single_jobs):
        bench_jobs.Empty.perform_async(i)
    single = single_jobs / (time.perf_counter() - started)
    return {"bulk": bulk, "single": single}


def latency_once(server: Server, samples: int) -> dict:
    client = server.client
    client.flushall()
    queues = [["first", 3], ["second", 2], ["last", 1]]
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        worker = spawn_worker(server.url, "reliable", 1, tmp, queues=queues)
        try:
            wait_until(lambda: client.scard("processes") >= 1, timeout=60)
            time.sleep(1.5)
            for queue in ("first", "last"):
                values = []
                for _ in range(samples):
                    bench_jobs.Probe.set(queue=queue).perform_async(time.time())
                    # Block rather than poll: a polling loop would compete for the two CPUs
                    # with the worker and Redis, and its cost would show as latency.
                    _, waited = client.blpop("bench:latency", timeout=10)
                    values.append(float(waited) * 1000)
                    time.sleep(0.01)
                result[queue] = (percentile(values, 50), percentile(values, 99))
        finally:
            worker.terminate()
            worker.wait(60)
    return result


def idle_ping_ms(client, samples: int) -> tuple[float, float]:
    """The floor under idle latency: one PING after 10 ms of quiet (p50, p99)."""
    values = []
    for _ in range(samples):
        time.sleep(0.01)
        started = time.perf_counter()
        client.ping()
        values.append((time.perf_counter() - started) * 1000)
    return percentile(values, 50), percentile(values, 99)


def summary(values) -> str:
    return f"{statistics.median(values):>10,.0f}  (min {min(values):,.0f}, max {max(values):,.0f})"


def run_drains(server, args) -> None:
    print(f"\nDrain of {args.jobs:,} pre-enqueued jobs, 10 threads per process, jobs/s "
          f"(median of {args.runs}):")
    for processes in args.processes:
        for fetch in ("reliable", "basic"):
            for body in ("empty", "incr"):
                runs = [drain_once(server, body, fetch, processes, args.jobs)
                        for _ in range(args.runs)]
                print(f"  {processes} proc  {fetch:<8} {body:<5} {summary([r['rate'] for r in runs])}"
                      f"  worker CPU µs/job {statistics.median(r['cpu_us'] for r in runs):.1f}"
                      f"  fetch round trips/job {statistics.median(r['calls_per_job'] for r in runs):.2f}"
                      f"  redis commands/job {statistics.median(r['commands_per_job'] for r in runs):.2f}"
                      f"  RSS MB idle {runs[-1]['idle_rss']} after {runs[-1]['rss']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    parser.add_argument("--only", choices=["drain", "enqueue", "latency"])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    server = Server()
    forkq.configure(redis_url=server.url)
    print(f"forkq {forkq.__version__}, Python {sys.version.split()[0]}, redis-server "
          f"{server.client.info('server')['redis_version']} on 127.0.0.1 TCP, "
          f"{os.cpu_count()} CPUs")
    try:
        if args.only in (None, "enqueue"):
            rates = [enqueue_rates(server, args.jobs) for _ in range(args.runs)]
            print(f"\nEnqueue, jobs/s (median of {args.runs}):")
            print(f"  bulk (perform_bulk)     {summary([r['bulk'] for r in rates])}")
            print(f"  one at a time           {summary([r['single'] for r in rates])}")
        if args.only in (None, "latency"):
            runs = [latency_once(server, args.samples) for _ in range(args.runs)]
            print(f"\nIdle latency, enqueue to start, ms over {args.samples} jobs (median of "
                  f"{args.runs}); weighted queues first:3 second:2 last:1:")
            for queue in ("first", "last"):
                p50 = statistics.median(r[queue][0] for r in runs)
                p99 = statistics.median(r[queue][1] for r in runs)
                print(f"  {queue:<6} p50 {p50:.3f}  p99 {p99:.3f}")
            p50, p99 = idle_ping_ms(server.client, args.samples)
            print(f"  floor: one PING after 10 ms idle  p50 {p50:.3f}  p99 {p99:.3f}")
        if args.only in (None, "drain"):
            run_drains(server, args)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
