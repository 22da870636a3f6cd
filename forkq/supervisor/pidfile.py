"""The master's pidfiles, and telling the master that wrote one from a process reusing its pid.

Every master writes ``<data_dir>/master.pid``, and also the ``pidfile`` of its config when one
is set; it refuses to start when either names a running master, and removes both at exit.
``forkqctl`` reads the configured ``pidfile``, else ``<data_dir>/master.pid``.

Format: the pid alone on the first line (what systemd's ``PIDFile=`` and ``kill $(head -1 …)``
read), then ``started=<epoch seconds>``: the start time of that process as the kernel reports
it. A pidfile names a running master only while the process with that pid started at that
time *and* runs forkq; a pid since reused by another process (``tail -f forkq.log`` included)
fails the first test, so it is never signalled. Contents that are not a pid between 1 and
``PID_MAX`` (``-1``, ``0``, garbage) raise ``PidfileError``: one line, never a signal to a
process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ForkqError

#: the file every master writes in its data directory
DEFAULT_NAME = "master.pid"
#: Linux's PID_MAX_LIMIT: no process has a larger pid
PID_MAX = 4_194_304
#: seconds two readings of one process's start time may differ (the boot time they are
#: counted from is itself rounded to the second and may be adjusted by a second)
START_SLACK = 1.0
#: bytes read from a pidfile: more than any pidfile this module writes
READ_LIMIT = 4096


class PidfileError(ForkqError):
    """A pidfile that is missing, unreadable or does not hold a pid (one-line message)."""


class PidfileMissing(PidfileError):
    """No file at the path: no master wrote it, or it runs elsewhere."""


@dataclass(frozen=True)
class PidRecord:
    path: str
    pid: int
    #: epoch seconds the process started; None for a file that holds only a pid
    started: float | None


def default_pidfile(data_dir: str) -> str:
    return os.path.join(data_dir, DEFAULT_NAME)


def record_text(pid: int, started: float) -> str:
    return f"{pid}\nstarted={started:.2f}\n"


def parse_record(path: str, text: str) -> PidRecord:
    """The record in a pidfile's ``text``; ``PidfileError`` naming ``path`` when it holds none."""
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if not (first.isascii() and first.isdigit()) or not 1 <= int(first) <= PID_MAX:
        raise PidfileError(f"pidfile {path} does not hold a pid: its first line is "
                           f"{first[:40]!r}, not a number from 1 to {PID_MAX}")
    started = None
    for line in lines[1:]:
        key, _, value = line.strip().partition("=")
        if key == "started":
            try:
                started = float(value)
            except ValueError:
                raise PidfileError(f"pidfile {path}: 'started' is {value[:40]!r}, not a "
                                   f"time") from None
    return PidRecord(path, int(first), started)


def read_record(path: str) -> PidRecord:
    try:
        with open(path, "rb") as handle:
            data = handle.read(READ_LIMIT)
    except FileNotFoundError:
        raise PidfileMissing(f"pidfile {path} not found") from None
    except OSError as exc:
        raise PidfileError(f"cannot read pidfile {path}: {exc.strerror}") from None
    return parse_record(path, data.decode("utf-8", "replace"))


def read_pidfile(path: str) -> int | None:
    """The pid a pidfile names, or None when there is none to read."""
    try:
        return read_record(path).pid
    except PidfileError:
        return None


def start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds); None when it is gone or a zombie."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.Error:
        return None


def is_forkq_process(pid: int) -> bool:
    """Whether ``pid``'s title or command line names forkq. A weak test alone (``tail -f
    forkq.log`` passes it): ``wrote`` pairs it with the start time."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return "forkq" in " ".join(process.cmdline()) or "forkq" in process.name()
    except psutil.Error:
        return False


def wrote(record: PidRecord) -> bool:
    """Whether the process now holding ``record.pid`` is the one that wrote the record."""
    started = start_time(record.pid)
    if started is None or record.started is None:
        return False
    return abs(started - record.started) <= START_SLACK and is_forkq_process(record.pid)


def claim_pidfile(path: str, setting: str = "pidfile") -> None:
    """Write this process's record, refusing to take the file from another running master.

    A file holding only a pid cannot be verified: it blocks only while that pid runs forkq."""
    try:
        held = read_record(path)
    except PidfileError:
        held = None
    if held is not None and held.pid != os.getpid():
        running = wrote(held) if held.started is not None else is_forkq_process(held.pid)
        if running:
            raise ForkqError(f"{path} names forkq master {held.pid}, which is running: stop it "
                             f"first, or give this master another {setting}")
    write_atomically(path, record_text(os.getpid(), start_time(os.getpid()) or 0.0))


def release_pidfile(path: str) -> None:
    """Remove the file, unless it now names another process (a master that took it over)."""
    if read_pidfile(path) == os.getpid():
        os.unlink(path)


def write_atomically(path: str, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
