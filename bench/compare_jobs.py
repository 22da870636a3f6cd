"""The job bodies of the side-by-side benchmark (``compare.py``), in Python; ``compare_jobs.rb``
holds the same bodies for Ruby Sidekiq, under the same wire names.

Each body talks to Redis through one module-level client, as an application module would
hold it (``BENCH_REDIS_URL``), never through forkq's own connections.
"""

import os
import threading
import time

import redis

import forkq

#: the application's client: one per process, shared by every thread
REDIS = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
COUNTER = "bench:counter"
#: "<count> <time>" pushed by the first and the last completed job, for the harness to block on
MARKS = "bench:marks"
LATENCY = "bench:latency"
#: what the threads of body_alone.py wait on before they start
GO = "bench:go"


def incr(total: int) -> int:
    """One INCR; the first and the last of ``total`` completions also push a mark."""
    count = REDIS.incr(COUNTER)
    if count == 1 or count == total:
        REDIS.rpush(MARKS, f"{count} {time.time()}")
    return count


def run_threads(target, count: int) -> None:
    """Run ``target(index)`` in ``count`` threads and wait for them all (the loops without a
    job system: ``body_alone.py``, ``floor_loop.py``)."""
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class BenchIncr(forkq.Job):
    name = "BenchIncr"

    def perform(self, total):
        incr(total)


class BenchProbe(forkq.Job):
    """Records the seconds between its enqueue (its argument) and its start."""

    name = "BenchProbe"

    def perform(self, sent_at):
        REDIS.rpush(LATENCY, time.time() - sent_at)
