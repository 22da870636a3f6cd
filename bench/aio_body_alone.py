"""The coroutine body of ``compare_async.py`` alone, beside its synchronous twin: what one
``await redis.incr()`` on ``aio_body``'s ``redis.asyncio`` client costs, ``--at-once`` calls
in flight on one event loop, against one ``INCR`` on a synchronous ``redis.Redis``, with no
job system around either. The part of a coroutine job's CPU that is its body's, not forkq's.

    python bench/aio_body_alone.py                 # 20,000 calls each, 100 at once
    python bench/aio_body_alone.py --calls 50 --at-once 10

Prints this process's CPU (user + system) per call of each, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import redis  # noqa: E402

import aio_body  # noqa: E402
from harness import Server  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def asynchronous(calls: int, at_once: int) -> float:
    """CPU seconds per ``aio_body.incr()``, ``at_once`` in flight (after a warm-up that opens
    the client's connections)."""
    room = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with room:
            await aio_body.incr()

    await asyncio.gather(*[one() for _ in range(at_once * 2)])
    before = cpu_seconds()
    await asyncio.gather(*[one() for _ in range(calls)])
    return (cpu_seconds() - before) / calls


def synchronous(url: str, calls: int) -> float:
    client = redis.Redis.from_url(url)
    client.incr(aio_body.COUNTER)
    before = cpu_seconds()
    for _ in range(calls):
        client.incr(aio_body.COUNTER)
    return (cpu_seconds() - before) / calls


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--at-once", type=int, default=100)
    args = parser.parse_args(argv)
    server = Server()
    os.environ["BENCH_REDIS_URL"] = server.url  # aio_body's client reads it
    try:
        figures = {"async_us": asyncio.run(asynchronous(args.calls, args.at_once)) * 1e6,
                   "sync_us": synchronous(server.url, args.calls) * 1e6}
    finally:
        server.stop()
    print(f"await redis.incr() ({args.at_once} at once): {figures['async_us']:.0f} µs of CPU a "
          f"call; redis.Redis.incr(): {figures['sync_us']:.0f} µs; ratio "
          f"{figures['async_us'] / figures['sync_us']:.2f} (load average {os.getloadavg()[0]:.2f})")
    return figures


if __name__ == "__main__":
    main()
