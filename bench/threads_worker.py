"""What ``threads_cost.py``'s workers import (listed under ``require:``): its CPU-bound job, and
what a variant changes in the worker, read from the environment: the interpreter's switch
interval (``BENCH_SWITCH_INTERVAL``, seconds), the control watch's interval
(``BENCH_CONTROL_INTERVAL``) and an idle fetch's block (``BENCH_IDLE_TIMEOUT``). The changes
are a measurement aid, not settings forkq offers: empty variables change nothing."""

import os
import sys

import forkq
from forkq.flow import control
from forkq.worker import fetch

from compare_jobs import incr

if os.environ.get("BENCH_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
if os.environ.get("BENCH_CONTROL_INTERVAL"):
    control.INTERVAL = float(os.environ["BENCH_CONTROL_INTERVAL"])
if os.environ.get("BENCH_IDLE_TIMEOUT"):
    fetch.IDLE_TIMEOUT = float(os.environ["BENCH_IDLE_TIMEOUT"])

#: loop turns of the CPU-bound body: about 1 ms of pure Python on this project's machine
SPIN = 20_000


class BenchSpin(forkq.Job):
    """A CPU-bound job: ``SPIN`` turns of a pure-Python loop (holding the GIL), then the
    same ``INCR`` as ``BenchIncr`` to count it."""

    name = "BenchSpin"

    def perform(self, total):
        value = 0
        for turn in range(SPIN):
            value ^= turn
        incr(total)
