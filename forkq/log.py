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
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        context = getattr(record, "ctx", "")
        line = (f"{stamp}.{int(record.msecs):03d}Z pid={record.process} tid={thread_tag()}"
                f"{' ' + context if context else ''} {record.levelname}: {record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


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


def reopen() -> None:
    """Reopen every file forkq logs to (USR2 after logrotate)."""
    for handler in logger.handlers:
        if isinstance(handler, ReopenableFileHandler):
            handler.reopen()
