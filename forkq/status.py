"""The master's status file, ``<data_dir>/status.json``: its one name and what it holds.

Shared ground of two processes: the master writes it (``supervisor/files.py``, single-threaded,
atomically) after each change to its children and each periodic tick it enqueued, and removes it
when it stops; the metrics exporter reads it at each scrape (``metrics/collector.py``). This
module imports nothing of either side, so the exporter loads no supervisor code through it.
"""

from __future__ import annotations

import os
from typing import Iterable

from . import __version__

#: the file's name inside ``data_dir``
STATUS_NAME = "status.json"


def status_path(data_dir: str) -> str:
    return os.path.join(data_dir, STATUS_NAME)


def master_status(config, master_pid: int, started_at: float, slots: Iterable,
                  periodic: dict | None) -> dict:
    """The master, its sizes, each slot it keeps (``supervisor.children.WorkerSlot``s: alive,
    or wanted by ``processes``) by index, and its periodic scheduler's counts when it has one."""
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
