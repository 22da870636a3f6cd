"""Shared test helpers: waiting on conditions with a deadline, never on bare sleeps."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable

#: the repository's root, on the path of the fresh interpreters below
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def stop_process(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is stopped. Before that, a signal sent next may be
    taken first: the kernel takes pending signals lowest number first, TERM (15) before STOP
    (19), and a TERM taken ends the process or starts its shutdown."""
    import psutil

    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, 10,
             message=f"pid {pid} stopped")


def modules_loaded_by(script: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of ``prefixes`` that ``script`` leaves loaded in a fresh
    interpreter (nothing imported before it)."""
    shown = f"\nprint(' '.join(m for m in sys.modules if m.startswith({prefixes!r})))"
    result = subprocess.run([sys.executable, "-c", "import sys\n" + script + shown],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


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


def lose_next_reply(connection) -> None:
    """The next command on this redis-py ``connection`` runs in Redis, but its reply never
    reaches the caller (as when Redis is killed between the two): the reply is read, the
    connection dropped, and ``ConnectionError`` raised instead."""
    import redis

    read = connection.read_response

    def read_then_lose(*args, **kwargs):
        read(*args, **kwargs)
        connection.read_response = read
        connection.disconnect()
        raise redis.ConnectionError("connection lost before the reply")
    connection.read_response = read_then_lose
