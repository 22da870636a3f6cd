"""taskiq's side of ``compare_async.py``: taskiq-redis's ``ListQueueBroker`` (LPUSH/BRPOP, no
acknowledgement: its fastest), no result backend, and the push (``kiq``, one call a job,
gathered ``CHUNK`` at a time). The worker is taskiq's CLI, a master and one worker process."""

import asyncio
import os

from taskiq_redis import ListQueueBroker

import aio_body

CHUNK = 50
broker = ListQueueBroker(os.environ["BENCH_REDIS_URL"])


@broker.task(task_name="incr")
async def incr():
    await aio_body.incr()


@broker.task(task_name="sleep")
async def sleep():
    await aio_body.sleep()


@broker.task(task_name="probe")
async def probe(stamp):
    await aio_body.probe(stamp)


TASKS = {"incr": incr, "sleep": sleep, "probe": probe}


async def open_producer() -> None:
    await broker.startup()


async def close_producer() -> None:
    await broker.shutdown()


async def push(body: str, count: int, args: list) -> None:
    for start in range(0, count, CHUNK):
        await asyncio.gather(*(TASKS[body].kiq(*args) for _ in range(min(CHUNK, count - start))))
