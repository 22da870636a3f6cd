"""Jobs for the fault-injection tests: they record each run outside Redis, so a run survives
Redis being killed."""

from __future__ import annotations

import os

from forkq import Job


class Append(Job):
    """Appends its jid to the file named by its argument, one line per run."""

    def perform(self, path: str) -> None:
        append_line(path, self.jid)


class AppendAsync(Job):
    """``Append`` as a coroutine job (run on the worker's event loop)."""

    async def perform(self, path: str) -> None:
        append_line(path, self.jid)


def append_line(path: str, jid: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{jid}\n".encode())
    finally:
        os.close(fd)
