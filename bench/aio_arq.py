"""arq's side of ``compare_async.py``: ``WorkerSettings`` and the push (``enqueue_job``, one
call a job on arq's pool, which has no bulk push: calls gathered ``CHUNK`` at a time)."""

import asyncio
import os

from arq import create_pool
from arq.connections import RedisSettings

import aio_body

REDIS = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
CHUNK = 50


async def incr(ctx):
    await aio_body.incr()


async def sleep(ctx):
    await aio_body.sleep()


async def probe(ctx, stamp):
    await aio_body.probe(stamp)


class WorkerSettings:
    functions = [incr, sleep, probe]
    redis_settings = REDIS
    max_jobs = int(os.environ.get("BENCH_AT_ONCE", "100"))
    # arq sleeps poll_delay between polls even while jobs wait (default 0.5 s, which would
    # cap 100 jobs at 200 a second): its fastest documented setting here
    poll_delay = 0.01
    keep_result = 0


_pool = None


async def open_producer() -> None:
    global _pool
    _pool = await create_pool(REDIS)


async def close_producer() -> None:
    await _pool.aclose()


async def push(body: str, count: int, args: list) -> None:
    for start in range(0, count, CHUNK):
        await asyncio.gather(*(_pool.enqueue_job(body, *args)
                               for _ in range(min(CHUNK, count - start))))


def run() -> None:
    from arq import run_worker
    run_worker(WorkerSettings)
