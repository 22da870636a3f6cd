"""Job bodies the benchmark runs: nothing, one Redis round trip, and a latency probe."""

import time

import forkq
from forkq import aio


class Empty(forkq.Job):
    def perform(self, n):
        pass


class Incr(forkq.Job):
    def perform(self, n):
        forkq.redis().incr("bench:counter")


class AsyncIncr(forkq.Job):
    """``Incr`` as a coroutine job, on forkq's asyncio client (``forkq.aio.redis``)."""

    async def perform(self, n):
        await aio.redis().incr("bench:counter")


class Probe(forkq.Job):
    """Records how long the job waited between its enqueue and its start."""

    options = {"queue": "default"}

    def perform(self, sent_at):
        forkq.redis().rpush("bench:latency", time.time() - sent_at)
