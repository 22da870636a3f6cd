"""Jobs for the end-to-end tests of ``forkq start`` and ``forkqctl``, required by the children.

Each job records what it did in Redis (the forkq client's connection, which a worker child
points at its config's Redis), so the test process can wait on it:

| key | type | written by |
| --- | --- | --- |
| ``e2e:runs`` | hash jid → times the job finished | every job, at its end |
| ``e2e:started`` | hash jid → pid of the child that started it | the jobs but ``Record`` |
"""

from __future__ import annotations

import os
import signal
import time

from forkq import Job, client

#: memory that ``Allocate`` keeps alive, so the child's RSS stays high after the job
_hoard: list[bytearray] = []


def _redis():
    return client.default().redis


class Record(Job):
    def perform(self, *args) -> None:
        _redis().hincrby("e2e:runs", self.jid, 1)


class Sleep(Job):
    def perform(self, seconds: float) -> None:
        _redis().hset("e2e:started", self.jid, os.getpid())
        time.sleep(seconds)
        _redis().hincrby("e2e:runs", self.jid, 1)


class Allocate(Job):
    def perform(self, megabytes: int) -> None:
        _redis().hset("e2e:started", self.jid, os.getpid())
        block = bytearray(megabytes * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
        _hoard.append(block)
        _redis().hincrby("e2e:runs", self.jid, 1)


class CrashOnce(Job):
    """Kills its own process the first time it runs, as the OOM killer would."""

    def perform(self) -> None:
        _redis().hset("e2e:started", self.jid, os.getpid())
        if _redis().set(f"e2e:crashed:{self.jid}", 1, nx=True):
            os.kill(os.getpid(), signal.SIGKILL)
        _redis().hincrby("e2e:runs", self.jid, 1)
