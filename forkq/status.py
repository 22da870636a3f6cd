"""The master's status file, ``<data_dir>/status.json``: what the metrics exporter knows of it.

Written by the master (``supervisor.py``, single-threaded) after each change to its children
and each periodic tick it enqueued, atomically, so a scrape never reads half a file; read by the
exporter at each scrape (``metrics/collector.py``); removed when the master stops. A failed
write is logged and the next change writes the whole status again.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterable

from . import __version__
from .supervisor.children import WorkerSlot
from .log import logger
from .supervisor.pidfile import write_atomically

#: the file's name inside ``data_dir``
STATUS_NAME = "status.json"


def master_status(config, master_pid: int, started_at: float, slots: Iterable[WorkerSlot],
                  periodic: dict | None) -> dict:
    """The master, its sizes, each slot it keeps (alive, or wanted by ``processes``) by
    index, and its periodic scheduler's counts when it has one."""
    children = [{"slot": s.index, "pid": s.pid, "started_at": s.started_at, "ready": s.ready,
                 "restarts": s.restarts}
                for s in sorted(slots, key=lambda s: s.index)
                if s.alive or s.index < config.processes]
    status = {"master_pid": master_pid, "started_at": started_at, "version": __version__,
              "tag": config.tag, "processes": config.processes,
              "concurrency": config.concurrency, "children": children}
    if periodic is not None:
        status["periodic"] = periodic
    return status


class StatusFile:
    """The status file of one master, at the path its ``data_dir`` had when it started."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, STATUS_NAME)

    def write(self, status: dict) -> None:
        try:
            write_atomically(self.path, json.dumps(status))
        except OSError as exc:
            logger.warning("could not write %s: %s", self.path, exc)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
