"""Who a process is: the host name and the identity format of forkq's processes.

Pure and light (``os``, ``socket``), imported by the worker's heartbeat, the supervisor, the
periodic master, the metrics exporter and the Django integration, so that none of them loads
another's code for a host name. An identity is ``<host>:<pid>:<tag>``, as Sidekiq's; the tag
tells apart the processes of a pid (a worker's random hex, a slot's index, a thread's name).
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """Heroku's dyno name where there is one (``web.1``), else the host name."""
    return os.environ.get("DYNO") or socket.gethostname()


def identity(pid: int, tag: str | int) -> str:
    """``<host>:<pid>:<tag>``: a process's name in ``processes`` and in result records."""
    return f"{hostname()}:{pid}:{tag}"
