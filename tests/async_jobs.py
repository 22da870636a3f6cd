"""Coroutine jobs (and result-keeping jobs) for the tests of ``worker/coroutines.py`` and results, run by
in-process workers and by ``forkq start`` children (``require: [async_jobs]``).

Each records in Redis what it did, through forkq's client (a worker points it at its Redis):

| key | type | written by |
| --- | --- | --- |
| ``async:runs`` | hash jid → times the job finished | every job, at its end |
| ``async:started`` | hash jid → times the job started | ``Nap``, ``Flaky`` |
| ``async:peak`` | string: most ``Nap`` jobs running at once in one process | ``Nap`` |
| ``async:single`` | list of "jid start end holders" while holding ``SINGLE`` | ``Single`` |
| ``async:gate`` | string: set by a test to let ``Gated`` and ``GatedThreaded`` jobs end | the test |
"""

from __future__ import annotations

import asyncio
import time

import forkq
from forkq import Job, aio, client, limiter

#: Nap jobs running now in this process (all on its one event loop thread)
_running = 0


def _redis():
    return client.default().redis


class Nap(Job):
    options = {"retry": 0}

    async def perform(self, seconds: float) -> str:
        global _running
        _running += 1
        redis = _redis()
        redis.hincrby("async:started", self.jid, 1)
        redis.eval("if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
                   "redis.call('SET', KEYS[1], ARGV[1]) end", 1, "async:peak", _running)
        try:
            await asyncio.sleep(seconds)
        finally:
            _running -= 1
        redis.hincrby("async:runs", self.jid, 1)
        return f"slept {seconds}"


#: seconds between a gated job's looks at ``async:gate``
GATE_POLL = 0.05


class Gated(Job):
    """Runs until the test sets ``async:gate``, waiting on the loop's client (no thread held)."""
    options = {"retry": 0}

    async def perform(self) -> None:
        redis = aio.redis()
        while not await redis.exists("async:gate"):
            await asyncio.sleep(GATE_POLL)
        await redis.hincrby("async:runs", self.jid, 1)


class GatedThreaded(Job):
    """``Gated`` as a threaded job: holds its processor thread until the gate opens."""
    options = {"retry": 0}

    def perform(self) -> None:
        redis = _redis()
        while not redis.exists("async:gate"):
            time.sleep(GATE_POLL)
        redis.hincrby("async:runs", self.jid, 1)


class Flaky(Job):
    """Fails its first run, then returns its argument; retried at once."""
    options = {"retry_in": lambda count, exc: 0.01}

    async def perform(self, value):
        await asyncio.sleep(0)
        if _redis().hincrby("async:started", self.jid, 1) == 1:
            raise ValueError(f"first run of {value}")
        _redis().hincrby("async:runs", self.jid, 1)
        return value


class Blocker(Job):
    """A coroutine job with the user's bug: a blocking call."""

    async def perform(self, seconds: float) -> None:
        time.sleep(seconds)
        _redis().hincrby("async:runs", self.jid, 1)


@forkq.job(queue="default")
async def double(value):
    await asyncio.sleep(0.01)
    _redis().hincrby("async:runs", "double", 1)
    return value * 2


class Square(Job):
    """A threaded job that keeps its result."""
    options = {"result_ttl": 60, "retry": False}

    def perform(self, value):
        if value < 0:
            raise ValueError(f"{value} has no square here")
        return value * value


class OwnResult(Job):
    """Records its own results: the worker must not."""
    records_own_result = True

    def perform(self):
        return "mine"


class FlakyThreaded(Job):
    """``Flaky`` as a threaded job."""
    options = {"retry_in": lambda count, exc: 0.01}

    def perform(self, value):
        if _redis().hincrby("async:started", self.jid, 1) == 1:
            raise ValueError(f"first run of {value}")
        return value


class UniqueNap(Job):
    """A unique coroutine job; records whether its lock was still held while it ran."""
    options = {"unique_for": 60, "retry": 0}

    async def perform(self, key):
        redis = _redis()
        held = bool(redis.keys("forkq:unique:*"))
        redis.rpush("async:lock_while_running", "held" if held else "free")
        await asyncio.sleep(0)
        redis.hincrby("async:runs", self.jid, 1)


class Overrun(Job):
    """Sleeps past its time limit; records that it was cancelled and cleaned up."""
    options = {"time_limit": 0.3, "retry": 0}

    async def perform(self):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            _redis().rpush("async:cleaned_up", self.jid)
            raise


ONE_AT_A_TIME = limiter.window("async-window", 1, 2)


class WindowedNap(Job):
    """One per two-second window across the system: the second is rescheduled, not failed."""
    options = {"retry": 0}

    async def perform(self, n):
        with ONE_AT_A_TIME:
            _redis().rpush("async:windowed", f"{n} {time.time()}")


SINGLE = limiter.concurrent("async-single", 1, lock_timeout=30, retry_wait=(0.05, 0.1))


class Single(Job):
    """One at a time across every process (``async with SINGLE``); records its span and the
    holders the limiter counted meanwhile, on the loop's asyncio client."""
    options = {"retry": 0}

    async def perform(self):
        async with SINGLE:
            redis = aio.redis()
            started = time.time()
            await asyncio.sleep(0.05)
            holders = await redis.zcard(client.default().keys.limiter("concurrent",
                                                                      "async-single"))
            await redis.rpush("async:single", f"{self.jid} {started!r} {time.time()!r} {holders}")


class SingleThreaded(Job):
    """``Single``'s limiter in a thread job (``with SINGLE``); records its jid."""
    options = {"retry": 0}

    def perform(self):
        with SINGLE:
            _redis().rpush("async:single", self.jid)
