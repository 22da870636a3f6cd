"""Redis availability as one process sees it: log the outage once, and the recovery once.

Shared by every thread of a worker; each failing call reports here and backs off, so an
outage produces two log lines ("went away", "back after 12.3 s"), not one per retry.
"""

from __future__ import annotations

import threading
import time

from .log import logger

#: seconds between retries while Redis is down, doubling up to the cap
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0


class RedisHealth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.down_since is None:
                self.down_since = time.monotonic()
                logger.error("Redis unavailable (%s: %s); retrying with backoff, no job is "
                             "dropped", type(exc).__name__, exc)

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is not None:
                logger.warning("Redis is back after %.1f s", time.monotonic() - self.down_since)
                self.down_since = None


def next_backoff(previous: float) -> float:
    return min(BACKOFF_CAP, max(BACKOFF_START, previous * 2))
