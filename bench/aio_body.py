"""The coroutine job bodies of ``compare_async.py``, shared by every system under test.

Each body talks to Redis through one module-level ``redis.asyncio`` client, made on first use
in the worker's event loop (``BENCH_REDIS_URL``), as an application module would hold it,
never through the job system's own connections. Every body ends with the ``INCR`` that the
harness counts completions by: ``incr`` is that ``INCR`` alone, ``sleep`` waits 10 ms first,
``probe`` pushes its enqueue-to-start delay for the latency figures.
"""

import asyncio
import os
import time

import redis.asyncio

COUNTER = "bench:counter"
LATENCY = "bench:latency"
#: seconds the ``sleep`` body waits
NAP = 0.01

_client = None


def client() -> redis.asyncio.Redis:
    global _client
    if _client is None:
        _client = redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


async def incr() -> None:
    await client().incr(COUNTER)


async def sleep() -> None:
    await asyncio.sleep(NAP)
    await client().incr(COUNTER)


async def probe(stamp: float) -> None:
    """Started ``time.time() - stamp`` seconds after its push."""
    await client().rpush(LATENCY, time.time() - stamp)


BODIES = {"incr": incr, "sleep": sleep, "probe": probe}
