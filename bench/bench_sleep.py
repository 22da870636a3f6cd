"""Coroutine jobs against threaded jobs: 10,000 jobs that each wait 0.1 s, one worker process.

Not a test: it prints, per setting, the time to drain the queue, the jobs per second, the peak
RSS of the worker process (sampled every 50 ms) and its CPU time. Coroutine jobs
(``await asyncio.sleep(0.1)``) run on the worker's event loop with ``async_concurrency``;
threaded jobs (``time.sleep(0.1)``) with ``concurrency`` threads. The floor of a drain is
jobs × 0.1 s / jobs at once.

    python bench/bench_sleep.py                    # 10,000 jobs; async 100 and 1000, threads 10, 100
    python bench/bench_sleep.py --jobs 2000 --only async:100 threads:100
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

import forkq  # noqa: E402

import sleep_jobs  # noqa: E402
from harness import Server, spawn_worker, wait_until  # noqa: E402

#: the settings compared: name → (job class, config keys)
SETTINGS = {
    "async:100": (sleep_jobs.AsyncNap, {"concurrency": 10, "async_concurrency": 100}),
    "async:1000": (sleep_jobs.AsyncNap, {"concurrency": 10, "async_concurrency": 1000}),
    "threads:10": (sleep_jobs.ThreadNap, {"concurrency": 10}),
    "threads:100": (sleep_jobs.ThreadNap, {"concurrency": 100}),
}


def spawn_sleep_worker(url: str, tmp: str, keys: dict):
    config = {"redis_url": url, "require": ["sleep_jobs"], "queues": ["default"],
              "heartbeat_interval": 1, "poll_interval": 1, "logfile": os.path.join(tmp, "log"),
              "data_dir": tmp, "metrics": {"port": None}, **keys}
    return spawn_worker(config, tmp, [ROOT, HERE])


def drain(server: Server, name: str, jobs: int, seconds: float) -> dict:
    job, keys = SETTINGS[name]
    client = server.client
    client.flushall()
    job.perform_bulk([[seconds] for _ in range(jobs)])
    with tempfile.TemporaryDirectory() as tmp:
        worker = spawn_sleep_worker(server.url, tmp, keys)
        process = psutil.Process(worker.pid)
        try:
            wait_until(lambda: client.scard("processes") >= 1, timeout=60)
            cpu_before = sum(process.cpu_times()[:2])
            peak_rss = process.memory_info().rss
            started = time.perf_counter()
            while int(client.get("stat:processed") or 0) < jobs:
                peak_rss = max(peak_rss, process.memory_info().rss)
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu = sum(process.cpu_times()[:2]) - cpu_before
        finally:
            worker.terminate()
            worker.wait(60)
    return {"setting": name, "jobs": jobs, "drain_s": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed), "peak_rss_mb": round(peak_rss / 2**20, 1),
            "cpu_s": round(cpu, 2), "floor_s": round(jobs * seconds / _at_once(keys), 2)}


def _at_once(keys: dict) -> int:
    return keys.get("async_concurrency", keys["concurrency"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args(argv)
    server = Server()
    forkq.configure(redis_url=server.url, namespace="")
    try:
        print("| setting | jobs | drain s | jobs/s | floor s | peak RSS MB | worker CPU s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name in args.only:
            row = drain(server, name, args.jobs, args.seconds)
            print(f"| {name} | {row['jobs']} | {row['drain_s']} | {row['jobs_per_s']} | "
                  f"{row['floor_s']} | {row['peak_rss_mb']} | {row['cpu_s']} |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
