"""Logging setup for forkq's processes: one line per event, reopenable after logrotate.

Lines carry the time (UTC), pid, thread, and for job events the class, jid and elapsed time:
``2026-11-28T02:00:00.123Z pid=4242 tid=ab1 class=HardJob jid=9f.. elapsed=0.004 INFO: done``.

One record is one line: class names, queue names and error messages come from payloads that
anyone with access to Redis can write, so control characters in a message or its context
(newlines, carriage returns, terminal escapes, NUL, U+2028 and the like) are written escaped
(``\n``, ``\x1b``, ``\u2028``) and cannot forge a line or drive a terminal. A traceback, or
a text passed as ``extra={"details": text}`` (a thread's stack), follows its record as lines
that each start with ``  | `` (escaped the same way), so a line at column 0 always starts a
record.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
import unicodedata

LOGGER_NAME = "forkq"
logger = logging.getLogger(LOGGER_NAME)


#: Unicode categories escaped in log lines: controls, format characters (bidirectional
#: overrides, zero-width), line and paragraph separators, lone surrogates (not encodable)
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))
#: how a line of a traceback (or other block) continues its record
BLOCK_PREFIX = "  | "
#: seconds a worker's log line may wait to be written with the lines after it
FLUSH_DELAY = 0.05


def escape_controls(text: str) -> str:
    """``text`` on one line, its control characters written as Python escapes."""
    if text.isprintable():
        return text
    return "".join(char.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(char) in _ESCAPED_CATEGORIES else char
                   for char in text)


def indent_block(text: str) -> str:
    """A multi-line text (a traceback) as continuation lines of the record before it."""
    return "".join(f"\n{BLOCK_PREFIX}{escape_controls(line)}"
                   for line in text.rstrip("\n").split("\n"))


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, "ctx", "")
        line = escape_controls(f"{timestamp(record.created)} pid={record.process} "
                               f"tid={thread_tag()}{' ' + context if context else ''} "
                               f"{record.levelname}: {record.getMessage()}")
        details = getattr(record, "details", None)
        if details:
            line += indent_block(details)
        if record.exc_info:
            line += indent_block(self.formatException(record.exc_info))
        return line


#: (an epoch second, its text): ``timestamp`` formats each second once
_second_cache: tuple[int, str] = (-1, "")
#: (an epoch millisecond, its text): a busy worker writes several lines a millisecond
_milli_cache: tuple[int, str] = (-1, "")


def timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds; the seconds part is formatted once per second, the
    whole once per millisecond."""
    global _second_cache, _milli_cache
    milli = int(now * 1000)
    cached = _milli_cache  # one read of each cache: other threads replace them whole
    if milli == cached[0]:
        return cached[1]
    second, seconds = milli // 1000, _second_cache
    if second != seconds[0]:
        seconds = _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                          time.gmtime(second)))
    text = f"{seconds[1]}.{milli % 1000:03d}Z"
    _milli_cache = (milli, text)
    return text


def thread_tag() -> str:
    """A short, stable name for the current thread (Sidekiq's tid)."""
    return format(threading.get_ident() % 0xFFFFFF, "x")


class Output:
    """Where lines go: a file opened for appending (reopenable after logrotate), or stderr."""

    def __init__(self, path: str | None) -> None:
        self.path = os.path.abspath(path) if path else None
        self.lock = threading.Lock()
        self.fd = self._open()

    def _open(self) -> int:
        if self.path is None:
            return sys.stderr.fileno()
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, data: bytes) -> None:
        with self.lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]

    def write_line(self, line: str) -> None:
        self.write(line.encode("utf-8", "backslashreplace"))

    def reopen(self) -> None:
        if self.path is None:
            return
        with self.lock:
            old, self.fd = self.fd, self._open()
            os.close(old)

    def close(self) -> None:
        if self.path is not None:
            with self.lock:
                os.close(self.fd)


class LineBuffer(threading.Thread):
    """Collects lines from every thread and writes them in one call every ``FLUSH_DELAY``.

    A worker's threads would otherwise make two ``write`` system calls per job, each releasing
    and retaking the GIL under contention, which cost more than the rest of a job's overhead at
    full speed. Job lines arrive as tuples and are formatted here, off the processors' path.
    The cost: a line reaches the file up to ``FLUSH_DELAY`` later, and a process killed with
    -9 loses at most that much of its log. Only worker processes use it (the supervisor's
    master must have no threads)."""

    def __init__(self, output: Output) -> None:
        super().__init__(name="log-writer", daemon=True)
        self.output = output
        self.lines: collections.deque = collections.deque()
        self.pending = threading.Event()
        self.flushing = threading.Lock()
        self.pid = os.getpid()

    def put(self, line) -> None:
        self.lines.append(line)
        if not self.pending.is_set():
            self.pending.set()

    def run(self) -> None:
        while True:
            self.pending.wait()
            time.sleep(FLUSH_DELAY)
            self.pending.clear()
            self.flush()

    def flush(self) -> None:
        # Under a lock: the writer thread and the main thread (USR2's reopen, the exit) both
        # flush, and each must write whole, in order, the lines it takes.
        with self.flushing:
            lines, pid = self.lines, self.pid
            taken = [lines.popleft() for _ in range(len(lines))]
            if taken:
                self.output.write_line("".join([
                    line if type(line) is str else format_job_line(pid, *line)
                    for line in taken]))


def format_job_line(pid: int, at: float, tid: str, context: str, message: str,
                    elapsed: float | None) -> str:
    """A job's line in ``_Formatter``'s format, written out again rather than shared: the
    writer thread formats every job's lines, and a shared builder costs it 70% more."""
    timing = f" elapsed={elapsed:.3f}" if elapsed is not None else ""
    return (f"{timestamp(at)} pid={pid} tid={tid} {escape_controls(context)}{timing} INFO: "
            f"{message}\n")


class _Handler(logging.Handler):
    def __init__(self, sink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


class JobLog:
    """The per-job lines (start, done): the same format, without a ``logging`` record.

    A record costs about 15 µs and its handler lock convoys ten threads behind the GIL; in a
    worker this costs well under a microsecond (a tuple handed to the line buffer)."""

    def __init__(self) -> None:
        self.enabled = False
        self.sink = None
        self.pid = 0
        self.buffered = False

    def write(self, tid: str, context: str, message: str, elapsed: float | None = None) -> None:
        """``message`` is one of forkq's own words ("start", "done"), written unescaped;
        ``context`` holds payload text and is escaped."""
        entry = (time.time(), tid, context, message, elapsed)
        self.sink(entry if self.buffered else format_job_line(self.pid, *entry))


job_log = JobLog()
_state: dict = {"output": None, "buffer": None}


def setup(level: str = "INFO", logfile: str | None = None, buffered: bool = False) -> None:
    """Replace forkq's handlers; called once per process (again in a forked child is fine).

    ``buffered`` starts the writer thread: for worker processes only."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if _state["output"] is not None:
        _state["output"].close()
    output = Output(logfile)
    buffer = LineBuffer(output) if buffered else None
    if buffer is not None:
        buffer.start()
    sink = buffer.put if buffer is not None else output.write_line
    handler = _Handler(sink)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    _state.update(output=output, buffer=buffer)
    job_log.sink, job_log.pid, job_log.buffered = sink, os.getpid(), buffer is not None
    job_log.enabled = logger.isEnabledFor(logging.INFO)


def flush() -> None:
    """Write out buffered lines now (before a process exits)."""
    if _state["buffer"] is not None:
        _state["buffer"].flush()


def reopen() -> None:
    """Reopen the file forkq logs to (USR2 after logrotate)."""
    flush()
    if _state["output"] is not None:
        _state["output"].reopen()
