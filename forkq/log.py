"""Logging setup for forkq's processes: one line per event, reopenable after logrotate.

Lines carry the time (UTC), pid, thread, and for job events the class, jid and elapsed time:
``2026-11-28T02:00:00.123Z pid=4242 tid=ab1 class=HardJob jid=9f.. elapsed=0.004 INFO: done``.
With ``log_format: json`` each line is one JSON object instead (``JsonFormatter``): ``time``,
``level``, ``pid``, ``tid``, ``logger``, and for job events ``class``, ``jid``, ``queue``
(``elapsed`` on ``done`` and ``fail``), then ``message``, ``exception`` (a traceback) and
``details`` (a thread's stack) when there are any.

Lines from the jobs themselves: the job a thread or coroutine runs is ``current_job``, a context
variable, so each processor thread and each asyncio task of the event loop sees its own; the
formatters add its class, jid (and queue) to every record logged while it runs, whichever
logger wrote it. With ``log_root: forkq`` (the default, as Celery's worker hijacks the root
logger) ``setup`` replaces the root logger's handlers with forkq's and sets its level, so an
application's ``logging.getLogger(__name__).info(...)`` reaches forkq's log; with
``log_root: application`` it leaves the root logger alone, and ``JobContextFilter`` gives an
application's own handlers the job's fields.

One record is one line: class names, queue names and error messages come from payloads that
anyone with access to Redis can write, so control characters in a message or its context
(newlines, carriage returns, terminal escapes, NUL, U+2028 and the like) are written escaped
(``\n``, ``\x1b``, ``\u2028``) and cannot forge a line or drive a terminal. A traceback, or
a text passed as ``extra={"details": text}`` (a thread's stack), follows its record as lines
that each start with ``  | `` (escaped the same way), so a line at column 0 always starts a
record. JSON lines escape every character outside printable ASCII the same way JSON does.
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import os
import sys
import threading
import time
import unicodedata
from typing import Any

from .payload import display_class

LOGGER_NAME = "forkq"
logger = logging.getLogger(LOGGER_NAME)

#: ``log_format`` values
FORMATS = ("text", "json")
#: ``log_root`` values: who configures Python's root logger in forkq's processes
ROOT_OWNERS = ("forkq", "application")

#: Unicode categories escaped in log lines: controls, format characters (bidirectional
#: overrides, zero-width), line and paragraph separators, lone surrogates (not encodable)
_ESCAPED_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))
#: how a line of a traceback (or other block) continues its record
BLOCK_PREFIX = "  | "
#: seconds a worker's log line may wait to be written with the lines after it
FLUSH_DELAY = 0.05

#: the job the current thread or asyncio task runs, as ``job_context`` makes it, or None
current_job: contextvars.ContextVar[tuple | None] = contextvars.ContextVar(
    "forkq_job", default=None)


def job_context(payload: dict, queue: str) -> tuple:
    """What a job's log lines carry: (class, jid, queue), strings (``payload.parse`` checks
    them; the jid may be None; the class is the one the job is shown under). A processor thread
    builds the same tuple inline."""
    return (display_class(payload), payload.get("jid"), queue)


def job_extra(context: tuple, elapsed: float | None = None) -> dict:
    """``extra`` for forkq's lines about a job, written outside the job's own context (a
    finisher thread, the watchdog) or with its elapsed time."""
    return {"forkq_job": context, "forkq_elapsed": elapsed}


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


def _job_of(record: logging.LogRecord) -> tuple[tuple | None, float | None]:
    """The job a record is about (named in its ``extra``, else the one running where it was
    logged) and its elapsed seconds."""
    return (getattr(record, "forkq_job", None) or current_job.get(),
            getattr(record, "forkq_elapsed", None))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        job, elapsed = _job_of(record)
        context = f" class={job[0]} jid={job[1]}" if job else ""
        if elapsed is not None:
            context += f" elapsed={elapsed:.3f}"
        line = escape_controls(f"{timestamp(record.created)} pid={record.process} "
                               f"tid={thread_tag()}{context} "
                               f"{record.levelname}: {record.getMessage()}")
        details = getattr(record, "details", None)
        if details:
            line += indent_block(details)
        if record.exc_info:
            line += indent_block(self.formatException(record.exc_info))
        return line


#: JSON for log lines. Not ``payload.dumps``: that one keeps UTF-8 as Sidekiq writes payloads;
#: a log line escapes everything outside ASCII, so that no reader (``str.splitlines`` splits
#: at U+2028) and no terminal sees a control character from a payload.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
#: a string as ``_encode_json`` writes one (quoted, escaped to ASCII)
_json_string = json.encoder.encode_basestring_ascii


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers; the fields are listed in the module's doc."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"time": timestamp(record.created), "level": record.levelname,
                                  "pid": record.process, "tid": thread_tag(),
                                  "logger": record.name}
        job, elapsed = _job_of(record)
        if job:
            fields["class"], fields["jid"], fields["queue"] = job
        if elapsed is not None:
            fields["elapsed"] = round(elapsed, 6)
        fields["message"] = record.getMessage()
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        details = getattr(record, "details", None)
        if details:
            fields["details"] = details
        return _encode_json(fields)


FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}


class JobContextFilter(logging.Filter):
    """Adds the running job's ``job_class``, ``jid`` and ``queue`` to every record (empty
    strings outside a job), for an application that keeps its own handlers
    (``log_root: application``): ``%(jid)s`` in its format, or the fields of its JSON."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        record.job_class, record.jid, record.queue = job if job else ("", "", "")
        return True


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
    full speed. Job lines arrive as tuples and are formatted here (by ``format_job``), off the
    processors' path. The cost: a line reaches the file up to ``FLUSH_DELAY`` later, and a
    process killed with -9 loses at most that much of its log. Only worker processes use it
    (the supervisor's master must have no threads)."""

    def __init__(self, output: Output, format_job=None) -> None:
        super().__init__(name="log-writer", daemon=True)
        self.output = output
        self.format_job = format_job or format_job_line
        self.lines: collections.deque = collections.deque()
        self.pending = threading.Event()
        #: ``pending`` as ``put`` last saw it or set it: two threads write it, but the order
        #: of ``run``'s steps keeps it from hiding a line (see ``run``). An attribute, because
        #: ``Event.is_set`` is a Python call, twice a job at INFO
        self.woken = False
        self.flushing = threading.Lock()
        self.pid = os.getpid()

    def put(self, line) -> None:
        self.lines.append(line)
        if not self.woken:
            self.woken = True
            self.pending.set()

    def run(self) -> None:
        while True:
            self.pending.wait()
            time.sleep(FLUSH_DELAY)
            # ``woken`` is cleared after ``pending`` and before the flush takes the lines:
            # a line that saw it still set was appended before the flush, which writes it;
            # one appended later sees it cleared and sets ``pending`` again.
            self.pending.clear()
            self.woken = False
            self.flush()

    def flush(self) -> None:
        # Under a lock: the writer thread and the main thread (USR2's reopen, the exit) both
        # flush, and each must write whole, in order, the lines it takes.
        with self.flushing:
            lines, pid, format_job = self.lines, self.pid, self.format_job
            taken = [lines.popleft() for _ in range(len(lines))]
            if taken:
                self.output.write_line("".join([
                    line if type(line) is str else format_job(pid, *line)
                    for line in taken]))


def format_job_line(pid: int, at: float, tid: str, context: tuple, message: str,
                    elapsed: float | None) -> str:
    """A job's line in ``TextFormatter``'s format, written out again rather than shared: the
    writer thread formats every job's lines, and a shared builder costs it 70% more."""
    timing = f" elapsed={elapsed:.3f}" if elapsed is not None else ""
    job_class, jid, _ = context
    # escape_controls' own test, on the parts, without the call or a string to escape
    if job_class.isprintable() and (jid is None or jid.isprintable()):
        return (f"{timestamp(at)} pid={pid} tid={tid} class={job_class} jid={jid}{timing} "
                f"INFO: {message}\n")
    where = escape_controls(f"class={job_class} jid={jid}")
    return f"{timestamp(at)} pid={pid} tid={tid} {where}{timing} INFO: {message}\n"


def format_job_json(pid: int, at: float, tid: str, context: tuple, message: str,
                    elapsed: float | None) -> str:
    """A job's line in ``JsonFormatter``'s format, the fields written out by hand: the writer
    thread formats every job's lines, and the encoder costs it three times as much. Only the
    context's strings come from a payload; each is encoded as the encoder would."""
    job_class, jid, queue = context
    timing = f'"elapsed":{round(elapsed, 6)!r},' if elapsed is not None else ""
    return (f'{{"time":"{timestamp(at)}","level":"INFO","pid":{pid},"tid":"{tid}",'
            f'"logger":"{LOGGER_NAME}","class":{_json_string(job_class)},'
            f'"jid":{"null" if jid is None else _json_string(jid)},'
            f'"queue":{_json_string(queue)},{timing}"message":"{message}"}}\n')


JOB_FORMATTERS = {"text": format_job_line, "json": format_job_json}


class _Handler(logging.Handler):
    def __init__(self, sink) -> None:
        super().__init__()
        self.sink = sink

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        """``logging.Handler.handle`` without the handler's lock: the formatters keep no
        state between records and the sinks are safe from any thread (the line buffer's
        deque, ``Output``'s own lock), and a worker's threads queue on that lock behind the
        GIL (a Django task's framework lines, two a task, each waiting its turn)."""
        kept = self.filter(record)
        if kept:
            self.emit(kept if isinstance(kept, logging.LogRecord) else record)
        return kept

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
        self.format = format_job_line

    def write(self, tid: str, context: tuple, message: str,
              elapsed: float | None = None) -> None:
        """``message`` is one of forkq's own words ("start", "done"), written unescaped;
        ``context`` (``job_context``) holds payload text and is escaped."""
        entry = (time.time(), tid, context, message, elapsed)
        self.sink(entry if self.buffered else self.format(self.pid, *entry))


job_log = JobLog()
_state: dict = {"output": None, "buffer": None, "handler": None}


def setup(level: str = "INFO", logfile: str | None = None, buffered: bool = False, *,
          log_format: str = "text", root: str = "forkq") -> None:
    """Replace forkq's handlers; called once per process (again in a forked child is fine).

    ``buffered`` starts the writer thread: for worker processes only. ``root``: ``"forkq"``
    takes over the root logger (its handlers replaced by forkq's, its level set to
    ``level``); ``"application"`` leaves it as the application set it."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if _state["output"] is not None:
        _state["output"].close()
    output = Output(logfile)
    buffer = LineBuffer(output, JOB_FORMATTERS[log_format]) if buffered else None
    if buffer is not None:
        buffer.start()
    sink = buffer.put if buffer is not None else output.write_line
    handler = _Handler(sink)
    handler.setFormatter(FORMATTERS[log_format]())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    logger.disabled = False  # see ``reclaim``: a forked child inherits the master's flag
    _take_root(handler, level, root == "forkq")
    _state.update(output=output, buffer=buffer, handler=handler)
    job_log.sink, job_log.pid, job_log.buffered = sink, os.getpid(), buffer is not None
    job_log.format = JOB_FORMATTERS[log_format]
    job_log.enabled = logger.isEnabledFor(logging.INFO)


def setup_from(config, buffered: bool = False) -> None:
    """``setup`` with a ``Config``'s ``loglevel``, ``logfile``, ``log_format`` and
    ``log_root``."""
    setup(config.loglevel, config.logfile, buffered, log_format=config.log_format,
          root=config.log_root)


def _take_root(handler: logging.Handler, level: str, take: bool) -> None:
    """Give the root logger ``handler`` alone (``take``), or only remove forkq's previous one
    (a config re-read that hands the root logger back to the application)."""
    root = logging.getLogger()
    if _state["handler"] in root.handlers:
        root.removeHandler(_state["handler"])
    if not take:
        return
    # Removed, not closed: the application may still hold them elsewhere.
    for previous in list(root.handlers):
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)


def reclaim() -> None:
    """After the application's modules are imported: keep forkq's logger enabled. A
    ``logging.config.dictConfig`` without ``disable_existing_loggers: False`` (Django's
    ``LOGGING`` too) disables every logger that exists, forkq's included, which would silence
    every line forkq writes."""
    if logger.disabled:
        logger.disabled = False
        logger.warning("the application's logging configuration disabled the 'forkq' logger "
                       "(dictConfig's disable_existing_loggers is true unless set to false); "
                       "forkq's lines are written all the same")


def flush() -> None:
    """Write out buffered lines now (before a process exits)."""
    if _state["buffer"] is not None:
        _state["buffer"].flush()


def reopen() -> None:
    """Reopen the file forkq logs to (USR2 after logrotate)."""
    flush()
    if _state["output"] is not None:
        _state["output"].reopen()
