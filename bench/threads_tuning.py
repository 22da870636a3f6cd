"""What ``threads_cost.py`` changes in a worker for one of its variants, read from the
environment when the worker imports it (it is listed under ``require:``): the interpreter's
switch interval (``BENCH_SWITCH_INTERVAL``, seconds), the control watch's interval
(``BENCH_CONTROL_INTERVAL``) and an idle fetch's block (``BENCH_IDLE_TIMEOUT``). A measurement
aid, not a setting forkq offers: empty variables change nothing."""

import os
import sys

from forkq.flow import control
from forkq.worker import fetch

if os.environ.get("BENCH_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
if os.environ.get("BENCH_CONTROL_INTERVAL"):
    control.INTERVAL = float(os.environ["BENCH_CONTROL_INTERVAL"])
if os.environ.get("BENCH_IDLE_TIMEOUT"):
    fetch.IDLE_TIMEOUT = float(os.environ["BENCH_IDLE_TIMEOUT"])
