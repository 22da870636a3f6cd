"""The optional pidfile of ``forkq start``, and telling a live forkq pid from a reused one.

Written by the master at start (refusing to take the file from a running master), removed at
exit; read by ``forkqctl``.
"""

from __future__ import annotations

import os

from .errors import ForkqError


def write_atomically(path: str, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_pidfile(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def is_forkq_process(pid: int) -> bool:
    """Whether ``pid`` runs forkq (its title or command line says so), not a reused pid."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return "forkq" in " ".join(process.cmdline()) or "forkq" in process.name()
    except psutil.Error:
        return False


def claim_pidfile(path: str) -> None:
    """Write this process's pid, refusing to take the file from another running master."""
    held = read_pidfile(path)
    if held and held != os.getpid() and is_forkq_process(held):
        raise ForkqError(f"pidfile {path} names forkq process {held}, which is running; stop "
                         f"it first or choose another pidfile")
    write_atomically(path, f"{os.getpid()}\n")


def release_pidfile(path: str) -> None:
    if read_pidfile(path) == os.getpid():
        os.unlink(path)
