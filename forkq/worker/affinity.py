"""Keeping every thread of a worker process to one CPU, and letting them go again
(``cpu_affinity: auto``, tried and undone by ``admission.py``).

Threads that hand Python's interpreter lock to each other at every socket call do it cheaply on
one CPU (a switch on that core) and dearly across CPUs (a wake-up of another, often idle, core
each time): one process of 10 threads draining one-``INCR`` jobs spends about half the CPU a
job when it keeps to one CPU. Linux sets a CPU mask per thread, so each thread the process has
is moved; threads started later inherit the mask of the thread that starts them.
"""

from __future__ import annotations

import os

#: where Linux lists the process's threads, and where it tells the CPU the caller runs on
TASKS = "/proc/self/task"
OWN_STAT = "/proc/thread-self/stat"
#: ``processor`` (field 39 of ``stat``) counted from ``state`` (field 3), the first field
#: after the command name, which may hold spaces and parentheses
PROCESSOR_AFTER_NAME = 39 - 3


def current_cpu() -> int:
    """The CPU the calling thread runs on."""
    with open(OWN_STAT, "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return int(fields[PROCESSOR_AFTER_NAME])


class Affinity:
    """The process's threads, kept to one CPU (``keep``) or to the CPUs they had before
    (``release``). ``cpu`` is the one kept to, or None. Both raise ``OSError`` when Linux
    refuses the mask (a cpuset changed under the process)."""

    def __init__(self) -> None:
        self.cpu: int | None = None
        #: the CPUs the threads may use while not kept to one
        self.allowed: frozenset[int] = frozenset()

    @staticmethod
    def possible() -> bool:
        """Linux, and more than one CPU to choose from (``cpu_affinity: true`` or ``taskset``
        leave one)."""
        return (hasattr(os, "sched_setaffinity") and os.path.isdir(TASKS)
                and len(os.sched_getaffinity(0)) > 1)

    def keep(self) -> None:
        """Keep every thread to the CPU the caller runs on (then ``cpu``): the scheduler put it
        where there was room, and other busy processes are likelier on the other CPUs."""
        self.allowed = frozenset(os.sched_getaffinity(0))
        cpu = current_cpu()
        if cpu not in self.allowed:
            cpu = min(self.allowed)
        self.cpu = cpu
        move_threads({cpu})

    def release(self) -> None:
        self.cpu = None
        move_threads(self.allowed)


def move_threads(cpus: set[int] | frozenset[int]) -> None:
    for name in os.listdir(TASKS):
        try:
            os.sched_setaffinity(int(name), cpus)
        except ProcessLookupError:
            pass  # the thread ended since the listing
