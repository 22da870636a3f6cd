"""Jobs for the tracing and error-tracker tests (``test_otel.py``, ``test_sentry.py``), run by
in-process workers and by the children of a real ``forkq start``.

Each records its runs in Redis (the forkq client's connection): ``obs:runs`` is a list of the
jids that finished, ``obs:tries:<jid>`` counts a job's runs.
"""

from __future__ import annotations

from forkq import Job, client


def _redis():
    return client.default().redis


def _try(jid: str) -> int:
    return _redis().incr(f"obs:tries:{jid}")


class Traced(Job):
    def perform(self, value) -> None:
        _try(self.jid)
        _redis().rpush("obs:runs", self.jid)


class FailsOnce(Job):
    """Raises on its first run; retried at once."""
    options = {"retry_in": lambda count, exc: 0}

    def perform(self) -> None:
        if _try(self.jid) == 1:
            raise ValueError("the first run fails")
        _redis().rpush("obs:runs", self.jid)


class AsyncFailsOnce(Job):
    """A coroutine job that raises on its first run; retried at once."""
    options = {"retry_in": lambda count, exc: 0}

    async def perform(self) -> str:
        if _try(self.jid) == 1:
            raise ValueError("the first coroutine run fails")
        _redis().rpush("obs:runs", self.jid)
        return "done"
