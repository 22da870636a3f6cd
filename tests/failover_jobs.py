"""A job for the failover tests: it records each run in a file, outside the Redis under test,
so that runs survive the failover they are counted across."""

import os
import time

import forkq


@forkq.job
def note(value):
    with open(os.environ["FAILOVER_RUNS_FILE"], "a") as runs:
        runs.write(f"{value} {time.time():.3f}\n")
