"""The worker child's side of the supervisor: liveness, title, recycling, and how it ends.

Runs in a child forked by the supervisor, after the fork. ``ChildTick`` is the worker's
parent (``worker.Parent``): at each ``tick(state)``, at least once a second, it writes a byte
to the master (the first says "ready", each one "alive", ``S`` "stopping by itself", ``R``
"replace me": ``request_retirement``), sets the process title from the worker's snapshot, and
answers with a reason to stop when the master is gone or ``max_jobs`` is reached.
``exit_child`` ends the process with ``os._exit`` so that nothing returns into the master's code,
after the child-exit hooks (``hooks.Hooks.child_exit``) that ``atexit`` would have reached.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable, NoReturn

import redis as redis_py
from setproctitle import setproctitle

from .. import __version__, hooks, log
from ..errors import ForkqError
from ..log import logger

#: Linux prctl option: a signal delivered to this process when its parent dies
_PR_SET_PDEATHSIG = 1


def title(*parts: str) -> str:
    """A process title: the parts that are not empty (no tag, say), space-separated."""
    return " ".join(part for part in parts if part)


def child_title(tag: str, threads_busy: int, concurrency: int, coroutines: int,
                async_concurrency: int, stopping: bool) -> str:
    """Thread jobs against threads; coroutine jobs, only while some run, against their own
    limit: busy never reads above capacity."""
    load = f"{threads_busy} of {concurrency} busy"
    if coroutines:
        load += f", {coroutines} of {async_concurrency} coroutines"
    return title("forkq", __version__, tag, f"[{load}]", "stopping" if stopping else "")


class ChildTick:
    """The parent of a worker child: liveness to the master, process title, self-recycling.

    ``tick`` runs in the child's main loop, at least once a second."""

    def __init__(self, pipe: int, master_pid: int, max_jobs: int | None, tag: str) -> None:
        self.pipe = pipe
        self.master_pid = master_pid
        self.max_jobs = max_jobs
        self.tag = tag
        self.retirement_requested = False

    def tick(self, state) -> str | None:
        """Report to the master and set the title; returns why the worker must stop, if it
        must (``state`` is the worker's ``Snapshot``)."""
        reason = None if state.stopping else self.stop_reason(state)
        stopping = state.stopping or reason is not None
        self.report(b"S" if stopping else b"R" if self.retirement_requested else b".")
        setproctitle(child_title(self.tag, state.threads_busy, state.concurrency,
                                 state.coroutines, state.async_concurrency, stopping))
        return reason

    def request_retirement(self) -> None:
        """Ask the master to replace this child: it stops it gracefully (jobs finish until the
        deadline, the rest are requeued) and forks a new one at once. Any thread may call it;
        the next tick tells the master."""
        self.retirement_requested = True

    def stop_reason(self, state) -> str | None:
        if os.getppid() != self.master_pid:
            logger.warning("master %d is gone: stopping", self.master_pid)
            return "master gone"
        if self.max_jobs and state.jobs_done >= self.max_jobs:
            logger.info("ran %d jobs (max_jobs): stopping to be replaced", state.jobs_done)
            return "max_jobs"
        return None

    def report(self, byte: bytes) -> None:
        try:
            os.write(self.pipe, byte)
        except (BlockingIOError, BrokenPipeError):
            pass  # a master that does not read is busy or gone; the check above handles gone


def keep_to_one_cpu(index: int) -> int | None:
    """Bind this process to one CPU of those it may use (``cpu_affinity``): slot ``index``
    modulo their count, so a master's children spread over the CPUs. Its threads then hand
    the GIL over on one core instead of moving between cores. The CPU, or None where Linux's
    affinity call is missing."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[index % len(allowed)]
    os.sched_setaffinity(0, {cpu})
    return cpu


def die_with_master() -> None:
    """Ask Linux to TERM this process when the master dies (helper children only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # no prctl (not Linux): only the master's own shutdown stops the helper


def exit_child(run: Callable[[], int]) -> NoReturn:
    """Run a forked child's main and end the process: nothing may return into the master's code."""
    status = 1
    try:
        status = run()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except ForkqError as exc:
        logger.error("%s", exc)
    except redis_py.RedisError as exc:
        logger.error("cannot reach Redis: %s", exc)
    except BaseException:
        logger.exception("child failed")
    finally:
        run_exit_hooks()
        log.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def run_exit_hooks() -> None:
    """The child-exit hooks, each in turn; one that raises is logged and the others still run."""
    for hook in hooks.registry.child_exit:
        try:
            hook()
        except BaseException:  # nothing may keep the child from its os._exit
            logger.exception("child-exit hook %r failed", hook)
