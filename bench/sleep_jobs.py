"""Job bodies of ``bench_sleep.py``: 0.1 s of waiting, as a coroutine and as a thread."""

import asyncio
import time

import forkq


class AsyncNap(forkq.Job):
    async def perform(self, seconds):
        await asyncio.sleep(seconds)


class ThreadNap(forkq.Job):
    def perform(self, seconds):
        time.sleep(seconds)
