"""SAQ's side of ``compare_async.py``: the worker ``settings`` and the push (``enqueue``, one
call a job, gathered ``CHUNK`` at a time)."""

import asyncio
import os

from saq import Queue

import aio_body

CHUNK = 50
queue = Queue.from_url(os.environ["BENCH_REDIS_URL"])


async def incr(ctx):
    await aio_body.incr()


async def sleep(ctx):
    await aio_body.sleep()


async def probe(ctx, *, stamp):
    await aio_body.probe(stamp)


settings = {"queue": queue, "functions": [incr, sleep, probe],
            "concurrency": int(os.environ.get("BENCH_AT_ONCE", "100"))}


#: the pushing side's queue, made in the loop that pushes (SAQ's binds to its loop)
_producer = None


async def open_producer() -> None:
    global _producer
    _producer = Queue.from_url(os.environ["BENCH_REDIS_URL"])
    await _producer.connect()


async def close_producer() -> None:
    await _producer.disconnect()


async def push(body: str, count: int, args: list) -> None:
    kwargs = {"stamp": args[0]} if args else {}
    for start in range(0, count, CHUNK):
        await asyncio.gather(*(_producer.enqueue(body, **kwargs)
                               for _ in range(min(CHUNK, count - start))))


def run() -> None:
    from saq.worker import start
    start("aio_saq.settings")
