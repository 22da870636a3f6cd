"""Jobs for the fault-injection tests: they record each run outside Redis, so a run survives
Redis being killed."""

from __future__ import annotations

import os

from forkq import Job


class Append(Job):
    """Appends its jid to the file named by its argument, one line per run."""

    def perform(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{self.jid}\n".encode())
        finally:
            os.close(fd)
