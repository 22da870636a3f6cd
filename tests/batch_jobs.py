"""Jobs for the batch, chain and chord tests, recording what they did through
``forkq.redis()`` so a test in this process or another can wait on it:

| key | type | written by |
| --- | --- | --- |
| ``batch:ran`` | list of jids | ``Record``, ``Flaky``, ``Spawner``, ``Parent``, ``Slowish``... |
| ``batch:callbacks`` | list of JSON ``[bid, event, data]`` | ``Callback`` |
| ``batch:flaky:<key>`` | string: runs so far | ``Flaky`` |
"""

from __future__ import annotations

import json
import time

import forkq


def _ran(job) -> None:
    forkq.redis().rpush("batch:ran", job.jid)


class Record(forkq.Job):
    def perform(self, *args):
        _ran(self)


class Slowish(forkq.Job):
    """Takes a little while, so a kill lands while jobs of the batch are running."""

    def perform(self, index):
        time.sleep(0.002)
        _ran(self)


class Callback(forkq.Job):
    def perform(self, bid, event, data):
        forkq.redis().rpush("batch:callbacks", json.dumps([bid, event, data]))


class Flaky(forkq.Job):
    """Fails on its first run (per key); retried at once."""

    options = {"retry_in": lambda count, exc: 0}

    def perform(self, key):
        if forkq.redis().incr(f"batch:flaky:{key}") == 1:
            raise RuntimeError(f"first run of {key}")
        _ran(self)


class Doomed(forkq.Job):
    options = {"retry": 0}

    def perform(self, *args):
        raise ValueError("doomed")


class Spawner(forkq.Job):
    """Adds ``count`` jobs to its own batch while running."""

    def perform(self, count):
        with forkq.batch.reopen(self.bid):
            for index in range(count):
                Record.perform_async(index)
        _ran(self)


class SpawnerByHandle(forkq.Job):
    """Adds ``count`` jobs to its own batch through its handle."""

    def perform(self, count):
        with self.batch:
            Record.perform_bulk([[index] for index in range(count)])
        _ran(self)


class Parent(forkq.Job):
    """Opens a child batch of ``count`` jobs."""

    def perform(self, count):
        with forkq.batch(on_success=Callback, on_complete=Callback, description="child"):
            for index in range(count):
                Flaky.perform_async(f"child-{self.jid}-{index}")
        _ran(self)


class Add(forkq.Job):
    def perform(self, *numbers):
        return sum(numbers)


class Mul(forkq.Job):
    def perform(self, a, b):
        return a * b


class Listed(forkq.Job):
    def perform(self, values, *extra):
        return {"values": values, "extra": list(extra)}


class Boom(forkq.Job):
    options = {"retry": 0}

    def perform(self, *args):
        raise RuntimeError(f"boom {args}")


class AsyncSquare(forkq.Job):
    async def perform(self, n):
        return n * n


class OverOnce(forkq.Job):
    """Over a limiter's limit on its first run (rescheduled, not failed)."""

    def perform(self, key):
        from forkq.limiter import OverLimit

        if forkq.redis().incr(f"batch:over:{key}") == 1:
            raise OverLimit("batch-test", 0.05)
        _ran(self)


class SlowFirst(forkq.Job):
    """Sleeps 3 s on its first run (long enough to be pushed back at a shutdown deadline)."""

    def perform(self):
        if forkq.redis().incr(f"batch:slow:{self.jid}") == 1:
            forkq.redis().rpush("batch:started", self.jid)
            time.sleep(3)
        _ran(self)
