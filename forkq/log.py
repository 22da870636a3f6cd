"""Logging setup for forkq's processes: one line per event, reopenable after logrotate.

Lines carry the time (UTC), pid, thread, and for job events the class, jid and elapsed time:
``2026-11-28T02:00:00.123Z pid=4242 tid=ab1 class=HardJob jid=9f.. elapsed=0.004 INFO: done``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

LOGGER_NAME = "forkq"
logger = logging.getLogger(LOGGER_NAME)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "ctx", "")
        line = (f"{timestamp(record.created)} pid={record.process} tid={thread_tag()}"
                f"{' ' + context if context else ''} {record.levelname}: {record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_second_cache: tuple[int, str] = (-1, "")


def timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds; the seconds part is formatted once per second."""
    global _second_cache
    second = int(now)
    if second != _second_cache[0]:
        _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_cache[1]}.{int((now - second) * 1000):03d}Z"


def thread_tag() -> str:
    """A short, stable name for the current thread (Sidekiq's tid)."""
    return format(threading.get_ident() % 0xFFFFFF, "x")


class ReopenableFileHandler(logging.StreamHandler):
    """Appends to a file and reopens it on request, so logrotate's rename takes effect."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        super().__init__(open(self.path, "a", encoding="utf-8", buffering=1))

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", encoding="utf-8", buffering=1)
            old.close()
        finally:
            self.release()


class JobLog:
    """The per-job lines (start, done), written straight to forkq's handler.

    A ``logging`` record costs about 15 µs, and its handler lock convoys ten threads behind
    the GIL; two per job would cost more than the rest of a job's overhead at full speed. This
    writes the same format with one ``os.write`` of a whole line, which needs no lock: the
    kernel appends each call whole (the file is opened for appending)."""

    def __init__(self) -> None:
        self.enabled = False
        self.handler: logging.StreamHandler | None = None
        self.pid = 0

    def configure(self, handler: logging.StreamHandler, enabled: bool) -> None:
        self.handler, self.enabled, self.pid = handler, enabled, os.getpid()

    def write(self, tid: str, context: str, message: str) -> None:
        line = f"{timestamp(time.time())} pid={self.pid} tid={tid} {context} INFO: {message}\n"
        os.write(self.handler.stream.fileno(), line.encode())


job_log = JobLog()


def setup(level: str = "INFO", logfile: str | None = None) -> None:
    """Replace forkq's handlers; called once per process (again in a forked child is fine)."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if isinstance(handler, ReopenableFileHandler):
            handler.close()
    handler = ReopenableFileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    job_log.configure(handler, logger.isEnabledFor(logging.INFO))


def reopen() -> None:
    """Reopen every file forkq logs to (USR2 after logrotate)."""
    for handler in logger.handlers:
        if isinstance(handler, ReopenableFileHandler):
            handler.reopen()
