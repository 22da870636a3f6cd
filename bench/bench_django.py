"""The cost of running through Django's tasks backend: ``django.tasks`` against plain forkq.

Not a test. On a private Redis and the test project (``tests/django_project``, Django's own
settings, no database use), it prints per kind of job: microseconds per enqueue (one at a
time, in this process) and a worker's drain of the same jobs (one ``python -m forkq.worker``,
10 threads): jobs per second and worker CPU per job. The task backend writes a result per
task (``RESULT_TTL``), sends ``task_started``/``task_finished`` and closes stale database
connections around each job; plain forkq jobs keep no result.

    python bench/bench_django.py                  # 5,000 jobs of each kind
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
PROJECT = os.path.join(ROOT, "tests", "django_project")
sys.path[:0] = [ROOT, HERE, PROJECT]

from harness import Server, spawn_worker, wait_until  # noqa: E402


def setup_django(url: str, db: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE="project.settings", SHOP_REDIS_URL=url, SHOP_DB=db)
    import django

    django.setup()


def enqueue_cost(enqueue, jobs: int) -> float:
    started = time.perf_counter()
    for _ in range(jobs):
        enqueue()
    return (time.perf_counter() - started) / jobs * 1e6


def drain(server: Server, tmp: str, jobs: int) -> tuple[float, float]:
    """Run a worker over what is queued; (jobs per second, worker CPU µs per job)."""
    config = {"redis_url": server.url, "require": ["shop.tasks", "django_jobs"],
              "queues": ["default"], "concurrency": 10, "heartbeat_interval": 1,
              "poll_interval": 1, "logfile": os.path.join(tmp, "log"), "loglevel": "warn",
              "data_dir": tmp}
    worker = spawn_worker(config, tmp, [ROOT, HERE, PROJECT], cwd=PROJECT)
    process = psutil.Process(worker.pid)
    client = server.client
    try:
        wait_until(lambda: int(client.get("stat:processed") or 0) >= 1, timeout=60)
        cpu_before, started = sum(process.cpu_times()[:2]), time.perf_counter()
        first = int(client.get("stat:processed"))
        wait_until(lambda: int(client.get("stat:processed") or 0) >= jobs, timeout=600)
        elapsed = time.perf_counter() - started
        cpu = sum(process.cpu_times()[:2]) - cpu_before
    finally:
        worker.terminate()
        worker.wait(60)
    done = jobs - first
    return done / elapsed, cpu / done * 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args(argv)
    server = Server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            setup_django(server.url, os.path.join(tmp, "db.sqlite3"))
            import forkq

            import django_jobs
            from shop.tasks import add

            forkq.configure(redis_url=server.url, namespace="")
            kinds = {"django.tasks (add.enqueue)": lambda: add.enqueue(1, 2),
                     "plain forkq (add.perform_async)": lambda: django_jobs.add.perform_async(1, 2)}
            print("| jobs | enqueue µs each | drain jobs/s | worker CPU µs per job |")
            print("| --- | --- | --- | --- |")
            for name, enqueue in kinds.items():
                server.client.flushall()
                cost = enqueue_cost(enqueue, args.jobs)
                rate, cpu = drain(server, tmp, args.jobs)
                print(f"| {name} | {cost:.0f} | {rate:,.0f} | {cpu:.0f} |", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
