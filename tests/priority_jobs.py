"""Jobs for the priority and fairness tests, run by real worker processes.

Each records its start in Redis through ``forkq.redis()``:

| key | type | written by |
| --- | --- | --- |
| ``prio:started`` | list of "label time" (``time.time()`` at the start) | ``Record`` |
"""

from __future__ import annotations

import time

import forkq


class Record(forkq.Job):
    """Records ``label`` and its start time, then works ``seconds`` (long enough that each
    fetch takes one job: see ``worker/fetch.py``'s batch rule)."""

    def perform(self, label, seconds=0.03):
        forkq.redis().rpush("prio:started", f"{label} {time.time()!r}")
        time.sleep(seconds)

