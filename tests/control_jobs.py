"""Jobs for the pause and cancel tests, run by real worker processes.

Each records what it saw in Redis through ``forkq.redis()``:

| key | type | written by |
| --- | --- | --- |
| ``control:runs`` | list of "queue value" | ``Media``, ``Plain`` |
| ``control:started`` | list of jids | ``Sleeper``, ``AsyncSleeper``, ``Stubborn`` |
| ``control:finished`` | list of jids | ``Sleeper``, ``AsyncSleeper`` when they end normally |
| ``control:cleaned`` | list of "jid cancelled()" | ``Sleeper``'s and ``AsyncSleeper``'s ``finally`` |
"""

from __future__ import annotations

import asyncio
import time

import forkq


class Media(forkq.Job):
    options = {"queue": "media"}

    def perform(self, value):
        forkq.redis().rpush("control:runs", f"media {value}")


class Plain(forkq.Job):
    def perform(self, value):
        forkq.redis().rpush("control:runs", f"default {value}")


class Sleeper(forkq.Job):
    """Runs ``seconds`` in short sleeps (a cancel arrives between two of them)."""

    def perform(self, seconds):
        redis = forkq.redis()
        redis.rpush("control:started", self.jid)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.02)
            redis.rpush("control:finished", self.jid)
        finally:
            redis.rpush("control:cleaned", f"{self.jid} {self.cancelled()}")


class AsyncSleeper(forkq.Job):
    async def perform(self, seconds):
        redis = forkq.redis()
        redis.rpush("control:started", self.jid)
        try:
            await asyncio.sleep(seconds)
            redis.rpush("control:finished", self.jid)
        finally:
            redis.rpush("control:cleaned", f"{self.jid} {self.cancelled()}")


class Stubborn(forkq.Job):
    """Catches its cancel and goes on sleeping: handled as stuck."""

    def perform(self, seconds):
        forkq.redis().rpush("control:started", self.jid)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                time.sleep(0.02)
            except forkq.Cancelled:
                pass
