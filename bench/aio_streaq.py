"""streaq's side of ``compare_async.py``: the ``Worker`` and the push (``enqueue_many``, one
pipeline a ``CHUNK``)."""

import os

from streaq import Worker

import aio_body

CHUNK = 1000
worker = Worker(redis_url=os.environ["BENCH_REDIS_URL"],
                concurrency=int(os.environ.get("BENCH_AT_ONCE", "100")))


@worker.task
async def incr() -> None:
    await aio_body.incr()


@worker.task
async def sleep() -> None:
    await aio_body.sleep()


@worker.task
async def probe(stamp: float) -> None:
    await aio_body.probe(stamp)


TASKS = {"incr": incr, "sleep": sleep, "probe": probe}


async def open_producer() -> None:
    await worker.__aenter__()


async def close_producer() -> None:
    await worker.__aexit__(None, None, None)


async def push(body: str, count: int, args: list) -> None:
    if count == 1:
        await TASKS[body].enqueue(*args)
        return
    for start in range(0, count, CHUNK):
        await worker.enqueue_many([TASKS[body].enqueue(*args)
                                   for _ in range(min(CHUNK, count - start))])


def run() -> None:
    worker.run_sync()
