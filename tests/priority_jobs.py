"""Jobs for the priority and fairness tests, run by real worker processes.

Each records its start in Redis through ``forkq.redis()``:

| key | type | written by |
| --- | --- | --- |
| ``prio:started`` | list of "label time runner" (``time.time()`` at the start; the runner is the process and thread that ran it) | ``Record`` |
| ``prio:spans`` | list of "label start end" (``time.time()`` at the start and the end) | ``Span`` |
"""

from __future__ import annotations

import os
import threading
import time

import forkq


class Record(forkq.Job):
    """Records ``label`` and its start time, then works ``seconds`` (long enough that each
    fetch takes one job: see ``worker/fetch.py``'s batch rule)."""

    def perform(self, label, seconds=0.03):
        runner = f"{os.getpid()}-{threading.get_ident()}"
        forkq.redis().rpush("prio:started", f"{label} {time.time()!r} {runner}")
        time.sleep(seconds)



class Span(forkq.Job):
    """Works ``seconds``, then records its label with its start and end times; ``fail``
    raises instead (and records nothing)."""

    def perform(self, label, seconds=0.2, fail=False):
        start = time.time()
        if fail:
            raise RuntimeError(f"{label} fails on purpose")
        time.sleep(seconds)
        forkq.redis().rpush("prio:spans", f"{label} {start!r} {time.time()!r}")
