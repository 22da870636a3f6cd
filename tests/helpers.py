"""Shared test helpers: waiting on conditions with a deadline, never on bare sleeps."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             message: str = "") -> Any:
    """Return the predicate's first truthy value; fail the test when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{message or getattr(predicate, '__name__', 'condition')}")
        time.sleep(interval)


def most_at_once(spans) -> int:
    """The largest number of (start, end) spans overlapping at one moment (an end before a
    start at the same instant)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


class LogLines(logging.Handler):
    """Collects the messages of a logger (``attach``/``detach``), for tests reading log lines."""

    def __init__(self, name: str = "forkq") -> None:
        super().__init__()
        self.lines: list[str] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> list[str]:
        self.logger.addHandler(self)
        return self.lines

    def __exit__(self, *exc_info) -> None:
        self.logger.removeHandler(self)
