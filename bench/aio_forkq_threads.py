"""forkq's thread jobs with the same bodies as ``aio_body.py``, on a module-level synchronous
client, for ``compare_async.py``'s ``forkq-threads`` row: what a coroutine job costs beside a
thread job doing the same work."""

import os
import time

import redis

import aio_body
import forkq

forkq.configure(redis_url=os.environ["BENCH_REDIS_URL"])
REDIS = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@forkq.job
def incr():
    REDIS.incr(aio_body.COUNTER)


@forkq.job
def sleep():
    time.sleep(aio_body.NAP)
    REDIS.incr(aio_body.COUNTER)


@forkq.job
def probe(stamp):
    REDIS.rpush(aio_body.LATENCY, time.time() - stamp)


JOBS = {"incr": incr, "sleep": sleep, "probe": probe}


async def open_producer() -> None:
    pass


async def close_producer() -> None:
    pass


async def push(body: str, count: int, args: list) -> None:
    if count == 1:
        JOBS[body].perform_async(*args)
    else:
        JOBS[body].perform_bulk([args] * count)
