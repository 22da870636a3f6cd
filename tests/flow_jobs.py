"""Jobs for the flow-control tests (unique locks, limiters, time limits, expiry).

Each records what it saw in Redis through ``forkq.redis()``, so the test (in this process or
another) can wait on it:

| key | type | written by |
| --- | --- | --- |
| ``flow:lock_at_start`` | list of "held"/"free" | ``UniqueStart``, ``UniqueSuccess``, ``FailOnce`` |
| ``flow:runs`` | list of jids | every job, at its end |
| ``flow:spans`` | list of "jid start finish" (float seconds) | ``Paired`` |
| ``flow:started`` | hash jid → pid | ``Stuck*``, ``Slow`` |
| ``flow:cleaned`` | list of jids | ``CatchesSoftLimit`` |
"""

from __future__ import annotations

import os
import socket
import time

import forkq
from forkq import SoftTimeLimitExceeded, limiter
from forkq.flow import unique

PAIR = limiter.concurrent("flow-pair", 2, lock_timeout=30, retry_wait=(0.05, 0.2))
WINDOW = limiter.window("flow-window", 1, 2)


def _lock_state(job) -> None:
    keys = forkq.client.default().keys
    held = forkq.redis().exists(keys.unique(job.payload["unique_digest"],
                                            unique.lock_queue(job.payload)))
    forkq.redis().rpush("flow:lock_at_start", "held" if held else "free")


def _done(job) -> None:
    forkq.redis().rpush("flow:runs", job.jid)


class UniqueSuccess(forkq.Job):
    options = {"unique_for": 60}

    def perform(self, value) -> None:
        _lock_state(self)
        _done(self)


class UniqueStart(forkq.Job):
    options = {"unique_for": 60, "unique_until": "start"}

    def perform(self, value) -> None:
        _lock_state(self)
        _done(self)


class FailOnce(forkq.Job):
    """Fails on its first run; retried at once (``retry_in`` 0)."""

    options = {"unique_for": 60, "retry_in": lambda count, exc: 0}

    def perform(self, value) -> None:
        _lock_state(self)
        if forkq.redis().incr(f"flow:tries:{self.jid}") == 1:
            raise RuntimeError("first try fails")
        _done(self)


class AlwaysFails(forkq.Job):
    options = {"unique_for": 60, "retry": 0}

    def perform(self, value) -> None:
        raise RuntimeError("always fails")


class Paired(forkq.Job):
    """At most two at once across every process (``PAIR``); records its span."""

    def perform(self, value) -> None:
        with PAIR:
            started = time.time()
            time.sleep(0.05)
            forkq.redis().rpush("flow:spans", f"{self.jid} {started!r} {time.time()!r}")
        _done(self)


class Windowed(forkq.Job):
    """One per two-second window (``WINDOW``); records when it ran."""

    def perform(self, value) -> None:
        with WINDOW:
            forkq.redis().rpush("flow:spans", f"{self.jid} {time.time()!r}")
        _done(self)


class Slow(forkq.Job):
    def perform(self, seconds) -> None:
        forkq.redis().hset("flow:started", self.jid, os.getpid())
        time.sleep(seconds)
        _done(self)


class StuckInSleep(forkq.Job):
    options = {"time_limit": 1, "retry": 3}

    def perform(self) -> None:
        forkq.redis().hset("flow:started", self.jid, os.getpid())
        time.sleep(1000)


class Overrun(forkq.Job):
    """Runs past its hard limit, but returns before its process stops."""

    options = {"time_limit": 1, "retry": 3}

    def perform(self) -> None:
        forkq.redis().hset("flow:started", self.jid, os.getpid())
        time.sleep(2.5)


class StuckInRecv(forkq.Job):
    """Blocked reading a socket that never sends (the other end is kept open)."""

    options = {"time_limit": 1, "retry": 3}

    def perform(self) -> None:
        forkq.redis().hset("flow:started", self.jid, os.getpid())
        quiet, other = socket.socketpair()
        quiet.recv(1)
        other.close()


class CatchesSoftLimit(forkq.Job):
    options = {"soft_time_limit": 0.3, "time_limit": 30}

    def perform(self) -> None:
        try:
            while True:
                time.sleep(0.01)
        except SoftTimeLimitExceeded:
            forkq.redis().rpush("flow:cleaned", self.jid)
        _done(self)


class MissesSoftLimit(forkq.Job):
    """Does not catch the soft limit: fails with it and is retried."""

    options = {"soft_time_limit": 0.3, "retry": 3}

    def perform(self) -> None:
        while True:
            time.sleep(0.01)
