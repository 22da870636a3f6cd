"""What a master shows outside itself: its pidfiles, its status file and its process title.

Runs in the master, single-threaded. ``MasterFiles`` claims ``<data_dir>/master.pid`` (always,
so that ``forkqctl`` finds a master with no ``pidfile``) and the configured ``pidfile``, the pid
with its start time (``pidfile.py``); it writes ``<data_dir>/status.json`` (``status.py`` holds
its name and contents) atomically, so that a scrape never reads half a file; and it sets the
master's title. At exit it removes what it wrote, and only that: a master refused at start
because another one runs leaves that master's files alone. A failed status write is logged and
the next change writes the whole status again.
"""

from __future__ import annotations

import contextlib
import json
import os

from setproctitle import setproctitle

from ..log import logger
from ..status import status_path
from .child import title
from .pidfile import claim_pidfile, default_pidfile, release_pidfile, write_atomically


def master_title(tag: str, children: int) -> str:
    return title("forkq", "master", tag, f"[{children} children]")


class MasterFiles:
    """The files of one master, at the paths its config had when it started (a reload may
    change the config's paths; the files written are the ones removed)."""

    def __init__(self, data_dir: str, pidfile: str | None) -> None:
        self.data_dir = data_dir
        self.pidfile = pidfile
        #: the pidfiles this master wrote, removed as it stops
        self.pidfiles: list[str] = []
        #: set once the pidfiles are this master's: the status file is its own from then on
        self.status_path: str | None = None

    def claim(self) -> None:
        """Write the pidfiles; ``ForkqError`` when one names another running master."""
        os.makedirs(self.data_dir, exist_ok=True)
        for path, setting in ((default_pidfile(self.data_dir), "data_dir"),
                              (self.pidfile, "pidfile")):
            if path and path not in self.pidfiles:
                claim_pidfile(path, setting)
                self.pidfiles.append(path)
        self.status_path = status_path(self.data_dir)

    def write_status(self, status: dict) -> None:
        try:
            write_atomically(self.status_path, json.dumps(status))
        except OSError as exc:
            logger.warning("could not write %s: %s", self.status_path, exc)

    def show(self, tag: str, children: int) -> None:
        """The master's process title: its tag and how many worker children run."""
        setproctitle(master_title(tag, children))

    def release(self) -> None:
        for path in self.pidfiles:
            with contextlib.suppress(OSError):
                release_pidfile(path)
        if self.status_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.status_path)
