"""forkq's side of ``compare_async.py``: the bodies as coroutine jobs, pushed in bulk."""

import os

import aio_body
import forkq
import forkq.aio

forkq.configure(redis_url=os.environ["BENCH_REDIS_URL"])


@forkq.job
async def incr():
    await aio_body.incr()


@forkq.job
async def sleep():
    await aio_body.sleep()


@forkq.job
async def probe(stamp):
    await aio_body.probe(stamp)


JOBS = {"incr": incr, "sleep": sleep, "probe": probe}


async def open_producer() -> None:
    pass


async def close_producer() -> None:
    await forkq.aio.aclose()


async def push(body: str, count: int, args: list) -> None:
    if count == 1:
        await forkq.aio.perform_async(JOBS[body], *args)
    else:
        await forkq.aio.perform_bulk(JOBS[body], [args] * count)
