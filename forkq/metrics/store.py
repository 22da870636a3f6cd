"""The multiprocess metrics directory: per-child files, an archive of dead children, a lock.

Files use prometheus_client's multiprocess format (``<type>_<anything>.db``, read by its
``MultiProcessCollector``), so the application's own prometheus_client metrics, created after
``prepare`` set ``PROMETHEUS_MULTIPROC_DIR``, are exported beside forkq's.

- A worker child writes ``counter_forkq_<pid>.db`` and ``histogram_forkq_<pid>.db`` (forkq's own
  names, so they never share a file with the application's ``counter_<pid>.db``).
- When the master reaps a child, ``mark_dead`` folds that pid's counter, histogram and summary
  files into ``<type>_archive.db`` and deletes them: the directory holds the live children's
  files plus one archive per type, however often children recycle. The application's gauges
  follow prometheus_client's rules (``live*`` modes are removed; other modes keep a file per
  dead pid, by design of those modes).
- The fold replaces two files, which a reader cannot see atomically: the master holds ``.lock``
  exclusively while folding and the exporter holds it shared while reading, so a scrape never
  counts a dead child twice nor misses it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
import time

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ..log import logger

#: the environment variable by which prometheus_client finds the directory
ENV = "PROMETHEUS_MULTIPROC_DIR"
#: metric types whose values add up across processes, and so can be folded into an archive
SUMMED_TYPES = ("counter", "histogram", "summary")
#: seconds the master waits for a scrape in progress before leaving a dead child unfolded
FOLD_LOCK_TIMEOUT = 2.0
#: bytes of a new file, as prometheus_client makes them
_INITIAL_SIZE = 1 << 16
#: reads of the directory before a scrape gives up on a file caught while being created
_READ_ATTEMPTS = 3


def prepare(config) -> str:
    """Create an empty directory and export it to children; no threads, no sockets."""
    directory = os.path.abspath(os.path.join(config.data_dir, "metrics"))
    # Counts of a previous master are gone with its children; Prometheus sees a counter reset.
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    os.environ[ENV] = directory
    return directory


def child_file(directory: str, kind: str, pid: int) -> str:
    """The file of forkq's own ``kind`` metrics (counter, histogram) of child ``pid``."""
    return os.path.join(directory, f"{kind}_forkq_{pid}.db")


def open_file(path: str) -> MmapedDict:
    """A writable file, never seen empty by a reader (which fails on an empty file)."""
    if not os.path.exists(path):
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            # All zeros reads as "no values"; MmapedDict keeps a file's existing size.
            handle.truncate(_INITIAL_SIZE)
        os.replace(temporary, path)
    return MmapedDict(path)


def mark_dead(pid: int, directory: str | None = None) -> None:
    """Fold a reaped child's files into the archives; called by the master, once per reap."""
    directory = directory or os.environ.get(ENV)
    if not directory or not os.path.isdir(directory):
        return
    mark_process_dead(pid, directory)
    with _Lock(directory, exclusive=True, timeout=FOLD_LOCK_TIMEOUT) as locked:
        if not locked:
            logger.warning("metrics: a scrape held the lock for %.0f s; files of pid %d stay "
                           "unfolded (still counted)", FOLD_LOCK_TIMEOUT, pid)
            return
        for kind in SUMMED_TYPES:
            dead = [path for path in (os.path.join(directory, f"{kind}_{pid}.db"),
                                      child_file(directory, kind, pid)) if os.path.exists(path)]
            if dead:
                _fold(directory, kind, dead)


def _fold(directory: str, kind: str, dead: list[str]) -> None:
    archive = os.path.join(directory, f"{kind}_archive.db")
    sources = dead + ([archive] if os.path.exists(archive) else [])
    # Buckets stay per-bucket (not cumulative): that is how the files store them.
    metrics = MultiProcessCollector.merge(sources, accumulate=False)
    # The temporary name does not end in .db, so a reader never globs a half-written archive.
    temporary = archive + ".tmp"
    if os.path.exists(temporary):
        os.remove(temporary)
    target = MmapedDict(temporary)
    try:
        for metric in metrics:
            for sample in metric.samples:
                key = mmap_key(metric.name, sample.name, list(sample.labels),
                               list(sample.labels.values()), metric.documentation)
                target.write_value(key, sample.value, 0.0)
    finally:
        target.close()
    os.replace(temporary, archive)
    for path in dead:
        os.remove(path)


def collect(directory: str):
    """Metric families of every file in the directory, read under the shared lock."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            with _Lock(directory, exclusive=False, timeout=None):
                return list(MultiProcessCollector(None, path=directory).collect())
        except struct.error:
            # The application's prometheus_client creates its files empty, then sizes them.
            if attempt + 1 == _READ_ATTEMPTS:
                raise
            time.sleep(0.01)


class _Lock:
    """``flock`` on ``<directory>/.lock``; enters as False when ``timeout`` ran out."""

    def __init__(self, directory: str, exclusive: bool, timeout: float | None) -> None:
        self.path = os.path.join(directory, ".lock")
        self.mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> bool:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if self.timeout is None:
            fcntl.flock(self.fd, self.mode)
            return True
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, self.mode | fcntl.LOCK_NB)
                return True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def __exit__(self, *exc_info) -> None:
        os.close(self.fd)
